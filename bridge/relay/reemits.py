"""The relay's output queue: every group message a puppet decrypted is re-emitted into
the relayed rooms exactly once, across restarts.

:class:`ReEmits` is what puppets hand their decrypted messages to
(:class:`bridge.relay.puppets.ReEmitter`) and what their saves wait for
(:class:`bridge.relay.puppets.EmittedFirst`):

* a decrypted message is queued once (by group and log seq); a legacy user's own text
  is queued too (to show it on the other side), but no puppet waits for it;
* one worker re-emits the queue in order (:class:`bridge.relay.output.Output`), archives
  what went into an XMPP room, and persists the group's re-emit cursor (the last log
  seq re-emitted, :data:`EMITTED_CURSOR`) before the next one: after a ``kill -9`` a
  puppet may decrypt again what was re-emitted (it saves only up to what was), and
  the cursor skips it;
* bounded: beyond :data:`OUTBOUND_KEPT` waiting the oldest is dropped (the rooms show
  the latest conversation), and a group decrypted before its rooms are attached at a
  start keeps at most :data:`EARLY_KEPT`; a dropped message counts as handed on;
* at a stop, the worker ends and what it had not re-emitted is named (never its text):
  a puppet that did not save past it decrypts it again at the next start.

Plaintext is never logged: only group, seq and sender.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping

from bridge.hub.store import Store, StoreError
from bridge.member import Received
from bridge.relay.output import Emission, Output, Rooms
from transports.errors import TransportError
from transports.fairness import LimitObserver, NullObserver

log = logging.getLogger(__name__)

OUTBOUND_KEPT = 4096  # decrypted messages waiting to be re-emitted (the oldest dropped)
EARLY_KEPT = 1024  # per group, decrypted before the group's rooms were attached
SETTLE_TIMEOUT = 30.0  # seconds a puppet waits for re-emits before saving anyway
EMITTED_CURSOR = "relay:emitted:"  # + group id hex: the last log seq re-emitted
RECENT_KEPT = 4096  # (group, seq) recently queued: a second decryption is ignored


class ReEmits:
    """The re-emit queue and its worker (see the module docstring). ``groups`` (the
    relayed groups' rooms) and ``puppets`` (relay identities) are the relay's own,
    read as they change."""

    def __init__(self, store: Store, output: Output, groups: Mapping[bytes, Rooms],
                 puppets: Mapping[str, object]) -> None:
        self.store = store
        self.output = output
        self.groups = groups
        self.puppets = puppets
        self.observer: LimitObserver = NullObserver()
        self.relayed = 0  # messages re-emitted (counted, never logged)
        self._recent: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._emitted_upto: dict[bytes, int] = {}  # persisted: survives a kill -9
        self._early: dict[bytes, list[Emission]] = {}  # decrypted before attached()
        self._attached: set[bytes] = set()  # groups whose cursor is read, early queued
        self._unemitted: dict[bytes, set[int]] = {}  # decrypted seqs not yet re-emitted
        self._disabled: set[bytes] = set()  # groups whose relay was turned off
        self._emitted_event = asyncio.Event()  # set whenever a re-emit completes
        self._outbound: asyncio.Queue[Emission] = asyncio.Queue()
        self._emitting: Emission | None = None  # the re-emit under way (named if cut)
        self._worker: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def join(self) -> None:
        """Wait until everything queued was re-emitted (the stop's drain)."""
        await self._outbound.join()

    async def stop(self) -> list[str]:
        """End the worker; name (and forget) the re-emit it was cut in and those
        queued."""
        emitting, worker, self._worker = self._emitting, self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        dropped = [] if emitting is None else [_undone(emitting)]
        while not self._outbound.empty():
            dropped.append(_undone(self._outbound.get_nowait()))
            self._outbound.task_done()
        return dropped

    # -- groups ------------------------------------------------------------------------

    def resume(self, group_id: bytes) -> None:
        """The group is relayed (again): its decrypted messages are re-emitted."""
        self._disabled.discard(group_id)

    async def attached(self, group_id: bytes) -> None:
        """The group's rooms are known: read its re-emit cursor (once) and queue what
        was decrypted before, beyond the cursor. Until then what puppets decrypt waits
        with it (in log order: one decrypted while the cursor is read is queued after
        those decrypted before, and is checked against the cursor too)."""
        if group_id not in self._emitted_upto:
            saved = await self.store.get_cursor(EMITTED_CURSOR + group_id.hex())
            self._emitted_upto[group_id] = int(saved) if saved else 0
        for emission in self._early.pop(group_id, []):
            if emission.seq > self._emitted_upto[group_id]:
                self.emit_later(emission)
            else:
                self._settled(emission)
        self._attached.add(group_id)

    def disabled(self, group_id: bytes) -> None:
        """Relay mode was turned off for the group: nothing of it is re-emitted."""
        self._early.pop(group_id, None)
        self._attached.discard(group_id)
        self._disabled.add(group_id)

    # -- queueing (ReEmitter) ----------------------------------------------------------

    def on_decrypted(self, received: Received) -> None:
        """A message a puppet decrypted: queue it once for the relayed rooms (messages
        of legacy users were shown when they were sent, and are skipped)."""
        key = (received.group_id, received.seq)
        if key in self._recent or received.sender in self.puppets \
                or received.group_id in self._disabled:
            return
        if received.seq <= self._emitted_upto.get(received.group_id, 0):
            return
        self._recent[key] = None
        while len(self._recent) > RECENT_KEPT:
            self._recent.popitem(last=False)
        emission = Emission(received.group_id, received.seq, received.sender,
                            received.content)
        self._unemitted.setdefault(received.group_id, set()).add(received.seq)
        if received.group_id not in self._attached:  # restarted: not attached yet
            early = self._early.setdefault(received.group_id, [])
            early.append(emission)
            if len(early) > EARLY_KEPT:
                self._drop(early.pop(0), "relay-early")
            return
        self.emit_later(emission)

    def emit_later(self, emission: Emission) -> None:
        """Queue a re-emit; beyond :data:`OUTBOUND_KEPT` waiting, the oldest waiting
        one is dropped (the rooms show the latest conversation)."""
        if self._outbound.qsize() >= OUTBOUND_KEPT:
            self._drop(self._outbound.get_nowait(), "relay-output")
            self._outbound.task_done()
        self._outbound.put_nowait(emission)
        self.observer.depth("relay-output", self._outbound.qsize())

    def _drop(self, emission: Emission, queue: str) -> None:
        """A decrypted message that will not be re-emitted (counted, never logged)."""
        self.observer.dropped(queue, "oldest")
        log.warning("relay: a message of group %s was not re-emitted (%s full)",
                    emission.group_id.hex()[:16], queue, extra={"flood_key": queue})
        self._settled(emission)

    def emitted_through(self, group_id: bytes, seq: int) -> bool:
        """Whether every message of the group up to ``seq`` that a puppet decrypted
        has been re-emitted."""
        return all(pending > seq for pending in self._unemitted.get(group_id, ()))

    async def wait_emitted(self, group_id: bytes, seq: int) -> None:
        """Wait until :meth:`emitted_through` holds; after ``SETTLE_TIMEOUT`` s (the
        rooms are unreachable) go on with a warning rather than block the puppet."""
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                while not self.emitted_through(group_id, seq):
                    await self._emitted_event.wait()
        except TimeoutError:
            log.warning("relay: saving a puppet's state before its messages were "
                        "re-emitted (%.0f s)", SETTLE_TIMEOUT)

    # -- the worker --------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            emission = await self._outbound.get()
            self._emitting = emission
            try:
                await self._emit(emission)
            except TransportError as exc:
                log.warning("relay: a message was not re-emitted: %s", exc)
            finally:
                self._emitting = None
            try:
                rooms = self.groups.get(emission.group_id)
                if rooms is not None:  # kept for XEP-0313 (Output.record)
                    await self.output.record(rooms, emission)
                await self._mark_emitted(emission)
            except StoreError as exc:
                log.warning("relay: re-emit cursor not saved: %s", exc)
            finally:
                self._settled(emission)
                self._outbound.task_done()

    async def _emit(self, emission: Emission) -> None:
        rooms = self.groups.get(emission.group_id)
        if rooms is None:
            return
        await self.output.emit(rooms, emission)
        self.relayed += 1

    async def _mark_emitted(self, emission: Emission) -> None:
        """Persist the seq of a re-emitted group message (not of a legacy user's own
        text: its puppet never decrypts it) before the next re-emit."""
        if emission.origin or emission.seq <= self._emitted_upto.get(emission.group_id, 0):
            return
        self._emitted_upto[emission.group_id] = emission.seq
        await self.store.set_cursor(EMITTED_CURSOR + emission.group_id.hex(),
                                    str(emission.seq))

    def _settled(self, emission: Emission) -> None:
        """A decrypted message is handed on: puppets may save state past it."""
        if emission.origin:
            return  # a legacy user's own text: no puppet decrypted it
        pending = self._unemitted.get(emission.group_id)
        if pending is not None:
            pending.discard(emission.seq)
            if not pending:
                del self._unemitted[emission.group_id]
        self._emitted_event.set()
        self._emitted_event = asyncio.Event()


def _undone(emission: Emission) -> str:
    """How a stop names a re-emit it dropped (never its text)."""
    where = f"group {emission.group_id.hex()[:16]} seq {emission.seq} from {emission.sender}"
    if emission.origin:  # a legacy user's own text: no puppet will decrypt it again
        return f"relay: {where}: not shown in the other room"
    return f"relay: re-emit of {where}: deferred to the next start"


__all__ = ["EARLY_KEPT", "EMITTED_CURSOR", "OUTBOUND_KEPT", "SETTLE_TIMEOUT", "ReEmits"]
