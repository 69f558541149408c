"""The hub's fan-out outside the group lock (bridge.hub.fanout): per-(group, lane)
order, a slow lane delaying nobody else, backpressure that refuses before logging, the
stop's drain, and a delivery lost in the queue at a crash recovered from the log."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from bridge.errors import MemberError, Unavailable
from bridge.hub import HubConfig
from bridge.hub.fanout import FanOut, Send
from bridge.member import RetryPolicy
from tests.bridge.conftest import Harness
from transports.interface import Deliverer, Kind, Outbound


class Lanes:
    """Two lanes ("slow", which waits for :attr:`release`, and "fast"), recording what
    each sent, in order; ``inner`` (if any) gets what the slow lane sends."""

    def __init__(self, inner: Deliverer | None = None) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.sent: dict[str, list[tuple[bytes, int]]] = {"slow": [], "fast": []}

    def split(self, message: Outbound) -> Sequence[tuple[str, Send, Outbound]]:
        return (("slow", self._slow, message), ("fast", self._fast, message))

    async def _slow(self, message: Outbound) -> None:
        await self.release.wait()
        self.sent["slow"].append((message.group_id, message.seq))
        if self.inner is not None:
            await self.inner.deliver(message)

    async def _fast(self, message: Outbound) -> None:
        self.sent["fast"].append((message.group_id, message.seq))

    async def deliver(self, message: Outbound) -> None:
        raise AssertionError("the fan-out uses the lanes")


def entry(group: bytes, seq: int) -> Outbound:
    return Outbound(Kind.APPLICATION, ("x",), group_id=group, seq=seq)


async def test_lanes_keep_order_and_a_slow_lane_delays_only_itself() -> None:
    lanes = Lanes()
    fanout = FanOut(lanes, backlog=100)
    for seq in range(1, 6):
        async with fanout.admit(b"A") as send:
            send(entry(b"A", seq))
    fanout.send(entry(b"B", 1))
    for _ in range(20):
        await asyncio.sleep(0)
    assert lanes.sent["fast"] == [(b"A", s) for s in range(1, 6)] + [(b"B", 1)]
    assert lanes.sent["slow"] == []
    lanes.release.set()
    await fanout.idle()
    assert sorted(lanes.sent["slow"]) == [(b"A", s) for s in range(1, 6)] + [(b"B", 1)]
    assert [s for g, s in lanes.sent["slow"] if g == b"A"] == [1, 2, 3, 4, 5]


async def test_admission_waits_for_room_and_gives_back_what_was_not_used() -> None:
    lanes = Lanes()
    fanout = FanOut(lanes, backlog=2, admit_timeout=0.05)
    for seq in (1, 2):
        async with fanout.admit(b"A") as send:
            send(entry(b"A", seq))
    with pytest.raises(Unavailable):
        async with fanout.admit(b"A"):
            raise AssertionError("admitted beyond the backlog")
    async with fanout.admit(b"B") as send:  # another group has its own room
        send(entry(b"B", 1))
    lanes.release.set()
    await fanout.idle()
    for _ in range(3):  # refused or unused admissions gave their room back
        async with fanout.admit(b"A"):
            pass
    async with fanout.admit(b"A") as send:
        send(entry(b"A", 3))
    await fanout.idle()
    assert [s for g, s in lanes.sent["slow"] if g == b"A"] == [1, 2, 3]


async def test_drain_waits_until_deadline_then_close_drops_and_queues_nothing_more(
        ) -> None:
    lanes = Lanes()
    fanout = FanOut(lanes)
    fanout.send(entry(b"A", 1))
    loop = asyncio.get_running_loop()
    assert not await fanout.drain(loop.time() + 0.05)
    assert fanout.waiting() == {(b"A", "slow"): 1}  # what a stop names
    await fanout.close()
    assert fanout.pending() == 0
    fanout.send(entry(b"A", 2))  # the hub's own after the close: dropped (in the log)
    with pytest.raises(Unavailable):  # a request after the close: refused before logging
        async with fanout.admit(b"A"):
            pass
    lanes.release.set()
    assert fanout.pending() == 0
    assert await fanout.drain(loop.time() + 5)
    assert lanes.sent["slow"] == []


async def test_hub_answers_while_the_network_is_slow_and_refuses_beyond_backlog(
        tmp_path: Path) -> None:
    harness = Harness(tmp_path / "hub.db",
                      HubConfig(delivery_backlog=3, admit_timeout=0.2))
    hub = await harness.start_hub()
    try:
        alice, bob, group_id = await harness.alice_and_bob("slow@mls.example.org")
        lanes = Lanes(harness.network)
        hub.fanout.deliverer = lanes
        sent = [await alice.send_text(group_id, f"m{i}") for i in range(3)]
        assert lanes.sent["slow"] == []  # all three answered, none delivered yet
        assert harness.store is not None
        logged = len(await harness.store.log_since(group_id, 0, 100))
        alice.retry = RetryPolicy(attempts=1)
        with pytest.raises(MemberError, match="not accepted"):  # "unavailable" each time
            await alice.send_text(group_id, "refused")
        assert len(await harness.store.log_since(group_id, 0, 100)) == logged
        lanes.release.set()
        await harness.quiesce()
        assert [r.content for r in bob.received(group_id)] == sent
    finally:
        await harness.close()


async def test_delivery_lost_in_the_queue_at_a_crash_is_recovered_from_the_log(
        harness: Harness) -> None:
    alice, bob, group_id = await harness.alice_and_bob("crash@mls.example.org")
    assert harness.hub is not None
    harness.hub.fanout.deliverer = Lanes(harness.network)  # never released
    lost = await alice.send_text(group_id, "queued when the hub died")
    await harness.hub.close()  # the queue is gone; the entry is in the log
    await harness.stop_hub()
    await harness.start_hub()
    after = await alice.send_text(group_id, "after the restart")
    await harness.quiesce()
    assert [r.content for r in bob.received(group_id)] == [lost, after]


class Batches:
    """A :class:`transports.interface.BatchDeliverer` recording each call's seqs; the
    first call waits for :attr:`release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: list[list[int]] = []

    async def deliver(self, message: Outbound) -> None:
        await self.deliver_many([message])

    async def deliver_many(self, messages: Sequence[Outbound]) -> None:
        if not self.calls:
            self.calls.append([])
            await self.release.wait()
            self.calls[0] = [m.seq for m in messages]
            return
        self.calls.append([m.seq for m in messages])


async def test_what_waits_in_a_batching_lane_goes_in_one_call_in_order() -> None:
    """While one delivery is being sent, the next ones wait in the lane; a deliverer
    that takes several (the Matrix bot: its acks per room in one event) is handed
    them together, in log order, up to the batch size."""
    batches = Batches()
    fanout = FanOut(batches, backlog=100)
    async with fanout.admit(b"A") as send:
        send(entry(b"A", 1))
    while not batches.calls:  # seq 1 is being sent
        await asyncio.sleep(0)
    for seq in range(2, 41):
        async with fanout.admit(b"A") as send:
            send(entry(b"A", seq))
    batches.release.set()
    await fanout.idle()
    assert batches.calls == [[1], list(range(2, 34)), list(range(34, 41))]
