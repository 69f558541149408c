"""The stop's phases and their deadline, with stalled fakes (no servers): a phase that
overruns is cut short and logged by name with what it could not do, the next phases
still run, and the whole stop stays within ``shutdown_timeout`` plus the grace."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

from bridge.app.services.bridge import BridgeService
from bridge.app.shutdown import CANCEL_GRACE, MIN_STEP, PHASE_ENDS, Shutdown, Step
from bridge.hub import HubIdentity
from bridge.hub.fanout import FanOut, Send
from transports.fairness import Admission, RequestLimits
from transports.interface import Inbound, Kind, Op, Outbound
from transports.xmpp.component import ComponentConfig

ALICE = "xmpp:alice@example.org"
BOB = "xmpp:bob@example.org"
GROUP = bytes(range(16))
SLACK = 1.0  # seconds of scheduling delay a loaded machine may add to a bound


async def stall() -> None:
    await asyncio.Event().wait()


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The fields of every structured log event called ``name``."""
    return [dict(getattr(r, "fields", {})) for r in caplog.records if r.getMessage() == name]


def cut_steps(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [(e["phase"], e["step"], e["outcome"]) for e in events(caplog, "stop step cut")]


def not_done(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(e["phase"], e["what"]) for e in events(caplog, "stop: not done")]


async def test_a_stalled_step_in_every_phase_is_cut_and_named(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    timeout = 1.0
    shutdown = Shutdown(timeout)
    ran: list[str] = []

    def stalled(phase: str) -> Step:
        async def run() -> None:
            ran.append(phase)
            await stall()
        return Step(f"{phase} work", run, lambda: [f"{phase} thing"])

    began = time.monotonic()
    for phase in PHASE_ENDS:
        assert not await shutdown.phase(phase, stalled(phase))
    elapsed = time.monotonic() - began

    assert ran == list(PHASE_ENDS)  # every phase ran, in the documented order
    assert [e["phase"] for e in events(caplog, "stop phase")] == list(PHASE_ENDS)
    assert cut_steps(caplog) == [(p, f"{p} work", "cut short by the deadline")
                                 for p in PHASE_ENDS]
    assert not_done(caplog) == [(p, f"{p} thing") for p in PHASE_ENDS]
    assert shutdown.cut == [f"{p}/{p} work" for p in PHASE_ENDS]
    # each phase ended at its share of the deadline (or after MIN_STEP when its time
    # was spent): the whole stop stays within the timeout plus one MIN_STEP (and a
    # second of slack for a loaded machine: the point is that nothing waits forever)
    assert elapsed < timeout + MIN_STEP + SLACK, elapsed


async def test_failed_and_stubborn_steps_are_named_and_the_next_ones_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    shutdown = Shutdown(0.4)
    done: list[str] = []

    async def fail() -> None:
        raise OSError("disk gone")

    async def stubborn() -> None:  # ignores the first cancellation for a while
        try:
            await stall()
        except asyncio.CancelledError:
            await asyncio.sleep(CANCEL_GRACE * 3)
            raise

    async def quick() -> None:
        done.append("quick")

    began = time.monotonic()
    assert not await shutdown.phase("drain", Step("failing", fail), Step("quick", quick))
    assert not await shutdown.phase("networks", Step("stubborn", stubborn),
                                    Step("quick too", quick), together=True)
    assert await shutdown.phase("store", Step("store", quick))
    assert time.monotonic() - began < 0.4 + CANCEL_GRACE + 2 * MIN_STEP + SLACK
    assert done == ["quick", "quick", "quick"]
    assert cut_steps(caplog) == [
        ("drain", "failing", "failed: OSError: disk gone"),
        ("networks", "stubborn", "abandoned: still running after it was cancelled")]


class HangingLanes:
    """The fan-out's deliverer: one lane, "matrix", to a homeserver that hangs."""

    def split(self, message: Outbound) -> Sequence[tuple[str, Send, Outbound]]:
        return (("matrix", self._hang, message),)

    async def _hang(self, message: Outbound) -> None:
        await stall()

    async def deliver(self, message: Outbound) -> None:
        raise AssertionError("the fan-out uses the lanes")


class StalledHub:
    """A hub whose every request stalls (a store that hangs) and whose fan-out hangs
    on its Matrix lane (the real :class:`FanOut`)."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.fanout = FanOut(HangingLanes())

    async def idle(self) -> None:
        await self.fanout.idle()

    async def close(self) -> None:
        await self.fanout.close()

    async def handle(self, request: Inbound) -> Outbound:
        try:
            await stall()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


class StalledPuppet:
    """A relay puppet whose last save never ends (a store that hangs)."""

    async def idle(self) -> None:
        pass

    async def stop(self) -> dict[bytes, str]:
        await stall()
        return {}

    def unsaved_groups(self) -> list[bytes]:
        return [GROUP]


class StalledComponent:
    def __init__(self) -> None:
        self.admission = Admission(RequestLimits(), "xmpp-requests")  # nothing queued

    async def stop(self) -> None:
        await stall()


class StalledStore:
    closed = False

    async def close(self) -> None:
        await stall()


async def test_bridge_stop_names_what_each_stalled_phase_left(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    timeout = 1.2
    service = BridgeService(StalledStore(), HubIdentity.generate("hub.example.org"),  # type: ignore[arg-type]
                            xmpp=ComponentConfig(jid="mls.example.org", secret="s"),
                            shutdown_timeout=timeout)
    hub = StalledHub()
    service.hub = hub  # type: ignore[assignment]
    service.component = StalledComponent()  # type: ignore[assignment]
    service.relay.puppets[BOB] = StalledPuppet()  # type: ignore[assignment]
    service._accepting = service._started = True  # as start() leaves them
    for seq in (7, 8):  # logged, not fanned out yet: one being sent, one queued
        hub.fanout.send(Outbound(Kind.APPLICATION, (ALICE,), group_id=GROUP, seq=seq))
    request = Inbound(Op.SEND.value, ALICE, "r1", group_id=GROUP, payload=b"x")
    in_flight = asyncio.ensure_future(service.handle(request))
    await asyncio.sleep(0)
    assert service.in_flight == 1

    began = time.monotonic()
    stopping = asyncio.ensure_future(service.stop())
    await asyncio.sleep(0.05)
    refused = await service.handle(Inbound(Op.SEND.value, BOB, "r2", group_id=GROUP))
    assert not refused.ok and refused.code == "unavailable"
    await stopping
    elapsed = time.monotonic() - began

    assert in_flight.cancelled() and hub.cancelled == 1  # cut short, not left running
    assert [e["phase"] for e in events(caplog, "stop phase")] == list(PHASE_ENDS)
    assert [(phase, step) for phase, step, _ in cut_steps(caplog)] == [
        ("drain", "requests in flight"), ("drain", "hub fan-out"), ("members", "relay"),
        ("networks", "xmpp"), ("store", "store")]
    fanned = f"hub fan-out of group {GROUP.hex()[:16]} to matrix: 2"
    assert not_done(caplog) == [
        ("drain", f"request send r1 from {ALICE}: cut short, no reply"),
        ("drain", f"{fanned} still queued at the end of the drain"),
        ("members", f"puppet {BOB} group {GROUP.hex()[:16]} not saved: its stop was "
                    "cut short"),
        ("members", f"{fanned} dropped at stop (in the hub log: members catch up from "
                    "it)")]
    # the fan-out closed after the puppets and before the networks, and stays closed
    assert events(caplog, "hub fan-out closed") == [
        {"undelivered": 2, "note": "what it held is in the hub log: members catch up "
                                   "from it"}]
    assert hub.fanout.closed and hub.fanout.pending() == 0
    order = [(r.getMessage(), dict(getattr(r, "fields", {})).get("phase"))
             for r in caplog.records]
    assert order.index(("stop phase", "members")) < order.index(("hub fan-out closed", None)) \
        < order.index(("stop phase", "networks"))
    assert elapsed < timeout + MIN_STEP + SLACK, elapsed
    await service.stop()  # stopping twice does nothing
    assert len(events(caplog, "stop phase")) == len(PHASE_ENDS)
