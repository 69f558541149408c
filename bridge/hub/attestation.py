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
* KeyPackages at publish (A15): an X.509 one only if its chain verifies to this hub's
  CA, its key is the leaf's, it is valid now and its SAN is the requester; a basic one
  only if its identity is the requester.
* Adds (A7): :meth:`Attestation.check_added` -- an X.509 leaf must verify as above; a
  basic leaf's KeyPackage must be one the directory holds (or held) for the identity
  it names (:meth:`bridge.hub.store.Store.key_package_publisher`).
* :attr:`Attestation.validator` is the credential validator the hub passes to ``mls``
  for every leaf it follows (basic credentials pass it; Adds of them are tied to the
  directory by :meth:`Attestation.check_added`).
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
from mls.codec import decode, encode
from mls.crypto.suite import Rng
from mls.enums import CredentialType
from mls.errors import DecodeError
from mls.framing.refs import key_package_ref
from mls.messages.key_package import KeyPackage
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

    def check_key_package(self, key_package: KeyPackage, requester: str) -> None:
        """A15: the KeyPackage's credential names the requester, attested by this hub
        (X.509) or as a bare identity (basic); :class:`Forbidden` otherwise."""
        leaf = key_package.leaf_node
        try:
            if leaf.credential.credential_type == CredentialType.X509:
                named = self.anchor.verify(leaf.credential, leaf.signature_key, self.clock())
            else:
                named = basic_identity(leaf.credential)
        except CredentialRejected as exc:
            raise Forbidden(f"the KeyPackage's credential is refused: {exc}") from exc
        if named != requester:
            raise Forbidden("a KeyPackage may only be published by the user it names")

    async def check_added(self, store: Store, added: Iterable[KeyPackage]) -> None:
        """A7: the leaf of every added KeyPackage is attested (X.509, checked now) or,
        with a basic credential, the KeyPackage (by its ref, RFC 9420 §5.2) is one the
        directory holds or held for the identity it names; :class:`Forbidden` if not."""
        for key_package in added:
            leaf = key_package.leaf_node
            try:
                if leaf.credential.credential_type == CredentialType.X509:
                    self.validator.validate(leaf.credential, leaf.signature_key)
                    continue
                named = basic_identity(leaf.credential)
            except CredentialRejected as exc:
                raise Forbidden(f"an added member's credential is refused: {exc}") from exc
            ref = key_package_ref(public_view.cipher_suite(key_package.cipher_suite),
                                  key_package)
            if await store.key_package_publisher(ref) != named:
                raise Forbidden(f"the KeyPackage added for {named} is not one the "
                                f"directory holds for {named}")


def _reply(request: Inbound, *, payload: bytes, sender: str = "") -> Outbound:
    return Outbound(Kind.REPLY, (request.sender,), request.request_id, request.group_id,
                    payload=payload, sender=sender)
