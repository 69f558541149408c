"""Fair, bounded request handling for the hub-side transports (issue 16, "limits").

The Matrix bot and the XMPP component receive requests from many senders at once. Each
request is admitted here before any work is done for it:

* :class:`RateLimiter` -- a token bucket per sender (``rate`` requests per second,
  ``burst`` at once): a request over the limit is refused with ``rate-limited`` (the
  transport answers it without handling it);
* :class:`FairQueue` -- one FIFO queue per sender, served round-robin by at most
  ``workers`` jobs at a time, one job per sender at a time: a sender's requests are
  handled in the order they came (the hub serialises each group itself), and a
  flooder's backlog never delays anyone else by more than one of its jobs per round;
  at most ``queue_per_sender`` jobs wait per sender and ``queue_total`` in all --
  beyond that :meth:`FairQueue.submit` raises :class:`Overloaded` and the transport
  refuses (or drops) the request.

:class:`RequestLimits` holds the numbers, with ``max_request``: the bytes one request
may carry in all, checked against the sizes a request *declares* for its payloads
before anything is downloaded. :class:`LimitObserver` is how refusals, drops and queue
depths reach the metrics (:class:`bridge.app.metrics.HubMetrics` implements it).

Nothing here reads the wall clock for a decision except through the injected ``clock``
(tests pass their own), and the order in which :class:`FairQueue` starts jobs depends
only on the order of submissions and completions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from transports.interface import Op

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Job = Callable[[], Awaitable[None]]

#: Refusal codes of the admission (the hub's own codes are in ``bridge.errors``).
RATE_LIMITED = "rate-limited"
BUSY = "busy"
TOO_LARGE = "too-large"


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How much one sender may ask of a hub-side transport, and how much in all.

    ``rate`` requests per second per sender, sustained, and ``burst`` at once;
    ``workers`` requests handled at the same time; ``queue_per_sender`` and
    ``queue_total`` requests waiting; ``max_request`` bytes of payload in one request
    (the sum of its declared sizes, inline or by reference)."""

    rate: float = 20.0
    burst: int = 60
    workers: int = 8
    queue_per_sender: int = 32
    queue_total: int = 1024
    max_request: int = 8 * 1024 * 1024
    max_senders: int = 100_000  # rate-limit buckets kept (the idlest are forgotten)

    def with_payload(self, max_request: int) -> RequestLimits:
        """These limits, taking ``max_request`` payload bytes (the hub's limit)."""
        return dataclasses.replace(self, max_request=max_request)


def op_label(op: object) -> str:
    """A request's op as a metrics label: one of :class:`Op`, else ``unknown`` (a
    client's made-up op must not add a label value)."""
    return op if isinstance(op, str) and op in Op._value2member_map_ else "unknown"


class LimitObserver(Protocol):
    """Watches the limits from outside (the metrics)."""

    def refused(self, network: str, op: str, code: str) -> None:
        """A request was refused before it reached the hub (``rate-limited``, ...)."""
        ...

    def dropped(self, queue: str, reason: str) -> None:
        """Something was dropped from (or never entered) a bounded queue."""
        ...

    def depth(self, queue: str, size: int) -> None:
        """A bounded queue now holds ``size`` items."""
        ...


class NullObserver:
    """A :class:`LimitObserver` that watches nothing."""

    def refused(self, network: str, op: str, code: str) -> None:
        pass

    def dropped(self, queue: str, reason: str) -> None:
        pass

    def depth(self, queue: str, size: int) -> None:
        pass


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each request takes one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def level(self, now: float) -> float:
        """The tokens available at ``now`` (refilled since the last take)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        if self.level(now) >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """A :class:`TokenBucket` per key (a sender), at most ``max_keys`` of them: beyond
    that the least recently used bucket is forgotten (a forgotten key starts again
    with a full bucket, which is what an idle key has anyway)."""

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Whether ``key`` may make one more request now (and count it)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


class Overloaded(Exception):
    """A job was not queued: its sender's queue (``reason`` ``"sender"``) or the whole
    queue (``"total"``) is full."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"queue full ({reason})")
        self.reason = reason


class FairQueue:
    """Per-sender FIFO queues served round-robin by at most ``workers`` jobs at once,
    one per sender at a time (see the module docstring). ``name`` labels the depth
    and drops reported to ``observer``."""

    def __init__(self, *, workers: int, per_sender: int, total: int, name: str,
                 observer: LimitObserver | None = None) -> None:
        if workers < 1 or per_sender < 1 or total < 1:
            raise ValueError("workers and queue bounds must be positive")
        self.workers = workers
        self.per_sender = per_sender
        self.total = total
        self.name = name
        self.observer: LimitObserver = observer or NullObserver()
        self.high_water = 0  # the most jobs ever waiting at once
        self._lanes: dict[str, deque[tuple[Job, asyncio.Future[None]]]] = {}
        self._ready: deque[str] = deque()  # senders with waiting jobs, none running
        self._busy: set[str] = set()  # senders with a job running
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def waiting(self) -> int:
        """Jobs queued and not started."""
        return self._waiting

    @property
    def running(self) -> int:
        return len(self._busy)

    def queued(self, sender: str) -> int:
        """Jobs of ``sender`` waiting (not the running one)."""
        lane = self._lanes.get(sender)
        return len(lane) if lane is not None else 0

    def submit(self, sender: str, job: Job) -> asyncio.Future[None]:
        """Queue ``job`` behind ``sender``'s earlier ones; the future is done when the
        job has run. :class:`Overloaded` (nothing queued) when a bound is reached."""
        lane = self._lanes.get(sender)
        if lane is not None and len(lane) >= self.per_sender:
            self.observer.dropped(self.name, "sender")
            raise Overloaded("sender")
        if self._waiting >= self.total:
            self.observer.dropped(self.name, "total")
            raise Overloaded("total")
        if lane is None:
            lane = self._lanes[sender] = deque()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.append((job, done))
        self._waiting += 1
        self.high_water = max(self.high_water, self._waiting)
        self._idle.clear()
        if sender not in self._busy and len(lane) == 1:
            self._ready.append(sender)
        self._pump()
        self.observer.depth(self.name, self._waiting)
        return done

    def _pump(self) -> None:
        """Start the next senders' jobs, round-robin, while workers are free."""
        while self._ready and len(self._busy) < self.workers:
            sender = self._ready.popleft()
            job, done = self._lanes[sender].popleft()
            self._waiting -= 1
            self._busy.add(sender)
            task = asyncio.get_running_loop().create_task(self._run(sender, job, done))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, sender: str, job: Job, done: asyncio.Future[None]) -> None:
        try:
            await job()
        except Exception:  # a job handles its own errors; this one is a bug: log it
            log.exception("%s: a job of %s failed", self.name, sender)
        finally:
            if not done.done():
                done.set_result(None)
            self._finished(sender)

    def _finished(self, sender: str) -> None:
        self._busy.discard(sender)
        lane = self._lanes.get(sender)
        if lane:
            self._ready.append(sender)  # to the back: everyone else goes first
        elif lane is not None:
            del self._lanes[sender]
        self._pump()
        self.observer.depth(self.name, self._waiting)
        if not self._busy and not self._waiting:
            self._idle.set()

    async def join(self) -> None:
        """Wait until no job is waiting or running."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel what runs, forget what waits (their futures are cancelled)."""
        for lane in self._lanes.values():
            for _, done in lane:
                done.cancel()
        self._lanes.clear()
        self._ready.clear()
        self._waiting = 0
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._busy.clear()
        self._idle.set()


class Admission:
    """A transport's admission of requests: the per-sender :class:`RateLimiter` and the
    :class:`FairQueue` of its requests, with the :class:`RequestLimits` they follow."""

    def __init__(self, limits: RequestLimits, name: str, *,
                 observer: LimitObserver | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self.observer: LimitObserver = observer or NullObserver()
        self.rate = RateLimiter(limits.rate, limits.burst, clock=clock,
                                max_keys=limits.max_senders)
        self.queue = FairQueue(workers=limits.workers, per_sender=limits.queue_per_sender,
                               total=limits.queue_total, name=name, observer=self.observer)

    def watch(self, observer: LimitObserver) -> None:
        """Report to ``observer`` from now on."""
        self.observer = self.queue.observer = observer


__all__ = ["BUSY", "RATE_LIMITED", "TOO_LARGE", "Admission", "Clock", "FairQueue", "Job",
           "LimitObserver", "NullObserver", "Overloaded", "RateLimiter", "RequestLimits",
           "TokenBucket", "op_label"]
