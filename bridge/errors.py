"""The bridge's one error tree: delivery hub, its store, member client, content format,
and the bridge service's room pairs.

One root, :class:`BridgeError`, separate from :class:`mls.errors.MLSError` -- except
:class:`CredentialRejected`, the bridge's Authentication Service refusing a credential,
which is both (``mls`` calls the AS and must reject what it refuses). The hub's
stores raise :class:`StoreError` and its subclasses (every backend the same ones, so the
hub never catches ``sqlite3`` or ``asyncpg`` exceptions; driver errors that are not one
of the specific cases surface as :class:`StoreUnavailable`, chained to the original). A
hub rejection is a :class:`Rejection` with a stable ``code`` string that travels in
:class:`transports.interface.Outbound` replies, so transports can map it (for example
``wrong-epoch`` to an XMPP ``<conflict/>``) and members can react to it without
importing this module's classes. Messages never carry plaintext or keys.
"""

from __future__ import annotations

from mls.errors import ValidationError


class BridgeError(Exception):
    """Root of every error raised by ``bridge``."""

class CredentialRejected(BridgeError, ValidationError):
    """The bridge's Authentication Service does not accept a credential (RFC 9420
    §5.3.1): an X.509 chain that does not end at the pinned CA, a certificate whose key
    is not the leaf's, one outside its validity, a basic credential where X.509 is
    required... It is also an :class:`mls.errors.ValidationError`, so that ``mls``
    rejects the message (or KeyPackage, or Welcome) that carried the credential."""

class Rejection(BridgeError):
    """The hub refused a request; nothing was changed. ``code`` names the reason."""

    code = "rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

class Malformed(Rejection):
    """The bytes do not parse, or are not the kind of MLS message the request needs."""

    code = "malformed"

class TooLarge(Rejection):
    """The request carries more bytes than the hub's configured limit."""

    code = "too-large"

class UnknownGroupRejection(Rejection):
    """The group id is not served by this hub."""

    code = "unknown-group"

class NotMember(Rejection):
    """The sender is not a member of the group (or not the member it claims to be)."""

    code = "not-member"

class WrongEpochRejection(Rejection):
    """RFC 9750 §5.2: the commit is not for the group's current epoch."""

    code = "wrong-epoch"

    def __init__(self, current_epoch: int, reason: str | None = None) -> None:
        super().__init__(reason or f"wrong epoch (current {current_epoch})")
        self.current_epoch = current_epoch

class StaleEpoch(Rejection):
    """An application message or proposal from an epoch the hub no longer relays."""

    code = "stale-epoch"

    def __init__(self, current_epoch: int, reason: str) -> None:
        super().__init__(reason)
        self.current_epoch = current_epoch

class BadSignature(Rejection):
    """A signature (FramedContent or GroupInfo) does not verify."""

    code = "bad-signature"

class InvalidCommit(Rejection):
    """The commit does not verify against the hub's state of the group, or its bundle
    (GroupInfo, tree, Welcome) differs from what the commit produces."""

    code = "invalid-commit"

class InvalidGroup(Rejection):
    """A group being registered does not verify, or does not list the hub as an
    external sender, or has members besides its creator."""

    code = "invalid-group"

class InvalidProposal(Rejection):
    """A proposal does not verify against the hub's state of the group."""

    code = "invalid-proposal"

class PrivateProposal(Rejection):
    """A proposal sent as PrivateMessage: the hub cannot follow it, so a commit that
    covers it could not be verified. Members send handshake messages as PublicMessage."""

    code = "private-proposal"

class RateLimited(Rejection):
    """Too many requests of this kind from this requester (external commits per group)."""

    code = "rate-limited"

class ProposalsMissing(Rejection):
    """The commit does not include every proposal the hub queued for its epoch."""

    code = "proposals-not-covered"

class Forbidden(Rejection):
    """The sender may not do this (publish for another user, join against policy...)."""

    code = "forbidden"

class NotModerator(Rejection):
    """The sender lacks the room role the operation needs (a moderator of an attached
    room: Matrix power level, XMPP owner/admin affiliation; docs/SECURITY.md)."""

    code = "not-moderator"

class JoinRefused(Rejection):
    """The group's join policy does not let the sender join by external commit or read
    its GroupInfo (docs/SECURITY.md, join policies)."""

    code = "join-policy"

class Unauthenticated(Rejection):
    """The request does not say which network authenticated its sender, or the
    sender's identity is not one that network can authenticate."""

    code = "unauthenticated"

class QuotaExceeded(Rejection):
    """A per-user or per-group quota is used up (KeyPackages per device, devices,
    outstanding KeyPackage claims)."""

    code = "quota"

class LifetimeTooLong(Rejection):
    """A KeyPackage's lifetime exceeds the hub's ``max_key_package_lifetime``."""

    code = "lifetime-too-long"

class NoKeyPackage(Rejection):
    """No unexpired KeyPackage is left for the user."""

    code = "no-key-package"

class AlreadyExists(Rejection):
    """The group, KeyPackage or room mapping already exists."""

    code = "conflict"

class Unsupported(Rejection):
    """Unknown request kind, cipher suite the hub has no key for, or similar."""

    code = "unsupported"

class Unavailable(Rejection):
    """The hub's store failed; the request may be retried."""

    code = "unavailable"

class ContentError(BridgeError):
    """An application message's inner content does not decode or is ill-formed."""

class FileError(BridgeError):
    """An end-to-end encrypted file could not be sent or opened: over the size limit,
    upload or download failed, or its bytes do not match the message (hash, tag)."""

class MemberError(BridgeError):
    """The member client could not do what it was asked (after its bounded retries)."""

class HubRefused(MemberError):
    """The hub rejected a member's request; ``code`` is the hub's rejection code."""

    def __init__(self, code: str, reason: str, epoch: int = 0) -> None:
        super().__init__(f"hub refused ({code}): {reason}")
        self.code = code
        self.reason = reason
        self.epoch = epoch

class PinMismatch(MemberError):
    """The hub presents another CA certificate than the one the member pinned on first
    use: the member refuses to trust it (a new hub identity, or an impostor)."""

class BridgeConfigError(BridgeError):
    """A bridge service that cannot be set up as configured: no network, or a room pair
    whose two rooms carry different groups (:mod:`bridge.app.services.bridge`)."""


# -- the hub's stores ----------------------------------------------------------------------


class StoreError(BridgeError):
    """Root of every error raised by a :class:`bridge.hub.store.Store`."""


class UnknownGroup(StoreError):
    """The group id is not in the store."""

    def __init__(self, group_id: bytes) -> None:
        super().__init__(f"unknown group {group_id.hex()}")
        self.group_id = group_id


class WrongEpoch(StoreError):
    """A commit or proposal named an epoch other than the group's current one.

    RFC 9750 §5.2: the hub accepts exactly one commit per epoch; the loser of a race is told
    the current epoch so it can apply the winner and retry.
    """

    def __init__(self, current_epoch: int) -> None:
        super().__init__(f"wrong epoch (current {current_epoch})")
        self.current_epoch = current_epoch


class EpochMoved(StoreError):
    """The group is no longer at the epoch the caller's cached view had
    (``append_message(at_epoch=...)``): nothing was appended; read it again."""

    def __init__(self, current_epoch: int) -> None:
        super().__init__(f"the group moved to epoch {current_epoch}")
        self.current_epoch = current_epoch


class ProposalsNotCovered(StoreError):
    """A commit did not include every proposal the hub queued for its epoch."""

    def __init__(self, missing: tuple[bytes, ...]) -> None:
        refs = ", ".join(ref.hex() for ref in missing)
        super().__init__(f"commit does not cover queued proposals: {refs}")
        self.missing = missing


class KeyPackageUnavailable(StoreError):
    """No unexpired KeyPackage (not even a last-resort one) is left for the user."""

    def __init__(self, user: str, cipher_suite: int, device: str | None = None) -> None:
        who = user if device is None else f"{user} device {device}"
        super().__init__(f"no KeyPackage for {who} with cipher suite {cipher_suite}")
        self.user = user
        self.cipher_suite = cipher_suite
        self.device = device


class Conflict(StoreError):
    """The write would clash with an existing row (duplicate group, KeyPackage ref, room...)."""


class StoreQuota(StoreError):
    """A write would exceed a limit the caller gave (KeyPackages per device, devices
    per user, outstanding claims); nothing was written."""


class StoreUsageError(StoreError):
    """The caller passed arguments the store contract does not allow (local misuse)."""


class StoreUnavailable(StoreError):
    """The database failed (locked past the busy timeout, connection lost, disk error...)."""
