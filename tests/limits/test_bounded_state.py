"""The bounds on what the XMPP component, the relay and the metrics keep for users
(docs/SECURITY.md, "Limits"), each checked on its own: injected clocks, jobs that wait
on events the test sets, no sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bridge.app.metrics import HubMetrics, Metrics
from bridge.app.services.bridge import RoutingDeliverer
from bridge.hub.store import SqliteStore
from bridge.member import Content, Received
from bridge.relay import Relay
from bridge.relay.reemits import EARLY_KEPT, OUTBOUND_KEPT
from bridge.relay.relay import LEGACY_BURST, LEGACY_QUEUE
from transports.interface import Inbound, Outbound
from transports.xmpp import limits, welcomes
from transports.xmpp.rooms import OWNER, Affiliations
from transports.xmpp.welcomes import HeldWelcomes


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


class Drops:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def refused(self, network: str, op: str, code: str) -> None:
        pass

    def dropped(self, queue: str, reason: str) -> None:
        self.seen.append((queue, reason))

    def depth(self, queue: str, size: int) -> None:
        pass


def test_presences_are_rate_limited_per_user_but_departures_never() -> None:
    clock = Clock()
    bounds = limits.RoomLimits(clock=clock)
    bounds.observer = drops = Drops()
    allowed = [bounds.presence("flood@x", "available")
               for _ in range(limits.PRESENCE_BURST + 5)]
    assert allowed.count(True) == limits.PRESENCE_BURST
    assert bounds.presence("flood@x", "unavailable")  # shrinks what is kept: always
    assert bounds.presence("honest@x", "available")
    assert drops.seen == [("xmpp-presence", "rate")] * 5
    clock.now += 1.0
    assert bounds.presence("flood@x", "available")


def occupants_of(bare: str, rooms: int) -> dict[str, dict[str, str]]:
    return {f"r{i}@mls.x": {f"{bare}/res": "nick", f"other{i}@x/r": "o"} for i in range(rooms)}


def test_rooms_occupied_and_created_per_user_are_bounded() -> None:
    bounds = limits.RoomLimits()
    bounds.observer = drops = Drops()
    affiliations = Affiliations(None)
    full = occupants_of("m@x", limits.ROOMS_PER_USER)
    assert not bounds.may_enter(full, "new@mls.x", "m@x", affiliations)
    assert bounds.may_enter(full, "r0@mls.x", "m@x", affiliations)  # already in it
    assert bounds.may_enter(full, "new@mls.x", "h@x", affiliations)  # someone else
    for i in range(limits.ROOMS_CREATED):
        affiliations.update(f"own{i}@mls.x", "xmpp:m@x", OWNER)
    some = occupants_of("m@x", 1)
    assert not bounds.may_enter(some, "fresh@mls.x", "m@x", affiliations)  # would create
    affiliations.update("existing@mls.x", "xmpp:h@x", OWNER)
    assert bounds.may_enter(some, "existing@mls.x", "m@x", affiliations)  # creates nothing
    assert drops.seen == [("xmpp-rooms", "quota")] * 2


def test_implicit_departures_waiting_per_user_are_bounded() -> None:
    bounds = limits.RoomLimits()
    pending = [(f"r{i}@mls.x", "m@x") for i in range(limits.LEAVES_PER_USER)]
    assert not bounds.may_wait(pending, "m@x")
    assert bounds.may_wait(pending[1:], "m@x")
    assert bounds.may_wait(pending, "h@x")


def test_held_welcomes_are_bounded_per_user_and_in_users() -> None:
    def spawn(coro: Awaitable[Any]) -> None:
        coro.close()  # type: ignore[attr-defined]  # nothing to save without a store

    held = HeldWelcomes(lambda _xml: None, None, spawn)
    held.observer = drops = Drops()
    for n in range(welcomes.MAX_HELD + 3):
        held.sent(f"w{n}", "victim@x", f"<message id='w{n}'/>")
        held.bounced(f"w{n}")
    assert len(held._held["victim@x"]) == welcomes.MAX_HELD
    assert held._held["victim@x"][0][0] == "w3"  # the oldest went
    for n in range(welcomes.MAX_HELD_USERS):
        held.sent(f"u{n}", f"user{n}@x", "<message/>")
        held.bounced(f"u{n}")
    assert len(held._held) == welcomes.MAX_HELD_USERS
    assert "victim@x" not in held._held  # the longest held went first
    assert drops.seen.count(("xmpp-held-welcomes", "oldest")) == 3
    assert drops.seen.count(("xmpp-held-welcomes", "users")) == 1


async def test_legacy_input_is_rate_limited_and_queued_fairly_per_user(
        tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "relay.db")
    clock = Clock()
    relay = Relay(store, None, RoutingDeliverer(), clock=clock)  # type: ignore[arg-type]
    relay.watch(drops := Drops())
    gate = asyncio.Event()
    ran: list[str] = []

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            ran.append(name)
            await gate.wait()
        return run

    try:
        for n in range(LEGACY_BURST + 5):  # the first runs, the next wait, 5 over the rate
            relay.queue("xmpp:flood@x", job(f"f{n}"))
        relay.queue("xmpp:honest@x", job("h0"))
        await asyncio.sleep(0)
        assert drops.seen == [("relay-input", "rate")] * 5
        gate.set()
        await relay._inbound.join()
        assert ran.index("h0") == 1  # served right after the flooder's first line
        assert len(ran) == LEGACY_BURST + 1 and LEGACY_BURST < LEGACY_QUEUE
    finally:
        await relay._inbound.close()
        await store.close()


def test_metric_labels_come_from_closed_sets() -> None:
    metrics = Metrics()
    observer = HubMetrics(metrics)
    for op in ("made-up-1", "made-up-2", "send"):
        request = Inbound(op, "xmpp:m@x", network="xmpp")
        observer.request_started(request)
        observer.request_finished(request, Outbound("reply", ok=False, code="unsupported"),
                                  0.001)
    observer.refused("matrix", "another-made-up", "rate-limited")
    assert metrics.refusals.get(op="unknown", code="unsupported") == 2
    assert metrics.refusals.get(op="send", code="unsupported") == 1
    assert metrics.refusals.get(op="unknown", code="rate-limited") == 1
    assert metrics.rate_limited.get(network="matrix") == 1
    assert {dict(labels)["op"] for labels in metrics.requests.values} == {"unknown", "send"}


async def test_relay_reemits_and_early_emissions_keep_the_newest(tmp_path: Path) -> None:
    """Decrypted messages waiting to be re-emitted (the output worker is not running
    here) and those decrypted before a group's rooms were attached: beyond their bound
    the oldest is dropped, counted and settled (a puppet may save past it)."""
    store = await SqliteStore.open(tmp_path / "relay.db")
    relay = Relay(store, None, RoutingDeliverer())  # type: ignore[arg-type]
    relay.watch(drops := Drops())
    reemits = relay.reemits
    try:
        early, attached = b"\x01" * 32, b"\x02" * 32
        await reemits.attached(attached)  # its rooms known (unused here: no worker)
        for seq in range(1, EARLY_KEPT + 3):
            reemits.on_decrypted(Received(early, "xmpp:a@x", Content(b"i" * 16, f"t{seq}"),
                                          seq, 0))
        assert [e.seq for e in reemits._early[early]][:1] == [3]
        assert len(reemits._early[early]) == EARLY_KEPT
        for seq in range(1, OUTBOUND_KEPT + 3):
            reemits.on_decrypted(Received(attached, "xmpp:a@x", Content(b"i" * 16, "x"), seq,
                                          0))
        assert reemits._outbound.qsize() == OUTBOUND_KEPT
        assert reemits._outbound.get_nowait().seq == 3
        assert drops.seen == [("relay-early", "oldest")] * 2 + [("relay-output", "oldest")] * 2
        assert reemits.emitted_through(early, 2) and reemits.emitted_through(attached, 2)
        assert not reemits.emitted_through(attached, 3)
    finally:
        await store.close()
