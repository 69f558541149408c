"""The receiving half of :class:`bridge.member.Member`: deliveries applied strictly in
log order, gaps fetched from the hub, echoes of our own messages recognised, a commit
that cannot be processed reported for a resync, membership events raised, and the lazy
saving of what received entries changed (RFC 9750 §5.2; RFC 9420 §14 for the ordering
a member relies on).

:class:`Inbox` is a collaborator the member owns: it shares the member's group slots
and store, and is given explicitly what it needs of the member -- its identity (for
logs), its trust (:class:`bridge.member.identity.MemberIdentity`: the credential
validator every received message is processed with, RFC 9420 §5.3.1, and the verified
identities of credentials), a way to fetch the log, what to do with a Welcome and with
a group it can no longer follow -- and the member's hooks
(:data:`bridge.member.state.ReceivedHook`, :data:`bridge.member.events.MembershipHook`,
:class:`bridge.member.state.SavePolicy`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bridge.errors import BridgeError, ContentError, HubRefused, StoreError
from bridge.member.content import Content
from bridge.member.events import (
    MembershipEvent,
    MembershipHook,
    commit_events,
    group_mode,
)
from bridge.member.identity import MemberIdentity
from bridge.member.state import (
    GroupSlot,
    MemberStore,
    Received,
    ReceivedHook,
    SaveAnytime,
    SavePolicy,
    digest,
)
from mls.errors import MLSError
from mls.group.events import ApplicationEvent, CommitEvent
from mls.group.group import Group
from mls.tree.math import LeafIndex
from transports.errors import TransportError
from transports.interface import Kind, Outbound

log = logging.getLogger("bridge.member")

# what a delivery may fail with without ending the inbox (see Inbox.run)
MAX_QUEUED = 10_000  # deliveries waiting before log entries are dropped (and fetched)
CATCH_UP = "catch-up"  # the queue item standing for a group's dropped entries
DELIVERY_FAILURES = (MLSError, BridgeError, TransportError, StoreError, OSError)

#: ``fetch_log(group_id, after_seq, limit)``: the hub's reply to FETCH_LOG.
FetchLog = Callable[[bytes, int, int], Awaitable[Outbound]]


class Inbox:
    """Deliveries in, group state forward (see the module docstring).

    ``slots`` is the member's own dict of groups (the inbox adds none, except through
    ``join``); ``join(delivery)`` handles a Welcome; ``on_broken(group_id, seq,
    error)`` is told of a group whose commit at ``seq`` could not be processed, and
    why (None: nothing is done);
    ``on_received`` sees every decrypted application message, which the slot keeps
    (for :meth:`bridge.member.Member.received`) only if ``keep_received``;
    ``on_event`` sees every membership event (which the slot keeps)."""

    def __init__(self, slots: dict[bytes, GroupSlot], store: MemberStore, *,
                 identity: Callable[[], str], trust: MemberIdentity, fetch_log: FetchLog,
                 join: Callable[[Outbound], Awaitable[None]],
                 on_broken: Callable[[bytes, int, MLSError], None] | None,
                 clock: Callable[[], int],
                 log_page: int = 200, persist_interval: float = 1.0,
                 save_policy: SavePolicy | None = None,
                 on_received: ReceivedHook | None = None,
                 keep_received: bool = True, on_event: MembershipHook | None = None) -> None:
        self.slots = slots
        self.store = store
        self.log_page = log_page
        self.persist_interval = persist_interval
        self.save_policy: SavePolicy = save_policy or SaveAnytime()
        self._identity = identity
        self.trust = trust
        self._on_event = on_event
        self._fetch_log = fetch_log
        self._join = join
        self._on_broken = on_broken
        self._clock = clock
        self._on_received = on_received
        self._keep_received = keep_received
        self._queue: asyncio.Queue[Outbound] = asyncio.Queue()
        self._queued: dict[bytes, int] = {}  # group id -> deliveries in the queue
        self._behind: set[bytes] = set()  # groups with deliveries dropped (queue full)
        self.max_queued = MAX_QUEUED
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    # -- the queue ---------------------------------------------------------------------

    async def deliver(self, message: Outbound) -> None:
        """:class:`transports.interface.DeliverySink`: enqueue only. With
        :attr:`max_queued` deliveries waiting, a log entry is dropped (counted in
        :attr:`dropped`) and one catch-up item per group queued in its place: the
        group fetches the log from where it is when that item's turn comes. A Welcome
        is always queued."""
        if message.kind != Kind.WELCOME and self._queue.qsize() >= self.max_queued:
            self.dropped += 1
            if message.group_id in self._behind:
                return
            self._behind.add(message.group_id)  # one catch-up marker per group
            message = Outbound(CATCH_UP, group_id=message.group_id, seq=message.seq)
        self._queued[message.group_id] = self._queued.get(message.group_id, 0) + 1
        self._queue.put_nowait(message)

    def empty(self) -> bool:
        """Whether no delivery is waiting."""
        return self._queue.empty()

    def pending(self, group_id: bytes) -> int:
        """How many deliveries for the group wait in the queue."""
        return self._queued.get(group_id, 0)

    async def idle(self) -> None:
        """Wait until every delivery received so far was processed."""
        await self._queue.join()

    @property
    def running(self) -> bool:
        """Whether the inbox is applying deliveries (started, not stopped, not dead)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Apply deliveries one by one. A failure (bad entry, hub or link unreachable
        during catch-up, store down) is logged and the inbox goes on: what was not
        applied is fetched from the log with the next delivery or a sync."""
        while True:
            message = await self._queue.get()
            try:
                await self._on_delivery(message)
            except DELIVERY_FAILURES as exc:
                log.warning("%s: delivery %s seq %d failed: %s: %s", self._identity(),
                            message.kind, message.seq, type(exc).__name__, exc)
            finally:
                self._queue.task_done()
                left = self._queued.pop(message.group_id, 1) - 1
                if left:
                    self._queued[message.group_id] = left
            if self._queue.empty():
                try:
                    await self._persist_received()
                except (StoreError, OSError) as exc:
                    log.warning("%s: group state not saved (retried later): %s",
                                self._identity(), type(exc).__name__)

    async def _on_delivery(self, message: Outbound) -> None:
        if message.kind == CATCH_UP:  # entries of the group were dropped: fetch them
            self._behind.discard(message.group_id)
            slot = self.slots.get(message.group_id)
            if slot is not None:
                await self.catch_up(slot)
            return
        if message.kind == Kind.WELCOME:
            await self._join(message)
            slot = self.slots.get(message.group_id)
            if slot is not None:
                await self.catch_up(slot)
            return
        slot = self.slots.get(message.group_id)
        if slot is None:
            return
        async with slot.lock:
            current = self.slots.get(message.group_id)
            if current is not slot:  # replaced while we waited: a rejoin, under this lock
                if current is None or current.lock is not slot.lock:
                    return  # fetched from the log with the next delivery or a sync
                slot = current
            if message.seq < slot.next_seq:
                return
            slot.buffer[message.seq] = message
            if message.seq == slot.next_seq:
                self.drain(slot)
                return
        await self.catch_up(slot)  # a gap

    # -- applying the log --------------------------------------------------------------

    async def sync(self, slot: GroupSlot) -> None:
        """Fetch and apply everything the log holds beyond what we applied; save."""
        await self.catch_up(slot)
        await self.persist(slot)

    async def catch_up(self, slot: GroupSlot) -> None:
        """Fetch the log from our position until it is exhausted. Called without the
        slot's lock: it is taken only to apply each page, never across the fetch, so
        a member's own sends and commits are not held up by the round trip (nor the
        inbox by theirs)."""
        while slot.group.active and not slot.broken:
            reply = await self._fetch_log(slot.group.group_id, slot.next_seq - 1,
                                          self.log_page)
            if not reply.ok:
                raise HubRefused(reply.code, reply.reason, reply.epoch)
            async with slot.lock:
                for entry in reply.entries:
                    if entry.seq >= slot.next_seq:
                        slot.buffer.setdefault(entry.seq, entry)
                self.drain(slot)
            if len(reply.entries) < self.log_page:
                return

    def drain(self, slot: GroupSlot) -> None:
        """Apply buffered entries while they are next in sequence."""
        for seq in [s for s in slot.buffer if s < slot.next_seq]:
            del slot.buffer[seq]
        while slot.next_seq in slot.buffer and not slot.broken:
            entry = slot.buffer.pop(slot.next_seq)
            if entry.seq in slot.own_seqs:
                slot.own_seqs.discard(entry.seq)
            elif slot.group.active:
                self._apply(slot, entry)
            slot.next_seq += 1
            slot.dirty = True

    def _apply(self, slot: GroupSlot, entry: Outbound) -> None:
        if entry.kind == Kind.COMMIT:
            self._apply_commit(slot, entry)
            return
        sent = digest(entry.payload)
        if sent in slot.sent:  # the echo of our own message
            slot.sent.discard(sent)
            return
        try:
            group, event = slot.group.process(entry.payload, now=self._clock(),
                                              credential_validator=self.trust.policy())
        except MLSError as exc:
            log.info("%s: dropped %s seq %d: %s", self._identity(), entry.kind, entry.seq,
                     exc)
            return
        slot.group = group
        if isinstance(event, ApplicationEvent):
            try:
                content = Content.decode(event.data)
            except ContentError as exc:
                log.info("%s: undecodable content at seq %d: %s", self._identity(),
                         entry.seq, exc)
                return
            sender = self._leaf_identity(group, event.sender, event.epoch)
            received = Received(group.group_id, sender, content, entry.seq, event.epoch)
            if self._keep_received:
                slot.received.append(received)
            if self._on_received is not None:
                self._on_received(received)

    def _apply_commit(self, slot: GroupSlot, entry: Outbound) -> None:
        """A commit entry, in log order. While our own commit is pending
        (``slot.staged``): its entry merges it; a foreign commit for its epoch means
        the hub refused ours (one commit per epoch), so the staged commit is dropped
        before the winner is processed and can never be merged after it (the rule of
        :meth:`bridge.member.commits.OwnCommits.commit`)."""
        if slot.staged is not None and entry.payload == slot.staged_bytes:
            self.merge_own(slot, entry.seq)
            return
        if entry.epoch < slot.group.epoch:
            return  # already applied (we merged it, or a duplicate)
        if slot.staged is not None:
            slot.staged = None  # a foreign commit won our epoch: ours was refused
        before = slot.group
        try:
            group, event = before.process(entry.payload, now=self._clock(),
                                          credential_validator=self.trust.policy())
        except MLSError as exc:
            log.warning("%s: cannot apply commit seq %d (epoch %d, ours %d): %s: %s",
                        self._identity(), entry.seq, entry.epoch, before.epoch,
                        type(exc).__name__, exc)
            slot.broken = True
            if self._on_broken is not None:
                self._on_broken(before.group_id, entry.seq, exc)
            return
        slot.group = group
        if isinstance(event, CommitEvent):
            self.emit(slot, commit_events(before, group, event, entry.payload, entry.seq,
                                          self.trust.identity_of))

    def merge_own(self, slot: GroupSlot, seq: int) -> None:
        """Our staged commit was accepted at ``seq``: merge it, raise its events."""
        staged, before = slot.staged, slot.group
        assert staged is not None
        slot.group = before.merge(staged)
        slot.staged, slot.merged_seq = None, seq
        self.emit(slot, commit_events(before, slot.group, staged.event, staged.message, seq,
                                      self.trust.identity_of))

    def emit(self, slot: GroupSlot, events: list[MembershipEvent]) -> None:
        """Keep, log and hand on membership events."""
        if not events:
            return
        mode = group_mode(slot.group)
        for event in events:
            slot.events.append(event)
            log.info("%s: group %s epoch %d seq %d: %s [%s mode: %s]", self._identity(),
                     event.group_id.hex()[:16], event.epoch, event.seq, event.describe(),
                     mode.value, mode.label)
            if self._on_event is not None:
                self._on_event(event)

    # -- persistence -----------------------------------------------------------------------

    async def persist(self, slot: GroupSlot) -> None:
        """Save the slot now (before anything we made leaves the process), once the
        save policy allows it."""
        await self.save_policy.settle(slot)
        await self.save(slot)

    async def save(self, slot: GroupSlot) -> None:
        # the snapshot is taken before the first await: what was checked is what is saved
        await self.store.save("group:" + slot.group.group_id.hex(), slot.to_bytes())
        slot.dirty = False
        slot.persisted_at = time.monotonic()

    async def save_allowed(self) -> dict[bytes, str]:
        """Save every group the save policy allows to save now (at stop); return the
        groups whose latest received changes stay unsaved, and why (what they applied
        since their last save is fetched again from the log at the next start)."""
        unsaved: dict[bytes, str] = {}
        for slot in list(self.slots.values()):
            group_id = slot.group.group_id
            if not self.save_policy.may_save(slot):
                if slot.dirty:
                    unsaved[group_id] = (f"the save policy holds it at seq {slot.next_seq - 1}"
                                         " (fetched again from the log)")
                continue
            try:
                await self.save(slot)
            except (StoreError, OSError) as exc:
                unsaved[group_id] = f"{type(exc).__name__}: {exc}"
        return unsaved

    def unsaved(self) -> list[bytes]:
        """The groups changed by received entries since their last save."""
        return [group_id for group_id, slot in self.slots.items() if slot.dirty]

    async def _persist_received(self) -> None:
        """Save groups changed only by received entries, at most every
        ``persist_interval`` seconds (serializing a large group costs milliseconds).
        Losing these saves is harmless: the log is fetched again from the saved position.
        Anything we send is persisted before it leaves."""
        now = time.monotonic()
        for slot in list(self.slots.values()):
            if (slot.dirty and now - slot.persisted_at >= self.persist_interval
                    and self.save_policy.may_save(slot)):
                await self.save(slot)

    def _leaf_identity(self, group: Group, leaf: LeafIndex, epoch: int) -> str:
        """The identity of ``leaf`` in ``epoch`` (current or a retained past one)."""
        tree = group.state.tree
        if epoch != group.epoch:
            for past in group.state.past_epochs:
                if past.epoch == epoch:
                    tree = past.tree
        node = tree.leaf(leaf) if leaf < tree.n_leaves else None
        return self.trust.identity_of(node.credential) if node is not None \
            else f"leaf-{int(leaf)}"
