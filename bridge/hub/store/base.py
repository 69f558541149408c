"""The storage interface of the delivery hub (RFC 9750 §5.2, strongly consistent).

The hub stores only opaque MLS bytes (commits, proposals, application messages, Welcomes,
GroupInfo, ratchet trees, KeyPackages) and public metadata (epochs, sequence numbers,
room mappings, member identities). It never holds group secrets or plaintext, and this
package never imports ``mls``: it does not parse what it stores.

Every state transition is one database transaction. The ordering primitive is
:meth:`Store.accept_commit`: a compare-and-set on the group's epoch that appends the
commit to the group's log with the next sequence number. Application messages, proposals
and commits share one per-group sequence space, starting at 1.

Public member list: kept in its own table (:meth:`Store.set_members`, or atomically with
a commit via ``accept_commit(members=...)``), not inside ``hub_state``, so fan-out and
routing can query it without decoding anything. The store also remembers from which
epoch each identity is a member (:meth:`Store.member_since`), for the log-reading rule.

Authorization state (``docs/SECURITY.md``) kept here too: outstanding KeyPackage claims
(bounded by :meth:`Store.claim_key_package`, cleared by the commit that adds the
target) and the XEP-0045 affiliations of the XMPP component's rooms.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import NamedTuple, Self

from bridge.errors import StoreUsageError

#: XEP-0045 affiliations a room keeps (``none`` is the absence of one).
AFFILIATIONS = ("owner", "admin", "member", "outcast")


class LogKind(enum.StrEnum):
    """What a log entry holds; stored as its string value."""

    COMMIT = "commit"
    PROPOSAL = "proposal"
    APPLICATION = "application"


class Member(NamedTuple):
    """One leaf of the group's public view: its leaf index and the credential's identity."""

    leaf_index: int
    identity: str


class RoomRef(NamedTuple):
    """A chat room on one transport (``"xmpp"``, ``"matrix"``...) and its id there."""

    transport: str
    room_id: str


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A group as the hub sees it. ``next_seq`` is the number the next log entry gets."""

    group_id: bytes
    cipher_suite: int
    epoch: int
    next_seq: int
    group_info: bytes | None = field(repr=False)
    ratchet_tree: bytes | None = field(repr=False)
    hub_state: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One message in a group's ordered log."""

    seq: int
    epoch: int
    kind: LogKind
    payload: bytes = field(repr=False)
    sender: str


@dataclass(frozen=True, slots=True)
class QueuedProposal:
    """A proposal the next commit of its epoch must include; ``seq`` is its log entry."""

    proposal_ref: bytes
    seq: int
    epoch: int
    payload: bytes = field(repr=False)
    sender: str


@dataclass(frozen=True, slots=True)
class Ban:
    """An identity the hub refuses commits and external joins from in one group."""

    identity: str
    reason: str
    banned_at: int


@dataclass(frozen=True, slots=True)
class StoredPair:
    """A room pair bridged at run time: its XMPP and Matrix rooms, whether it is
    relayed, and who changed it last and when (seconds since the epoch)."""

    xmpp_room: str
    matrix_room: str
    relay: bool
    changed_by: str
    changed_at: int


@dataclass(frozen=True, slots=True)
class KeyPackageInfo:
    """Directory metadata of a published KeyPackage (the bytes are not returned)."""

    ref: bytes
    user: str
    device: str
    cipher_suite: int
    expires_at: int
    last_resort: bool


@dataclass(frozen=True, slots=True)
class PendingWelcome:
    """A Welcome still to be delivered to one recipient, with the commit it belongs to."""

    welcome_id: int
    recipient: str
    group_id: bytes
    epoch: int
    commit_seq: int
    welcome: bytes = field(repr=False)


class Store(abc.ABC):
    """The hub's persistent state. All methods are coroutines; each is one transaction.

    Cancelling a call never leaves a transaction half-open or the store unusable: a call
    cancelled before its transaction began did nothing; one cancelled later took effect
    0 or 1 times (all of it or none), settled by the time the caller sees
    :class:`asyncio.CancelledError` (``bridge.hub.store.transactions``).

    Group ids, refs and MLS messages are opaque ``bytes``. Times (``now``,
    ``expires_at``) are integer seconds supplied by the caller: the store reads no clock.
    A KeyPackage is usable while ``now <= expires_at`` (its lifetime's ``not_after``,
    RFC 9420 §10).
    """

    # -- lifecycle -----------------------------------------------------------------

    @abc.abstractmethod
    async def close(self) -> None:
        """Wait for the transactions in flight, then release connections. Idempotent;
        any call made once closing began raises :class:`StoreUsageError`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The highest migration applied to the database."""

    # -- groups --------------------------------------------------------------------

    @abc.abstractmethod
    async def create_group(
        self,
        group_id: bytes,
        cipher_suite: int,
        *,
        epoch: int = 0,
        group_info: bytes | None = None,
        ratchet_tree: bytes | None = None,
        hub_state: bytes = b"",
        members: Sequence[Member] | None = None,
        creator: str = "",
        max_per_creator: int = 0,
    ) -> GroupRecord:
        """Register a group at ``epoch``; raise :class:`Conflict` if it exists, and
        :class:`StoreQuota` if ``creator`` already created ``max_per_creator`` groups
        that still exist (0: no limit; checked in the same transaction)."""

    @abc.abstractmethod
    async def get_group(self, group_id: bytes) -> GroupRecord:
        """The group's record; raise :class:`UnknownGroup` if absent."""

    @abc.abstractmethod
    async def delete_group(self, group_id: bytes) -> bool:
        """Drop the group and everything attached to it; False if it did not exist."""

    @abc.abstractmethod
    async def accept_commit(
        self,
        group_id: bytes,
        expected_epoch: int,
        commit: bytes,
        *,
        hub_state: bytes,
        group_info: bytes | None = None,
        ratchet_tree: bytes | None = None,
        welcome: bytes | None = None,
        welcome_recipients: Collection[str] = (),
        sender: str = "",
        covered_proposals: Collection[bytes] | None = None,
        members: Sequence[Member] | None = None,
        max_pending_welcomes: int = 0,
    ) -> int:
        """Order one commit (RFC 9750 §5.2) and return its sequence number.

        Atomically: raise :class:`WrongEpoch` (current epoch) unless the group is at
        ``expected_epoch``; if ``covered_proposals`` (proposal refs the commit includes)
        is given, raise :class:`ProposalsNotCovered` when a proposal queued for this epoch
        is missing from it; otherwise append the commit to the log, move the group to
        ``expected_epoch + 1``, replace GroupInfo, ratchet tree, hub state (and the member
        list when ``members`` is given), record ``welcome`` for each recipient, and drop
        every proposal queued for the old epoch (a commit ends its epoch: proposals it
        did not include are void, RFC 9420 §12.4). With ``max_pending_welcomes``, raise
        :class:`StoreQuota` if a recipient already has that many Welcomes waiting. On
        error nothing changes.
        """

    # -- the log -------------------------------------------------------------------

    @abc.abstractmethod
    async def append_message(
        self, group_id: bytes, epoch: int, kind: LogKind | str, payload: bytes, sender: str,
        *, replay_after: int | None = None, at_epoch: int | None = None,
    ) -> int:
        """Append an application message or proposal; return its sequence number.

        Commits go through :meth:`accept_commit` only (:class:`StoreUsageError` here).
        The caller decides how many past epochs it still accepts; the store rejects only
        an epoch beyond the current one (:class:`WrongEpoch`). With ``replay_after``, an
        entry with the same payload and a seq beyond it makes this a replay: its seq is
        returned and nothing is appended (compared in the same transaction, by the
        database: one search of the log's digest index, :func:`payload_digest`; no
        entry is read into the process). With ``at_epoch`` (the epoch of
        the caller's cached view of the group), raise :class:`EpochMoved` and append
        nothing unless the group is still at that epoch (checked in the same
        transaction, after the replay check: a replay is answered whatever the epoch).
        """

    @abc.abstractmethod
    async def log_since(
        self, group_id: bytes, after_seq: int = 0, limit: int = 100
    ) -> list[LogEntry]:
        """Up to ``limit`` log entries with ``seq > after_seq``, in sequence order."""

    # -- proposals -----------------------------------------------------------------

    @abc.abstractmethod
    async def queue_proposal(
        self, group_id: bytes, epoch: int, proposal_ref: bytes, payload: bytes, sender: str = ""
    ) -> int:
        """Log a proposal for fan-out and queue it for the epoch's commit; return its seq.

        Raise :class:`WrongEpoch` unless ``epoch`` is current, :class:`Conflict` if the
        ref is already queued.
        """

    @abc.abstractmethod
    async def queued_proposals(self, group_id: bytes, epoch: int) -> list[QueuedProposal]:
        """The proposals queued for ``epoch``, in sequence order."""

    @abc.abstractmethod
    async def epoch_proposals(self, group_id: bytes, epoch: int) -> list[LogEntry]:
        """Every proposal logged for ``epoch`` (members' and queued ones), in sequence
        order: what the hub rebuilds the epoch's pending proposals from."""

    # -- fault reports and bans ------------------------------------------------------

    @abc.abstractmethod
    async def add_fault_report(
        self, group_id: bytes, commit_seq: int, reporter: str, reason: str, at: int
    ) -> int:
        """Record that ``reporter`` could not process the log entry ``commit_seq`` (the
        caller checked it is a commit); return how many distinct reporters that commit
        now has. Raise :class:`Conflict` if this reporter already reported it (or the
        entry does not exist), :class:`UnknownGroup` if the group is absent."""

    @abc.abstractmethod
    async def fault_reporters(self, group_id: bytes, commit_seq: int) -> list[str]:
        """Who reported the log entry ``commit_seq``, sorted (:class:`UnknownGroup` if
        the group is absent)."""

    @abc.abstractmethod
    async def ban(self, group_id: bytes, identity: str, reason: str, at: int) -> bool:
        """Put ``identity`` on the group's ban list; False if it was already there."""

    @abc.abstractmethod
    async def bans(self, group_id: bytes) -> list[Ban]:
        """The group's ban list, by identity."""

    # -- members -------------------------------------------------------------------

    @abc.abstractmethod
    async def set_members(self, group_id: bytes, members: Sequence[Member]) -> None:
        """Replace the group's public member list."""

    @abc.abstractmethod
    async def get_members(self, group_id: bytes) -> list[Member]:
        """The group's public member list, by leaf index."""

    @abc.abstractmethod
    async def member_since(self, group_id: bytes, identity: str) -> int | None:
        """The epoch from which ``identity`` has been a member without interruption
        (None if it is not one). Every write of the member list (create, commit,
        set_members) keeps the epoch of identities already present and gives newcomers
        the list's epoch; an identity that leaves and comes back starts again."""

    # -- KeyPackage directory --------------------------------------------------------

    @abc.abstractmethod
    async def publish_key_package(
        self,
        user: str,
        device: str,
        cipher_suite: int,
        ref: bytes,
        key_package: bytes,
        expires_at: int,
        last_resort: bool = False,
        *,
        now: int = 0,
        max_per_device: int = 0,
        max_devices: int = 0,
    ) -> None:
        """Add a KeyPackage. A last-resort one replaces the device's previous last-resort
        KeyPackage for that suite. Raise :class:`Conflict` if ``ref`` is already present.

        Quotas, checked in the same transaction (0: none): raise :class:`StoreQuota`
        if the device would then hold more than ``max_per_device`` KeyPackages
        unexpired at ``now``, or the user more than ``max_devices`` devices."""

    @abc.abstractmethod
    async def claim_key_package(
        self, user: str, cipher_suite: int, now: int, device: str | None = None,
        *, group_id: bytes | None = None, claimer: str = "", max_outstanding: int = 0,
        outstanding_since: int = 0,
    ) -> bytes:
        """Hand out one unexpired KeyPackage of the user (optionally of one device).

        Ordinary KeyPackages are consumed: none is handed out twice, even to concurrent
        claimers. The one expiring soonest goes first. When none is left, the freshest
        unexpired last-resort KeyPackage is returned and kept (RFC 9420 §16.8). Raise
        :class:`KeyPackageUnavailable` when there is neither.

        With ``group_id`` the claim is recorded as outstanding (group, target ``user``,
        ``claimer``, ``now``) until a commit adding ``user`` to that group is accepted
        (its ``welcome_recipients``) or it is older than ``outstanding_since`` (such
        claims are dropped). With ``max_outstanding`` > 0, raise :class:`StoreQuota`
        -- nothing consumed -- when (group, user) or (claimer, user) already has that
        many outstanding claims. :class:`UnknownGroup` if the group is absent.
        """

    @abc.abstractmethod
    async def list_key_packages(self, user: str, device: str | None = None) -> list[KeyPackageInfo]:
        """Metadata of the user's (or device's) KeyPackages, expired ones included."""

    @abc.abstractmethod
    async def purge_expired(self, now: int) -> int:
        """Delete KeyPackages with ``expires_at < now`` (and their refs, see
        :meth:`key_package_publisher`); return how many KeyPackages."""

    @abc.abstractmethod
    async def key_package_publisher(self, ref: bytes) -> str | None:
        """The user who published the KeyPackage ``ref``, if the directory holds it or
        held it (claimed since) and it was not purged as expired; else ``None``. The hub
        ties Adds of basic credentials to the directory with it."""

    # -- rooms ---------------------------------------------------------------------

    @abc.abstractmethod
    async def attach_room(self, transport: str, room_id: str, group_id: bytes) -> None:
        """Map a room to a group (idempotent). Raise :class:`Conflict` if the room is
        attached to another group, :class:`UnknownGroup` if the group is absent."""

    @abc.abstractmethod
    async def room_group(self, transport: str, room_id: str) -> bytes | None:
        """The group a room is attached to, or None."""

    @abc.abstractmethod
    async def group_rooms(self, group_id: bytes) -> list[RoomRef]:
        """Every room the group is attached to (several when bridged), sorted."""

    @abc.abstractmethod
    async def detach_room(self, transport: str, room_id: str) -> bool:
        """Remove a room mapping; False if there was none."""

    # -- XMPP room affiliations (XEP-0045) ------------------------------------------

    @abc.abstractmethod
    async def set_affiliation(self, room: str, identity: str, affiliation: str) -> None:
        """Set ``identity``'s affiliation with ``room`` (one of :data:`AFFILIATIONS`,
        or ``none`` to remove it); :class:`StoreUsageError` for another value."""

    @abc.abstractmethod
    async def room_affiliations(self) -> dict[str, dict[str, str]]:
        """Every room's affiliations: room -> identity -> affiliation (few and small:
        the XMPP component keeps them all in memory)."""

    # -- room pairs bridged at run time ------------------------------------------------

    @abc.abstractmethod
    async def save_room_pair(self, pair: StoredPair) -> None:
        """Store ``pair`` (a new one, or a change of its relay mode). Raise
        :class:`Conflict` if either room is in another stored pair."""

    @abc.abstractmethod
    async def delete_room_pair(self, xmpp_room: str) -> bool:
        """Forget the pair of ``xmpp_room``; False if there was none."""

    @abc.abstractmethod
    async def room_pairs(self) -> list[StoredPair]:
        """Every stored pair, by XMPP room."""

    # -- Welcome delivery ------------------------------------------------------------

    @abc.abstractmethod
    async def pending_welcomes(self, recipient: str) -> list[PendingWelcome]:
        """Welcomes not yet delivered to ``recipient``, oldest first."""

    @abc.abstractmethod
    async def mark_delivered(self, welcome_id: int, recipient: str) -> bool:
        """Record delivery to one recipient; the Welcome is deleted once every recipient
        has it. False if nothing was pending."""

    # -- transport cursors -------------------------------------------------------------

    @abc.abstractmethod
    async def get_cursor(self, name: str) -> str | None:
        """A transport's saved position (e.g. a Matrix sync token), or None."""

    @abc.abstractmethod
    async def set_cursor(self, name: str, value: str) -> None:
        """Save a transport's position."""

    # -- keys a transport acted on (at-most-once across restarts) --------------------

    @abc.abstractmethod
    async def mark_seen(self, scope: str, key: str, at: int) -> bool:
        """Record that ``key`` (an event, transaction or request id) was acted on at
        unix time ``at``; False if it was already recorded (the first time is kept)."""

    @abc.abstractmethod
    async def is_seen(self, scope: str, key: str) -> bool:
        """Whether ``key`` was recorded in ``scope`` and not yet pruned."""

    @abc.abstractmethod
    async def prune_seen(self, before: int) -> int:
        """Forget every key recorded before unix time ``before``; how many."""


# -- helpers shared by the backends ---------------------------------------------------

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def load_migrations(backend: str) -> list[tuple[int, str]]:
    """The numbered SQL migrations of a backend, as (version, script), in order.

    Files are ``migrations/<backend>/NNNN_name.sql``; versions must run 1, 2, 3...
    """
    folder = resources.files("bridge.hub.store").joinpath("migrations", backend)
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is not None:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [version for version, _ in found] != list(range(1, len(found) + 1)):
        raise StoreUsageError(f"{backend} migrations are not numbered 1..n: {found!r}")
    return found


def payload_digest(payload: bytes) -> bytes:
    """A log entry's ``digest`` column: the SHA-256 of its payload (the replay check's
    index, migration 0008)."""
    return hashlib.sha256(payload).digest()


def check_kind(kind: LogKind | str) -> LogKind:
    """Parse a log kind for :meth:`Store.append_message`, which never takes commits."""
    try:
        parsed = LogKind(kind)
    except ValueError as exc:
        raise StoreUsageError(f"unknown log kind {kind!r}") from exc
    if parsed is LogKind.COMMIT:
        raise StoreUsageError("commits are ordered by accept_commit, not append_message")
    return parsed


def check_affiliation(affiliation: str) -> str:
    """An affiliation for :meth:`Store.set_affiliation` (``none`` included)."""
    if affiliation != "none" and affiliation not in AFFILIATIONS:
        raise StoreUsageError(f"unknown affiliation {affiliation!r}")
    return affiliation


def members_since(members: Sequence[Member], before: Mapping[str, int], epoch: int
                  ) -> list[tuple[int, str, int]]:
    """(leaf, identity, since epoch) rows for a new member list: identities already
    members keep their epoch (``before``), newcomers get ``epoch``."""
    return [(leaf, identity, before.get(identity, epoch))
            for leaf, identity in check_members(members)]


def check_members(members: Sequence[Member]) -> list[Member]:
    """Normalise a member list; leaf indexes must be distinct and non-negative."""
    normalised = sorted(Member(int(leaf), str(identity)) for leaf, identity in members)
    leaves = [member.leaf_index for member in normalised]
    if len(set(leaves)) != len(leaves) or (leaves and leaves[0] < 0):
        raise StoreUsageError("member leaf indexes must be distinct and non-negative")
    return normalised


def check_welcome(welcome: bytes | None, recipients: Collection[str]) -> list[str]:
    """A Welcome needs recipients, and recipients need a Welcome."""
    unique = sorted(set(recipients))
    if (welcome is None) != (not unique):
        raise StoreUsageError("a Welcome and its recipients go together")
    return unique


def check_limit(after_seq: int, limit: int) -> None:
    """Bounds of :meth:`Store.log_since`."""
    if after_seq < 0 or limit <= 0:
        raise StoreUsageError("log_since needs after_seq >= 0 and limit > 0")


def missing_proposals(
    queued: Sequence[bytes], covered: Collection[bytes] | None
) -> tuple[bytes, ...]:
    """Queued proposal refs absent from the commit's ``covered`` refs (none if unchecked)."""
    if covered is None:
        return ()
    covered_set = set(covered)
    return tuple(ref for ref in queued if ref not in covered_set)
