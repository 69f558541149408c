"""The member's side of the bridge's Authentication Service (RFC 9420 §5.3.1,
:mod:`bridge.credentials`): its credential, the hub's CA it pinned, and the validator
it hands to ``mls`` for every leaf it accepts.

* :attr:`CredentialMode.X509` (the default): the member proves possession of its
  signature key to the hub and gets an X.509 credential (``attest``, on start and again
  when a third of its validity is left), makes its KeyPackages and leaves with it, and
  accepts only leaves whose chain ends at the pinned CA, whose certificate key is the
  leaf's and which are valid now (:meth:`MemberIdentity.policy`; a tree being joined
  is checked without the clock: :meth:`MemberIdentity.tolerant`). Basic credentials
  are rejected.
* :attr:`CredentialMode.BASIC`: basic credentials (the identity as bytes) -- "identities
  vouched by the hub only" -- and X.509 ones that verify.

The CA certificate is pinned on first use (``hub-info``) in the member's store; a hub
that later presents another one is refused (:class:`bridge.errors.PinMismatch`, raised
by every operation that needs the hub's trust until the pinned CA is back). The hub's
own external sender (its key signs: no one else can present it) is accepted as is.

On start the member asks for the hub's CA and attests its key in the background
(:meth:`MemberIdentity.check_in_background`): a member comes up while its hub is
unreachable, and the next operation that needs the credential waits for that attempt
and tries again if it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bridge.credentials import (
    AttestRequest,
    CredentialMode,
    CredentialPolicy,
    HubInfo,
    TrustAnchor,
    fingerprint,
)
from bridge.errors import CredentialRejected, HubRefused, MemberError, PinMismatch
from bridge.identities import identity_of
from bridge.member.state import MemberStore
from mls.codec import decode, encode
from mls.crypto.suite import CipherSuite
from mls.errors import DecodeError
from mls.group.group import Group
from mls.messages.credentials import Credential
from mls.tree.math import LeafIndex
from transports.errors import TransportError
from transports.interface import Op, Outbound

log = logging.getLogger("bridge.member")

#: ``call(op, **fields)``: a request to the hub, its reply if accepted (else it raises).
HubCall = Callable[..., Awaitable[Outbound]]

PIN_KEY = "hub-ca"
HUB_INFO_KEY = "hub-info"
CREDENTIAL_KEY = "credential"


class MemberIdentity:
    """A member's credential and trust (see the module docstring)."""

    def __init__(self, mode: CredentialMode, cs: CipherSuite, store: MemberStore,
                 clock: Callable[[], int], call: HubCall) -> None:
        self.mode = mode
        self.cs = cs
        self._store = store
        self._clock = clock
        self._call = call
        self.anchor: TrustAnchor | None = None
        self.hub_info: HubInfo | None = None
        self._x509: Credential | None = None
        self._renew_at = 0
        self.mismatch: PinMismatch | None = None
        self._starting: asyncio.Task[None] | None = None

    # -- what the member presents and accepts ------------------------------------------

    def credential(self, identity: str) -> Credential:
        """The credential our leaves carry (X.509 mode: call :meth:`ensure` first)."""
        if self.mode is CredentialMode.BASIC:
            return Credential.basic(identity.encode("utf-8"))
        if self._x509 is None:
            raise MemberError("no attested credential yet (the hub was not reachable)")
        return self._x509

    def policy(self) -> CredentialPolicy:
        """The validator for leaves entering a group now (Add, Update, path, external
        join): the clock is checked."""
        trusted = () if self.hub_info is None else (self.hub_info.external_sender,)
        return CredentialPolicy(self.mode, self.anchor, clock=self._clock, trusted=trusted)

    def tolerant(self) -> CredentialPolicy:
        """The validator for the tree of a group we join (members keep credentials that
        expired while they were in, RFC 9420 §5.3.2)."""
        return self.policy().tolerant()

    def identity_of(self, credential: Credential) -> str:
        """The identity a credential names (X.509: verified against the pinned CA)."""
        return identity_of(credential, self.anchor)

    def check_welcomer(self, group: Group, signer: int) -> None:
        """The member whose Commit added us (the Welcome's GroupInfo signer, RFC 9420
        §12.4.3.1) holds a credential valid now: it just committed, so it must (§5.3.2),
        while the rest of the tree is checked without the clock."""
        tree = group.state.tree
        leaf = tree.leaf(LeafIndex(signer)) if 0 <= signer < tree.n_leaves else None
        if leaf is None:
            raise CredentialRejected("the Welcome's signer is not a member")
        self.policy().validate(leaf.credential, leaf.signature_key)

    # -- pinning and attestation -----------------------------------------------------------

    async def load(self) -> None:
        """The pinned CA, hub info and credential saved by an earlier run."""
        pinned = await self._store.load(PIN_KEY)
        if pinned is not None:
            self.anchor = TrustAnchor(pinned)
        info = await self._store.load(HUB_INFO_KEY)
        if info is not None:
            self.hub_info = decode(HubInfo, info)
        saved = await self._store.load(CREDENTIAL_KEY)
        if saved is not None and self.anchor is not None:
            self._adopt(decode(Credential, saved))

    async def fetch_hub_info(self) -> HubInfo:
        """Ask the hub for its external sender and CA; pin the CA on first use and
        refuse another one later (:class:`PinMismatch`)."""
        reply = await self._call(Op.HUB_INFO, cipher_suite=self.cs.id)
        try:
            info = decode(HubInfo, reply.payload)
            anchor = TrustAnchor(info.ca_certificate)
        except (DecodeError, CredentialRejected) as exc:
            raise MemberError(f"the hub's hub-info reply is unusable: {exc}") from exc
        if self.anchor is None:
            await self._store.save(PIN_KEY, info.ca_certificate)
            self.anchor = anchor
            log.info("pinned the hub's CA %s", anchor.fingerprint)
        elif self.anchor.certificate != info.ca_certificate:
            self.mismatch = PinMismatch(
                f"the hub presents CA {fingerprint(info.ca_certificate)}, not the CA "
                f"{self.anchor.fingerprint} pinned on first use: refusing it")
            raise self.mismatch
        self.mismatch = None
        await self._store.save(HUB_INFO_KEY, encode(info))
        self.hub_info = info
        return info

    def needs_renewal(self) -> bool:
        return self.mode is CredentialMode.X509 and (
            self._x509 is None or self._clock() >= self._renew_at)

    def check_in_background(self, identity: Callable[[], str], signature_priv: bytes) -> None:
        """On start: the hub's CA (is it the pinned one?) and our attestation, without
        holding up the start (the link may not even be connected yet: ``identity`` is
        asked when the check runs); :meth:`ensure` waits for it."""
        self._starting = asyncio.get_running_loop().create_task(
            self._first_check(identity, signature_priv))

    async def _first_check(self, identity: Callable[[], str], signature_priv: bytes) -> None:
        try:
            await self.fetch_hub_info()
            if me := identity():  # not known yet (not logged in): attested when needed
                await self._ensure(me, signature_priv)
        except PinMismatch as exc:
            log.error("%s", exc)
        except (TransportError, HubRefused, MemberError) as exc:  # tried again when needed
            log.warning("hub CA and credential not checked on start: %s: %s",
                        type(exc).__name__, exc)

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
            self._starting = None

    async def ensure(self, identity: str, signature_priv: bytes) -> None:
        """Know the hub's CA (:class:`PinMismatch` if the hub presents another one);
        X.509 mode: attest our key unless the credential we hold has more than a third
        of its validity left."""
        starting, self._starting = self._starting, None
        if starting is not None:
            await starting  # it never raises: what failed is tried again below
        if self.mismatch is not None:
            await self.fetch_hub_info()  # raises again unless the pinned CA is back
        await self._ensure(identity, signature_priv)

    async def _ensure(self, identity: str, signature_priv: bytes) -> None:
        if self.anchor is None:
            await self.fetch_hub_info()
        if not self.needs_renewal():
            return
        if self.hub_info is None:
            await self.fetch_hub_info()
        request = AttestRequest.create(self.cs, identity, signature_priv)
        reply = await self._call(Op.ATTEST, payload=encode(request), cipher_suite=self.cs.id)
        try:
            credential = decode(Credential, reply.payload)
            assert self.anchor is not None
            self.anchor.verify(credential, request.signature_key, self._clock())
            if self.anchor.identity(credential) != identity:
                raise CredentialRejected("the hub attested another identity")
        except (DecodeError, CredentialRejected) as exc:
            raise MemberError(f"the hub's attestation is unusable: {exc}") from exc
        await self._store.save(CREDENTIAL_KEY, encode(credential))
        self._adopt(credential)
        log.info("%s: signature key attested by the hub until %d", identity,
                 self._attested_until())

    def _adopt(self, credential: Credential) -> None:
        assert self.anchor is not None
        try:
            found = self.anchor.attested(credential)
        except CredentialRejected:
            return  # from another CA: attest again
        self._x509 = credential
        self._renew_at = found.not_after - (found.not_after - found.not_before) // 3

    def _attested_until(self) -> int:
        assert self.anchor is not None and self._x509 is not None
        return self.anchor.attested(self._x509).not_after
