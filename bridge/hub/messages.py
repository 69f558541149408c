"""The hub's path for what members send between commits (RFC 9420 §6, §12.1): application
messages (PrivateMessage, relayed within the epoch lag, never decrypted) and a member's
own proposals (PublicMessage, verified and followed so that a commit may cover them by
reference, docs/SECURITY.md A12); and the pages of the log members catch up from
(:func:`log_page`, A13).

:func:`parse_send` checks the request's shape; :class:`MessageLog` checks a message
against the group and logs it, under the group's lock that :class:`bridge.hub.Hub`
holds. An application message is first checked against the group as cached for its
epoch (:class:`bridge.hub.public_view.GroupViews`, no read) and logged only if the group
is still at that epoch; when it moved on, or a possibly stale view refused it, the
group is read and the message checked again.

A request can reach the hub twice (:data:`REPLAY_WINDOW`): the copy is answered with
the first one's seq instead of being logged again, also once its epoch has passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from bridge.credentials import TrustAnchor
from bridge.errors import (
    Forbidden,
    InvalidProposal,
    Malformed,
    NotMember,
    PrivateProposal,
    Rejection,
    StaleEpoch,
    Unavailable,
    WrongEpochRejection,
)
from bridge.hub import public_view
from bridge.hub.authz import Authorizer
from bridge.hub.policy import HubConfig
from bridge.hub.public_view import GroupViews
from bridge.hub.store import (
    EpochMoved,
    GroupRecord,
    LogKind,
    Store,
    StoreError,
    StoreUsageError,
    WrongEpoch,
)
from mls import (
    ContentType,
    CredentialValidator,
    MessageHeader,
    MLSError,
    MLSMessage,
    PublicGroup,
    SenderType,
    WireFormat,
)
from transports.interface import Inbound, Outbound

#: How many of the latest log entries a SEND is compared with. A request can reach the
#: hub twice: the Matrix bot marks a to-device request as handled in a transaction after
#: the one that logged it, so a SIGKILL between the two makes the restarted bot act on it
#: again. The same MLS ciphertext is the same message (members would drop the copy: its
#: key generation is used up), so it is answered with its first seq (and fanned out
#: again: deliveries are idempotent by seq) instead of being logged twice. The store
#: compares it in the appending transaction (``append_message(replay_after=...)``: one
#: index search on the payload's SHA-256, whatever the window's size).
REPLAY_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Sent:
    """A SEND's message, parsed: what :class:`MessageLog` needs."""

    message: MLSMessage
    header: MessageHeader

    @property
    def public(self) -> bool:
        return self.header.wire_format == WireFormat.PUBLIC_MESSAGE

    @property
    def kind(self) -> LogKind:
        return LogKind.PROPOSAL if self.public else LogKind.APPLICATION


@dataclass(frozen=True, slots=True)
class Logged:
    """Where a message went: its ``seq`` in ``group``'s log; ``again``: a copy of an
    entry logged before, whose epoch has passed (answered, not fanned out again)."""

    seq: int
    group: PublicGroup
    again: bool = False


def parse_send(request: Inbound) -> Sent:
    """The SEND's message, if it is one the hub relays (RFC 9420 §6.2: application
    messages as PrivateMessage; proposals as PublicMessage, which the hub must follow;
    commits through submit-commit)."""
    message = public_view.parse_message(request.payload, "message")
    header = public_view.header_of(message, "message")
    sent = Sent(message, header)
    if header.content_type == ContentType.COMMIT:
        raise Malformed("commits go through submit-commit")
    if header.content_type == ContentType.PROPOSAL and not sent.public:
        raise PrivateProposal("proposals go as PublicMessage: the hub must follow "
                              "them to verify the commit that covers them")
    if header.content_type == ContentType.APPLICATION and sent.public:
        raise Malformed("application messages go as PrivateMessage (RFC 9420 §6.2)")
    if request.group_id and request.group_id != header.group_id:
        raise Malformed("group_id differs from the message's")
    return sent


class MessageLog:
    """Checks and logs what members send between commits (see the module docstring).
    The caller holds the group's lock."""

    def __init__(self, store: Store, views: GroupViews, authz: Authorizer,
                 anchor: TrustAnchor, *, config: Callable[[], HubConfig],
                 clock: Callable[[], int],
                 credential_validator: Callable[[], CredentialValidator]) -> None:
        self.store = store
        self.views = views
        self.authz = authz
        self.anchor = anchor
        self._config = config
        self._clock = clock
        self._validator = credential_validator

    async def log(self, request: Inbound, sent: Sent) -> Logged:
        group_id = sent.header.group_id
        cached = None if sent.public else self.views.cached(group_id)
        if cached is not None:
            record, group = cached
            with contextlib.suppress(EpochMoved, Rejection):
                return Logged(await self._log(request, sent, record, group, at_epoch=True),
                              group)
        record, group = await self.views.load(group_id, proposals=sent.public,
                                              credential_validator=self._validator())
        try:
            return Logged(await self._log(request, sent, record, group, at_epoch=False), group)
        except StaleEpoch:  # logged once already, before the epochs moved on?
            seq = await self._replayed(group_id, record.next_seq, request.payload)
            if seq is None:
                raise
            return Logged(seq, group, again=True)

    async def _log(self, request: Inbound, sent: Sent, record: GroupRecord,
                   group: PublicGroup, *, at_epoch: bool) -> int:
        """Check the message against ``group`` and log it (with ``at_epoch``: only if the
        group is still at ``group``'s epoch, else :class:`EpochMoved`); return its seq.
        A member's proposal is followed into the cached state."""
        group_id = group.group_id
        rooms = await self.views.rooms(group_id, group.epoch) if request.event_id else ()
        await self.authz.check_message(dataclasses.replace(request, group_id=group_id),
                                       group, sent.message, rooms)
        self._check_epoch(group.epoch, sent.header.epoch)
        new = self._follow_proposal(group, sent, request.sender) if sent.public else None
        try:  # a replay of one of the last REPLAY_WINDOW entries: see the constant
            seq = await self.store.append_message(
                group_id, sent.header.epoch, sent.kind, request.payload, request.sender,
                replay_after=max(0, record.next_seq - 1 - REPLAY_WINDOW),
                at_epoch=group.epoch if at_epoch else None)
        except WrongEpoch as exc:
            raise WrongEpochRejection(exc.current_epoch) from exc
        except EpochMoved:
            raise
        except StoreError as exc:
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc
        if new is not None:
            self.views.put(new)
        self.views.appended(group_id, group.epoch, seq)
        return seq

    def _follow_proposal(self, group: PublicGroup, sent: Sent, requester: str) -> PublicGroup:
        """A member's PublicMessage proposal, by the requester's own leaf, verified and
        pending in the returned state."""
        header = sent.header
        sender = header.sender
        assert sender is not None
        if sender.sender_type != SenderType.MEMBER:
            raise Forbidden("only members send proposals through the hub")
        if public_view.leaf_identity(group, sender.leaf_index, self.anchor) != requester:
            raise NotMember(f"sender leaf {sender.leaf_index} is not the requester's")
        if header.epoch != group.epoch:
            raise WrongEpochRejection(group.epoch, f"proposal for epoch {header.epoch}, "
                                                   f"current {group.epoch}")
        try:
            new, _ = group.process(sent.message, now=self._clock(),
                                   credential_validator=self._validator())
        except MLSError as exc:
            raise public_view.rejection(exc, InvalidProposal, "proposal", group.epoch) from exc
        return new

    async def _replayed(self, group_id: bytes, next_seq: int, payload: bytes) -> int | None:
        """The seq of ``payload`` if one of the last :data:`REPLAY_WINDOW` entries holds
        it: a request acted on twice (see the constant) whose epoch has passed since it
        was logged is still answered with its seq, not refused as stale (its sender
        would encrypt it anew: everyone would read it twice)."""
        after = max(0, next_seq - 1 - REPLAY_WINDOW)
        for entry in await self.store.log_since(group_id, after, REPLAY_WINDOW + 1):
            if entry.payload == payload:
                return entry.seq
        return None

    def _check_epoch(self, current: int, epoch: int) -> None:
        lag = self._config().max_epoch_lag
        if epoch > current:
            raise WrongEpochRejection(current, f"message for future epoch {epoch} "
                                               f"(current {current})")
        if epoch < current - lag:
            raise StaleEpoch(current, f"message for epoch {epoch} is older than {lag} "
                                      f"epoch(s) behind (current {current})")


async def log_page(store: Store, group_id: bytes, after_seq: int, limit: int,
                   readable_from: int) -> tuple[Outbound, ...]:
    """Up to ``limit`` log entries after ``after_seq`` for a member (A13); those of
    epochs before ``readable_from`` (the epoch it joined) as placeholders -- seq, epoch
    and kind; no payload, no sender: the sequence stays gap-free, the ciphertext stays
    with those who could read it."""
    try:
        entries = await store.log_since(group_id, after_seq, limit)
    except StoreUsageError as exc:
        raise Malformed(str(exc)) from exc
    return tuple(Outbound(entry.kind.value, group_id=group_id, seq=entry.seq,
                          epoch=entry.epoch, sender=entry.sender, payload=entry.payload)
                 if entry.epoch >= readable_from else
                 Outbound(entry.kind.value, group_id=group_id, seq=entry.seq,
                          epoch=entry.epoch)
                 for entry in entries)


def origin(request: Inbound) -> tuple[str, ...]:
    """Where the sender posted the message itself, if it did (:attr:`Inbound.event_id`,
    a Matrix member's room event; its room was checked by A12): the delivery's
    ``origin``, so that room gets a confirmation instead of a copy."""
    if not request.event_id:
        return ()
    return (request.transport, request.room_id, request.event_id)


__all__ = ["REPLAY_WINDOW", "Logged", "MessageLog", "Sent", "log_page", "origin", "parse_send"]
