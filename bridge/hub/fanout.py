"""The hub's fan-out, outside the group lock: ordered, bounded queues per group and
lane (docs/ARCHITECTURE.md, ``bridge/hub/``).

Under the group lock the hub only verifies, orders and logs; what it logged is handed
to :class:`FanOut` (still under the lock, so in sequence order) and the request is
answered. Each (group, lane) has its own FIFO drained by its own task: a lane is a
network of the bridge (:class:`Split`, which :class:`bridge.app.services.bridge.
RoutingDeliverer` implements) or, for a plain :class:`transports.interface.Deliverer`,
the one transport. So a slow homeserver delays only that group's Matrix lane: neither
the XMPP rooms of the group nor any other group wait for it, and per-room order is the
log's order.

Backpressure: a client's request is admitted (:meth:`FanOut.admit`) before anything is
logged, once fewer than ``backlog`` of the group's entries wait for delivery; beyond a
bounded wait it is refused as "unavailable" (retryable), and a refused request changes
nothing. A slow network so slows the senders of its groups instead of growing a queue.
The hub's own proposals and Welcomes are queued without admission (they follow an
admitted request and are few).

Stopping (the stop's phases, :mod:`bridge.app.shutdown`): the queues empty until the
stop's deadline (:meth:`FanOut.idle`, :meth:`FanOut.drain`; :meth:`FanOut.waiting`
names what is left per group and lane), then :meth:`FanOut.close` drops what is left
and queues nothing any more: a request is refused "unavailable" before it is logged.

Crash safety: the queues live in memory only. An entry logged but not yet fanned out
when the process dies is not lost: members fill the gap from the log when the next
delivery of the group arrives, or on ``<sync/>`` / a sync (:mod:`bridge.member.inbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from bridge.errors import Unavailable
from bridge.hub.policy import HubObserver
from transports.errors import LinkError
from transports.interface import BatchDeliverer, Deliverer, Outbound

log = logging.getLogger(__name__)

Send = Callable[[Outbound], Awaitable[None]]
BATCH = 32  # deliveries a Batching lane is handed at once
#: called once every lane delivered (True) or gave up on (False) a message
Done = Callable[[bool], Awaitable[None]]


class Split(Protocol):
    """A deliverer with several independent lanes (networks): what each lane must send
    for ``message`` (lane name, how to send, the message as that lane sees it)."""

    def split(self, message: Outbound) -> Sequence[tuple[str, Send, Outbound]]: ...


@dataclass(eq=False)
class _Message:
    """One delivery being fanned out over its lanes."""

    message: Outbound
    lanes: int
    done: Done | None
    permit: asyncio.Semaphore | None
    ok: bool = True


class FanOut:
    """Per-(group, lane) ordered queues with admission (see the module docstring)."""

    def __init__(self, deliverer: Deliverer, *, backlog: int = 256,
                 admit_timeout: float = 10.0,
                 observer: Callable[[], HubObserver | None] = lambda: None) -> None:
        self.deliverer = deliverer
        self.backlog = backlog
        self.admit_timeout = admit_timeout
        self._observer = observer
        self._permits: dict[bytes, asyncio.Semaphore] = {}
        self._queues: dict[tuple[bytes, str], deque[tuple[_Message, Send, Outbound]]] = {}
        self._tasks: dict[tuple[bytes, str], asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False

    # -- admission ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admit(self, group_id: bytes) -> AsyncIterator[Callable[[Outbound], None]]:
        """Wait (bounded) for room in the group's backlog; yield the function that
        queues the one admitted message. Not used (the request was refused): the room
        is given back. :class:`Unavailable` if no room came within ``admit_timeout``,
        or at once after :meth:`close` (the hub is stopping)."""
        if self.closed:
            raise Unavailable("the hub is stopping")
        permit = self._permits.get(group_id)
        if permit is None:
            permit = self._permits[group_id] = asyncio.Semaphore(self.backlog)
        try:
            await asyncio.wait_for(permit.acquire(), self.admit_timeout)
        except TimeoutError:
            raise Unavailable("the group's delivery backlog is full; try again") from None
        used = False

        def send(message: Outbound) -> None:
            nonlocal used
            used = True
            self._enqueue(message, None, permit)

        try:
            yield send
        finally:
            if not used:
                permit.release()

    def send(self, message: Outbound, done: Done | None = None) -> None:
        """Queue a delivery without admission (the hub's own; Welcomes)."""
        self._enqueue(message, done, None)

    def _enqueue(self, message: Outbound, done: Done | None,
                 permit: asyncio.Semaphore | None) -> None:
        if self.closed:  # logged already: members catch up from the log
            log.debug("fan-out closed: seq %d of group %s not queued", message.seq,
                      message.group_id.hex()[:16])
            if permit is not None:
                permit.release()
            return
        self._queue(message, done, permit)

    # -- queues ------------------------------------------------------------------------

    def _lanes(self, message: Outbound) -> Sequence[tuple[str, Send, Outbound]]:
        split: Callable[[Outbound], Sequence[tuple[str, Send, Outbound]]] | None = \
            getattr(self.deliverer, "split", None)  # a Split (isinstance is slow)
        if split is not None:
            return split(message)
        return (("", lane_send(self.deliverer), message),)

    def _queue(self, message: Outbound, done: Done | None,
               permit: asyncio.Semaphore | None) -> None:
        # no lane (no recipient anywhere): one that sends nothing, so it still ends
        lanes = self._lanes(message) or (("", _nothing, message),)
        item = _Message(message, len(lanes), done, permit)
        observer = self._observer()
        if observer is not None:
            observer.delivery_started(message)
        for name, send, part in lanes:
            key = (message.group_id, name)
            self._queues.setdefault(key, deque()).append((item, send, part))
            if key not in self._tasks:
                self._idle.clear()
                self._tasks[key] = asyncio.get_running_loop().create_task(self._drain(key))

    async def _drain(self, key: tuple[bytes, str]) -> None:
        """Send the lane's queue in order, every waiting entry in one burst (to a
        :class:`Batching` lane, up to :data:`BATCH` of them in one call); end when it
        is empty."""
        queue = self._queues[key]
        try:
            while queue:
                batch = [queue.popleft()]
                many = getattr(batch[0][1], "many", None)
                while many is not None and queue and len(batch) < BATCH \
                        and getattr(queue[0][1], "many", None) is not None:
                    batch.append(queue.popleft())
                parts = [part for _, _, part in batch]
                ok = True
                try:
                    await (many(parts) if many is not None and len(parts) > 1
                           else batch[0][1](parts[0]))
                except LinkError as exc:  # members catch up from the log
                    ok = False
                    log.warning("delivery of seq %s failed: %s", _seqs(parts), exc)
                except Exception as exc:  # noqa: BLE001 (a lane outlives one bad send)
                    ok = False
                    log.error("delivery of seq %s failed unexpectedly: %s", _seqs(parts),
                              type(exc).__name__)
                for item, _, _ in batch:
                    await self._lane_done(item, ok)
        finally:
            del self._tasks[key]
            if not queue:
                del self._queues[key]
            if not self._tasks:
                self._idle.set()

    async def _lane_done(self, item: _Message, ok: bool) -> None:
        item.ok = item.ok and ok
        item.lanes -= 1
        if item.lanes:
            return
        if item.permit is not None:
            item.permit.release()
        observer = self._observer()
        if observer is not None:
            observer.delivery_finished(item.message, item.ok)
        if item.done is not None:
            await item.done(item.ok)

    # -- stopping ----------------------------------------------------------------------

    def pending(self) -> int:
        """Deliveries (per lane) still queued or being sent."""
        return sum(self.waiting().values())

    def waiting(self) -> dict[tuple[bytes, str], int]:
        """Per (group, lane) with deliveries left: how many are queued or being sent
        (what a stop names when it cuts or closes the fan-out)."""
        depth = {key: len(queue) for key, queue in self._queues.items()}
        for key in self._tasks:
            depth[key] = depth.get(key, 0) + 1
        return {key: n for key, n in depth.items() if n}

    async def idle(self) -> None:
        """Wait until every queue is empty."""
        await self._idle.wait()

    async def drain(self, deadline: float) -> bool:
        """Let the queues empty until ``deadline`` (the event loop's clock); whether
        they did. What is left is caught up from the log by the members."""
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("stopping with %d deliveries not fanned out (members catch "
                        "up from the log)", self.pending())
            return False
        return True

    async def close(self) -> None:
        """Stop at once: queued deliveries are dropped (the log keeps them), and
        nothing is queued any more: a request is refused "unavailable" before it is
        logged, a delivery of the hub's own is dropped (it is in the log)."""
        self.closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        self._idle.set()


async def _nothing(message: Outbound) -> None:
    return None


def _seqs(parts: Sequence[Outbound]) -> str:
    return str(parts[0].seq) if len(parts) == 1 else f"{parts[0].seq}..{parts[-1].seq}"


@dataclass(frozen=True, eq=False)
class Batching:
    """The send of a lane whose deliverer is a :class:`BatchDeliverer`: what waits in
    the lane goes in one call (``many``)."""

    deliverer: BatchDeliverer

    async def __call__(self, message: Outbound) -> None:
        await self.deliverer.deliver(message)

    async def many(self, messages: Sequence[Outbound]) -> None:
        await self.deliverer.deliver_many(messages)


def lane_send(deliverer: Deliverer) -> Send:
    """How a lane sends to ``deliverer``: :class:`Batching` if it takes several
    deliveries at once, else its ``deliver``."""
    if callable(getattr(deliverer, "deliver_many", None)):
        return Batching(cast(BatchDeliverer, deliverer))
    return deliverer.deliver
