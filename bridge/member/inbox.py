"""The receiving half of :class:`bridge.member.Member`: deliveries applied strictly in
log order, gaps fetched from the hub, echoes of our own messages recognised, a commit
that cannot be processed answered by a resync, and the lazy saving of what received
entries changed (RFC 9750 §5.2; RFC 9420 §14 for the ordering a member relies on).

:class:`Receiving` is a base class: :class:`bridge.member.Member` supplies the state it
declares (groups, inbox, store, link) and the two operations it calls back
(:meth:`Receiving._join` for a Welcome, :meth:`Receiving._schedule_resync`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.errors import BridgeError, ContentError, HubRefused, StoreError
from bridge.identities import identity_of
from bridge.member.content import Content
from bridge.member.state import MemberStore, Received, _digest, _Slot
from mls.errors import MLSError
from mls.group.events import ApplicationEvent, CommitEvent
from mls.group.group import Group
from mls.tree.math import LeafIndex
from transports.errors import TransportError
from transports.interface import Kind, Op, Outbound

log = logging.getLogger("bridge.member")

# what a delivery may fail with without ending the inbox (see Receiving._run_inbox)
DELIVERY_FAILURES = (MLSError, BridgeError, TransportError, StoreError, OSError)


class Receiving:
    """Deliveries in, group state forward (see the module docstring)."""

    store: MemberStore
    log_page: int
    auto_resync: bool
    persist_interval: float
    _slots: dict[bytes, _Slot]
    _inbox: asyncio.Queue[Outbound]
    _queued: dict[bytes, int]
    _clock: Callable[[], int]

    if TYPE_CHECKING:  # supplied by Member
        @property
        def identity(self) -> str: ...
        async def _request(self, op: Op, **fields: object) -> Outbound: ...
        async def _join(self, delivery: Outbound) -> None: ...
        def _slot(self, group_id: bytes) -> _Slot: ...
        def _schedule_resync(self, group_id: bytes) -> None: ...

    # -- receiving -------------------------------------------------------------------------

    async def deliver(self, message: Outbound) -> None:
        """:class:`DeliverySink`: enqueue only."""
        self._queued[message.group_id] = self._queued.get(message.group_id, 0) + 1
        self._inbox.put_nowait(message)

    async def _run_inbox(self) -> None:
        """Apply deliveries one by one. A failure (bad entry, hub or link unreachable
        during catch-up, store down) is logged and the inbox goes on: what was not
        applied is fetched from the log with the next delivery or :meth:`sync`."""
        while True:
            message = await self._inbox.get()
            try:
                await self._on_delivery(message)
            except DELIVERY_FAILURES as exc:
                log.warning("%s: delivery %s seq %d failed: %s: %s", self.identity,
                            message.kind, message.seq, type(exc).__name__, exc)
            finally:
                self._inbox.task_done()
                left = self._queued.pop(message.group_id, 1) - 1
                if left:
                    self._queued[message.group_id] = left
            if self._inbox.empty():
                try:
                    await self._persist_received()
                except (StoreError, OSError) as exc:
                    log.warning("%s: group state not saved (retried later): %s",
                                self.identity, type(exc).__name__)

    async def _on_delivery(self, message: Outbound) -> None:
        if message.kind == Kind.WELCOME:
            await self._join(message)
            slot = self._slots.get(message.group_id)
            if slot is not None:
                async with slot.lock:
                    await self._catch_up(slot)
            return
        slot = self._slots.get(message.group_id)
        if slot is None:
            return
        async with slot.lock:
            if message.seq < slot.next_seq:
                return
            slot.buffer[message.seq] = message
            if message.seq == slot.next_seq:
                self._drain(slot)
            else:
                await self._catch_up(slot)

    async def sync(self, group_id: bytes) -> None:
        """Fetch and apply everything the log holds beyond what we applied."""
        slot = self._slot(group_id)
        async with slot.lock:
            await self._catch_up(slot)
        await self._persist(slot)

    async def _catch_up(self, slot: _Slot) -> None:
        """Fetch the log from our position until it is exhausted (lock held)."""
        while slot.group.active and not slot.broken:
            reply = await self._request(Op.FETCH_LOG, group_id=slot.group.group_id,
                                        after_seq=slot.next_seq - 1, limit=self.log_page)
            if not reply.ok:
                raise HubRefused(reply.code, reply.reason, reply.epoch)
            for entry in reply.entries:
                slot.buffer.setdefault(entry.seq, entry)
            self._drain(slot)
            if len(reply.entries) < self.log_page:
                return

    def _drain(self, slot: _Slot) -> None:
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

    def _apply(self, slot: _Slot, entry: Outbound) -> None:
        digest = _digest(entry.payload)
        if entry.kind == Kind.COMMIT:
            self._apply_commit(slot, entry)
            return
        if digest in slot.sent:  # the echo of our own message
            slot.sent.discard(digest)
            return
        try:
            group, event = slot.group.process(entry.payload, now=self._clock())
        except MLSError as exc:
            log.info("%s: dropped %s seq %d: %s", self.identity, entry.kind, entry.seq, exc)
            return
        slot.group = group
        if isinstance(event, ApplicationEvent):
            try:
                content = Content.decode(event.data)
            except ContentError as exc:
                log.info("%s: undecodable content at seq %d: %s", self.identity,
                         entry.seq, exc)
                return
            sender = _leaf_identity(group, event.sender, event.epoch)
            slot.received.append(Received(group.group_id, sender, content, entry.seq,
                                          event.epoch))

    def _apply_commit(self, slot: _Slot, entry: Outbound) -> None:
        if slot.staged is not None and entry.payload == slot.staged_bytes:
            slot.group = slot.group.merge(slot.staged)
            slot.staged, slot.merged_seq = None, entry.seq
            return
        if entry.epoch < slot.group.epoch:
            return  # already applied (we merged it, or a duplicate)
        try:
            group, event = slot.group.process(entry.payload, now=self._clock())
        except MLSError as exc:
            log.warning("%s: cannot apply commit seq %d (epoch %d, ours %d): %s",
                        self.identity, entry.seq, entry.epoch, slot.group.epoch, exc)
            slot.broken = True
            if self.auto_resync:
                self._schedule_resync(slot.group.group_id)
            return
        slot.group = group
        if isinstance(event, CommitEvent) and event.removed_self:
            log.info("%s: removed from group %s", self.identity, group.group_id.hex())

    # -- persistence -----------------------------------------------------------------------

    async def _persist(self, slot: _Slot) -> None:
        """Save the slot now (before anything we made leaves the process), once
        :meth:`_settle` allows it."""
        await self._settle(slot)
        await self._save(slot)

    async def _save(self, slot: _Slot) -> None:
        # the snapshot is taken before the first await: what was checked is what is saved
        await self.store.save("group:" + slot.group.group_id.hex(), slot.to_bytes())
        slot.dirty = False
        slot.persisted_at = time.monotonic()

    def _may_save(self, slot: _Slot) -> bool:
        """Whether the slot may be saved as it is now (a hook: a relay puppet may not
        save past a message whose plaintext it has not yet handed on)."""
        return True

    async def _settle(self, slot: _Slot) -> None:
        """Wait until :meth:`_may_save` holds (a hook; members never wait)."""

    async def _persist_received(self) -> None:
        """Save groups changed only by received entries, at most every
        ``persist_interval`` seconds (serializing a large group costs milliseconds).
        Losing these saves is harmless: the log is fetched again from the saved position.
        Anything we send is persisted before it leaves."""
        now = time.monotonic()
        for slot in list(self._slots.values()):
            if (slot.dirty and now - slot.persisted_at >= self.persist_interval
                    and self._may_save(slot)):
                await self._save(slot)


def _leaf_identity(group: Group, leaf: LeafIndex, epoch: int) -> str:
    """The credential identity of ``leaf`` in ``epoch`` (current or a retained past one)."""
    tree = group.state.tree
    if epoch != group.epoch:
        for past in group.state.past_epochs:
            if past.epoch == epoch:
                tree = past.tree
    node = tree.leaf(leaf) if leaf < tree.n_leaves else None
    return identity_of(node.credential) if node is not None else f"leaf-{int(leaf)}"
