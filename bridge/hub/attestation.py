"""The hub as the Authentication Service of its members (RFC 9420 §5.3.1; RFC 9750 §8:
the delivery service and the AS are distinct roles, this hub plays both).

* ``hub-info`` (rule A1): the hub's external sender and CA certificate
  (:class:`bridge.credentials.HubInfo`), which members pin.
* ``attest`` (A15): a member proves possession of its MLS signature key
  (:class:`bridge.credentials.AttestRequest`, signed over the requester's identity) and
  gets an X.509 credential binding that identity to the key for
  ``HubConfig.certificate_validity`` seconds. Only ever for the requester's own
  identity: the identity certified is the network-authenticated sender, never a
  request field, and the proof of possession must name it.
* :attr:`Attestation.validator` is the credential validator the hub passes to ``mls``
  for every credential it meets -- published KeyPackages, every leaf of every group it
  follows: an X.509 credential only if its chain verifies to this hub's CA, its key is
  the leaf's and it is valid now; basic credentials pass (identities vouched by the hub
  only). With :attr:`Attestation.anchor` the hub reads X.509 identities, so a
  KeyPackage is published only by the identity its SAN names (A15,
  :mod:`bridge.hub.authz`).
* Adds (A7): :meth:`Attestation.check_added` -- an X.509 leaf must verify as above; a
  basic leaf's KeyPackage must be one the directory holds (or held) for the identity
  it names (:meth:`bridge.hub.store.Store.key_package_publisher`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from bridge.credentials import (
    AttestRequest,
    CredentialMode,
    CredentialPolicy,
    basic_identity,
)
from bridge.errors import CredentialRejected, Forbidden, Malformed
from bridge.hub import public_view
from bridge.hub.identity import HubIdentity
from bridge.hub.store import Store
from mls import CredentialType, DecodeError, MemberLeaf, Rng, decode, encode
from transports.interface import Inbound, Kind, Outbound

log = logging.getLogger(__name__)


class Attestation:
    """The hub's AS (see the module docstring); its two request handlers are in the
    hub's handler table."""

    def __init__(self, identity: HubIdentity, clock: Callable[[], int], validity: int, *,
                 rng: Rng = os.urandom) -> None:
        self.identity = identity
        self.anchor = identity.ca.anchor
        self.clock = clock
        self.validity = validity
        self._rng = rng
        self.validator = CredentialPolicy(CredentialMode.BASIC, self.anchor, clock=clock)

    async def hub_info(self, request: Inbound) -> Outbound:
        info = self.identity.hub_info(request.cipher_suite or 1)
        return _reply(request, payload=encode(info), sender=self.identity.name)

    async def attest(self, request: Inbound) -> Outbound:
        try:
            wanted = decode(AttestRequest, request.payload)
        except DecodeError as exc:
            raise Malformed(f"attest: the payload is not an AttestRequest: {exc}") from exc
        cs = public_view.cipher_suite(wanted.cipher_suite)
        try:
            wanted.check(cs, request.sender)
            credential = self.identity.ca.issue(
                request.sender, cs.id, wanted.signature_key, now=self.clock(),
                validity=self.validity, rng=self._rng)
        except CredentialRejected as exc:
            raise Forbidden(f"attest: {exc}") from exc
        log.info("attested a signature key of %s (suite %d) for %d s", request.sender, cs.id,
                 self.validity)
        return _reply(request, payload=encode(credential))

    async def check_added(self, store: Store, added: Iterable[MemberLeaf]) -> None:
        """A7: every leaf a commit filled from a KeyPackage (with that KeyPackage's ref,
        computed by ``mls``, RFC 9420 §5.2) is attested (X.509, checked now) or, with a
        basic credential, came from a KeyPackage the directory holds or held for the
        identity it names; :class:`Forbidden` if not. An external joiner's leaf (no
        KeyPackage) is A11's."""
        for leaf in added:
            if leaf.key_package_ref is None:
                continue
            try:
                if leaf.credential.credential_type == CredentialType.X509:
                    self.validator.validate(leaf.credential, leaf.signature_key)
                    continue
                named = basic_identity(leaf.credential)
            except CredentialRejected as exc:
                raise Forbidden(f"an added member's credential is refused: {exc}") from exc
            if await store.key_package_publisher(leaf.key_package_ref) != named:
                raise Forbidden(f"the KeyPackage added for {named} is not one the "
                                f"directory holds for {named}")


def _reply(request: Inbound, *, payload: bytes, sender: str = "") -> Outbound:
    return Outbound(Kind.REPLY, (request.sender,), request.request_id, request.group_id,
                    payload=payload, sender=sender)
