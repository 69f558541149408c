"""transports/fairness.py: token buckets on an injected clock, and the fair queue's
order of service decided by submissions and completions only (jobs wait on events the
test sets; nothing sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from transports.fairness import (
    Admission,
    FairQueue,
    Overloaded,
    RateLimiter,
    RequestLimits,
    TokenBucket,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Records drops and depths like the metrics would."""

    def __init__(self) -> None:
        self.drops: list[tuple[str, str]] = []
        self.depths: list[int] = []
        self.refusals: list[tuple[str, str, str]] = []

    def refused(self, network: str, op: str, code: str) -> None:
        self.refusals.append((network, op, code))

    def dropped(self, queue: str, reason: str) -> None:
        self.drops.append((queue, reason))

    def depth(self, queue: str, size: int) -> None:
        self.depths.append(size)


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 token
    assert bucket.take(0.5)  # 1.0 token
    assert not bucket.take(0.5)
    assert bucket.level(100.0) == 3.0  # never more than the burst


def test_the_rate_limiter_is_per_sender() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    assert [limiter.allow("flood") for _ in range(5)] == [True, True, False, False, False]
    assert limiter.allow("honest") and limiter.allow("honest")  # its own bucket
    clock.now += 1.0
    assert limiter.allow("flood") and not limiter.allow("flood")


def test_the_rate_limiter_keeps_a_bounded_number_of_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock, max_keys=3)
    assert limiter.allow("a") and not limiter.allow("a")
    for key in ("b", "c", "d"):
        limiter.allow(key)
    assert len(limiter) == 3
    assert limiter.allow("a")  # "a" was forgotten (the least recently used): a new bucket


class Gate:
    """Jobs that record when they start and wait until the test releases them."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def job(self, name: str):  # type: ignore[no-untyped-def]
        self.release[name] = asyncio.Event()

        async def run() -> None:
            self.started.append(name)
            await self.release[name].wait()
        return run

    async def finish(self, name: str) -> None:
        self.release[name].set()
        for _ in range(5):  # let the job end and the queue start the next ones
            await asyncio.sleep(0)


async def test_senders_are_served_round_robin_one_job_each_at_a_time() -> None:
    gate = Gate()
    queue = FairQueue(workers=1, per_sender=10, total=100, name="test")
    for i in range(4):
        queue.submit("flood", gate.job(f"f{i}"))
    queue.submit("honest", gate.job("h0"))
    queue.submit("honest", gate.job("h1"))
    await asyncio.sleep(0)
    order = ["f0", "h0", "f1", "h1", "f2", "f3"]
    for name in order:
        assert gate.started[-1] == name
        await gate.finish(name)
    assert gate.started == order
    await queue.join()


async def test_one_job_per_sender_runs_at_a_time_while_workers_serve_others() -> None:
    gate = Gate()
    queue = FairQueue(workers=3, per_sender=10, total=100, name="test")
    queue.submit("a", gate.job("a0"))
    queue.submit("a", gate.job("a1"))
    queue.submit("b", gate.job("b0"))
    await asyncio.sleep(0)
    assert sorted(gate.started) == ["a0", "b0"]  # a1 waits for a0, in order
    assert queue.running == 2 and queue.waiting == 1
    await gate.finish("a0")
    assert gate.started[-1] == "a1"
    await gate.finish("b0")
    await gate.finish("a1")
    await queue.join()
    assert queue.running == 0 and queue.waiting == 0


async def test_bounds_refuse_what_does_not_fit_and_count_it() -> None:
    gate = Gate()
    seen = Recorder()
    queue = FairQueue(workers=1, per_sender=2, total=3, name="q", observer=seen)
    queue.submit("a", gate.job("a0"))  # runs at once
    queue.submit("a", gate.job("a1"))
    queue.submit("a", gate.job("a2"))
    with pytest.raises(Overloaded) as sender_full:
        queue.submit("a", gate.job("a3"))
    assert sender_full.value.reason == "sender"
    queue.submit("b", gate.job("b0"))
    with pytest.raises(Overloaded) as total_full:
        queue.submit("c", gate.job("c0"))
    assert total_full.value.reason == "total"
    assert seen.drops == [("q", "sender"), ("q", "total")]
    assert queue.waiting == 3 and queue.high_water == 3 and max(seen.depths) == 3
    for name in ("a0", "b0", "a1", "a2"):
        await gate.finish(name)
    await queue.join()
    assert gate.started == ["a0", "b0", "a1", "a2"] and seen.depths[-1] == 0


async def test_a_failing_job_is_logged_and_the_queue_goes_on() -> None:
    ran: list[str] = []
    queue = FairQueue(workers=1, per_sender=5, total=5, name="q")

    async def broken() -> None:
        raise RuntimeError("bug")

    async def fine() -> None:
        ran.append("fine")

    first = queue.submit("a", broken)
    second = queue.submit("a", fine)
    await asyncio.gather(first, second)
    assert ran == ["fine"]


async def test_close_cancels_running_and_waiting_jobs() -> None:
    gate = Gate()
    queue = FairQueue(workers=1, per_sender=5, total=5, name="q")
    running = queue.submit("a", gate.job("a0"))
    waiting = queue.submit("a", gate.job("a1"))
    await asyncio.sleep(0)
    await queue.close()
    assert waiting.cancelled() and gate.started == ["a0"]
    assert running.done()
    await queue.join()


async def test_admission_reports_to_the_observer_it_watches() -> None:
    clock = Clock()
    admission = Admission(RequestLimits(rate=1.0, burst=1, workers=1, queue_per_sender=1,
                                        queue_total=4), "matrix-requests", clock=clock)
    seen = Recorder()
    admission.watch(seen)
    assert admission.rate.allow("x") and not admission.rate.allow("x")
    gate = Gate()
    admission.queue.submit("x", gate.job("x0"))
    admission.queue.submit("x", gate.job("x1"))
    with pytest.raises(Overloaded):
        admission.queue.submit("x", gate.job("x2"))
    assert seen.drops == [("matrix-requests", "sender")]
    await admission.queue.close()
