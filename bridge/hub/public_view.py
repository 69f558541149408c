"""The hub's view of a group: ``mls``'s :class:`~mls.PublicGroup` (RFC 9750 §5.2;
RFC 9420 §6, §12.4.2, §12.4.3), read through the ``mls`` public API only.

The hub holds no group secrets. Everything it verifies of MLS -- signatures, proposal
rules, paths, parent and tree hashes, the GroupContext and transcript of every
commit, GroupInfos and Welcomes against the state it computed -- is ``mls``'s work
(:mod:`mls.group.public`); this module holds what the hub needs around it:

* strict parsing of request bytes, with the hub's refusals (:func:`parse_message`,
  :func:`header_of`, :func:`cipher_suite`) and the one translation of an ``mls``
  error into a refusal (:func:`rejection`);
* the identities a group's leaves name (their credentials, :mod:`bridge.identities`;
  X.509 ones read through the hub's own CA, the ``verifier``) and the hub's place in
  ``external_senders``;
* the versioned ``hub_state`` record: version 2 is ``0x02`` followed by
  :meth:`PublicGroup.to_bytes` at the start of the epoch (the epoch's proposals are
  in the log). Version 1, written before the hub followed groups with a PublicGroup,
  is ``0x01 || GroupContext || opaque confirmation_tag<V>`` with the tree in the
  ``ratchet_tree`` column: read through :meth:`PublicGroup.from_parts` and written
  again as version 2 with the next commit;
* :class:`GroupViews`, the per-process cache of each group's current epoch, with the
  epoch's proposals (the members' and the hub's own) replayed from the log into it so
  that commits covering them by reference resolve.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from bridge.errors import (
    BadSignature,
    CredentialRejected,
    Forbidden,
    Malformed,
    Rejection,
    Unavailable,
    UnknownGroupRejection,
    Unsupported,
    WrongEpochRejection,
)
from bridge.hub.store import GroupRecord, LogEntry, Member, Store, StoreError, UnknownGroup
from bridge.identities import IdentityVerifier, identity_of
from mls import (
    CipherSuite,
    CredentialValidator,
    DecodeError,
    EpochError,
    GroupContext,
    MessageHeader,
    MLSError,
    MLSMessage,
    PublicGroup,
    Reader,
    SignatureError,
    UsageError,
    decode,
    message_header,
    suite,
)

log = logging.getLogger(__name__)

HUB_STATE_VERSION = 2
LEGACY_STATE_VERSION = 1
VIEWS_KEPT = 1024  # groups whose current state GroupViews keeps in memory


# -- request bytes -----------------------------------------------------------------------

def parse_message(data: bytes, what: str) -> MLSMessage:
    """Strictly parse an MLSMessage; :class:`Malformed` if the bytes are not one."""
    if not data:
        raise Malformed(f"{what}: no bytes")
    try:
        return decode(MLSMessage, data)
    except DecodeError as exc:
        raise Malformed(f"{what} does not parse as an MLSMessage: {exc}") from exc


def header_of(message: MLSMessage, what: str) -> MessageHeader:
    """The routing header of a framed message; :class:`Malformed` for anything else."""
    try:
        return message_header(message)
    except UsageError as exc:
        raise Malformed(f"{what}: {exc}") from exc


def cipher_suite(suite_id: int) -> CipherSuite:
    """The suite object; :class:`Unsupported` for an unknown suite."""
    try:
        return suite(suite_id)
    except (MLSError, KeyError, ValueError) as exc:
        raise Unsupported(f"cipher suite {suite_id} is not supported") from exc


def credential_refused(exc: BaseException) -> bool:
    """Whether the hub's Authentication Service refused a credential somewhere in the
    causes of ``exc`` (``mls`` wraps what the credential validator raises)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, CredentialRejected):
            return True
        cause = cause.__cause__
    return False


def rejection(exc: MLSError, refusal: type[Rejection], what: str, epoch: int) -> Rejection:
    """The hub's refusal for an ``mls`` error about ``what``: a bad signature, another
    epoch (``epoch`` is the group's), bytes that do not parse and a credential the hub's
    AS refuses (``forbidden``) have their own codes; any other failure is ``refusal``."""
    if credential_refused(exc):
        return Forbidden(f"{what}: {exc}")
    if isinstance(exc, SignatureError):
        return BadSignature(f"{what}: {exc}")
    if isinstance(exc, EpochError):
        return WrongEpochRejection(epoch)
    if isinstance(exc, DecodeError):
        return Malformed(f"{what} does not parse: {exc}")
    return refusal(f"{what}: {exc}")


# -- who is in the group ---------------------------------------------------------------------

def leaf_identity(group: PublicGroup, leaf_index: int,
                  verifier: IdentityVerifier | None) -> str | None:
    """The identity the leaf's credential names; None for a blank or absent leaf."""
    leaf = group.member(leaf_index)
    return None if leaf is None else identity_of(leaf.credential, verifier)


def identities(group: PublicGroup, verifier: IdentityVerifier | None) -> frozenset[str]:
    """Every identity that holds a leaf."""
    return frozenset(identity_of(leaf.credential, verifier) for _, leaf in group.members())


def leaves_of(group: PublicGroup, identity: str, verifier: IdentityVerifier | None,
              signature_key: bytes | None = None) -> list[int]:
    """The leaves whose credential names ``identity`` (and, if given, whose signature
    key is ``signature_key``)."""
    return [int(index) for index, leaf in group.members()
            if identity_of(leaf.credential, verifier) == identity
            and signature_key in (None, leaf.signature_key)]


def member_list(group: PublicGroup, verifier: IdentityVerifier | None) -> list[Member]:
    """The store's public member list."""
    return [Member(int(index), identity_of(leaf.credential, verifier))
            for index, leaf in group.members()]


def sender_index(group: PublicGroup, signature_key: bytes) -> int | None:
    """Where ``signature_key`` is in the epoch's external_senders (RFC 9420 §12.1.8.1)."""
    for index, sender in enumerate(group.external_senders()):
        if sender.signature_key == signature_key:
            return index
    return None


# -- the hub_state record ----------------------------------------------------------------------

def state_bytes(group: PublicGroup) -> bytes:
    """The ``hub_state`` record of the epoch ``group`` starts (see the module docstring)."""
    return bytes((HUB_STATE_VERSION,)) + group.to_bytes()


def load_state(record: GroupRecord) -> PublicGroup:
    """The group's state from its stored record, either version."""
    data = record.hub_state
    try:
        if data[:1] == bytes((HUB_STATE_VERSION,)):
            return PublicGroup.from_bytes(data[1:])
        if data[:1] == bytes((LEGACY_STATE_VERSION,)) and record.ratchet_tree is not None:
            context, tag = _legacy_parts(data)
            return PublicGroup.from_parts(context, record.ratchet_tree, tag)
    except MLSError as exc:
        raise Unavailable(f"the group's stored state is unreadable: {exc}") from exc
    raise Unavailable("the group's stored state is of an unknown version")


def _legacy_parts(data: bytes) -> tuple[GroupContext, bytes]:
    """The GroupContext and confirmation tag of a version 1 record (the hub's own
    format of before, read with the one codec)."""
    r = Reader(data)
    r.u8()
    context = GroupContext.decode(r)
    tag = r.opaque()
    r.finish("hub state")
    return context, tag


# -- the cache of current epochs -------------------------------------------------------------

Rooms = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class View:
    """A group in its current ``epoch``, with the epoch's proposals up to log entry
    ``applied`` pending in it; the epoch's ``record`` as last read (its ``next_seq``
    moved on by this process's appends) and the group's ``rooms``, once read."""

    epoch: int
    group: PublicGroup
    applied: int = 0
    record: GroupRecord | None = None
    rooms: Rooms | None = None


class GroupViews:
    """Each group's current epoch, cached in this process. An epoch's starting state
    never changes, so the cache is safe across processes sharing a database; the
    proposals other processes logged are picked up from the log on each load that
    asks for them. At most ``size`` groups are cached (the least recently used is
    dropped, and read from the store again when needed): anyone may create groups,
    so the cache must not grow with their number.

    With each epoch its group record and rooms are kept too (:meth:`cached`,
    :meth:`rooms`): an application message is checked against the cached epoch and
    appended with ``at_epoch`` -- the store refuses it (:class:`EpochMoved`) if another
    process committed meanwhile, and the caller reads again. The one place that
    invalidates: a new epoch replaces the view (:meth:`put`, after every commit), and
    :meth:`forget` drops it (a room attached or detached)."""

    def __init__(self, store: Store, clock: Callable[[], int], size: int = VIEWS_KEPT
                 ) -> None:
        self.store = store
        self.clock = clock
        self.size = size
        self._views: OrderedDict[bytes, View] = OrderedDict()

    async def load(self, group_id: bytes, *, proposals: bool,
                   credential_validator: CredentialValidator | None
                   ) -> tuple[GroupRecord, PublicGroup]:
        """The group's record and state; with ``proposals``, every proposal of the
        epoch the log holds is pending in it (:meth:`PublicGroup.process`, in log
        order; one that no longer verifies is left out and logged)."""
        try:
            record = await self.store.get_group(group_id)
            view = self._views.get(group_id)
            if view is None or view.epoch != record.epoch:
                view = View(record.epoch, load_state(record))
            view = replace(view, record=record)
            if proposals:
                view = self._replay(view, await self.store.epoch_proposals(
                    group_id, record.epoch), credential_validator)
        except UnknownGroup as exc:
            raise UnknownGroupRejection(f"unknown group {group_id.hex()}") from exc
        except StoreError as exc:
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc
        self._keep(group_id, view)
        return record, view.group

    def cached(self, group_id: bytes) -> tuple[GroupRecord, PublicGroup] | None:
        """The cached epoch's record and state, without reading the store (None if
        not cached, or its record was not read since its epoch began). Whoever acts
        on it appends with ``at_epoch`` (see the class docstring)."""
        view = self._views.get(group_id)
        if view is None or view.record is None:
            return None
        self._views.move_to_end(group_id)
        return view.record, view.group

    def appended(self, group_id: bytes, epoch: int, seq: int) -> None:
        """This process logged entry ``seq`` in ``epoch``: the cached record's
        ``next_seq`` follows (the replay window is counted from it)."""
        view = self._views.get(group_id)
        if view is not None and view.epoch == epoch and view.record is not None \
                and view.record.next_seq <= seq:
            self._views[group_id] = replace(view, record=replace(view.record,
                                                                 next_seq=seq + 1))

    async def rooms(self, group_id: bytes, epoch: int) -> Rooms:
        """The group's rooms, read once per epoch (and again after :meth:`forget`;
        another process's attachment shows from the next epoch)."""
        view = self._views.get(group_id)
        if view is not None and view.epoch == epoch and view.rooms is not None:
            return view.rooms
        rooms = tuple((room.transport, room.room_id)
                      for room in await self.store.group_rooms(group_id))
        view = self._views.get(group_id)
        if view is not None and view.epoch == epoch:
            self._views[group_id] = replace(view, rooms=rooms)
        return rooms

    def forget(self, group_id: bytes) -> None:
        """Drop the group's view (record, rooms and state): read again when needed."""
        self._views.pop(group_id, None)

    def _keep(self, group_id: bytes, view: View) -> None:
        self._views[group_id] = view
        self._views.move_to_end(group_id)
        while len(self._views) > self.size:
            self._views.popitem(last=False)

    def __len__(self) -> int:
        return len(self._views)

    def _replay(self, view: View, entries: list[LogEntry],
                credential_validator: CredentialValidator | None) -> View:
        for entry in entries:
            if entry.seq <= view.applied:
                continue
            group = view.group
            try:
                group, _ = group.process(entry.payload, now=self.clock(),
                                         credential_validator=credential_validator)
            except MLSError as exc:
                log.warning("proposal at seq %d of group %s left out: %s", entry.seq,
                            group.group_id.hex(), exc)
            view = replace(view, group=group, applied=entry.seq)
        return view

    def put(self, group: PublicGroup) -> None:
        """Cache ``group`` as its group's current state: a new epoch, or the epoch with
        a proposal this process just logged. How far the log was replayed stays as it
        was, so a proposal another process logged meanwhile is still picked up (and
        ours replayed once more, which changes nothing: pending proposals are kept
        once per ProposalRef)."""
        view = self._views.get(group.group_id)
        if view is not None and view.epoch == group.epoch:
            self._keep(group.group_id, replace(view, group=group))
        else:
            self._keep(group.group_id, View(group.epoch, group))
