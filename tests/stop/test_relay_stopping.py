"""Nothing enters the relay's input once its stop began (bridge.relay.relay): a user
seen with an MLS client while the relay stops -- a puppet whose stop was cut is still
known -- queues no puppet replacement, so no job runs after the relay's input closed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge.app.services.routing import RoutingDeliverer
from bridge.hub.store import SqliteStore
from bridge.identities import relay_identity
from bridge.relay import Relay

ALICE = "xmpp:alice@example.org"
GROUP = bytes(range(16))


class StuckPuppet:
    """A puppet whose last save hangs: the stop that waits for it is cut."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    async def idle(self) -> None:
        pass

    async def stop(self) -> dict[bytes, str]:
        self.stopping.set()
        await asyncio.Event().wait()
        return {}

    def unsaved_groups(self) -> list[bytes]:
        return [GROUP]


async def test_an_mls_client_seen_while_the_relay_stops_queues_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.relay.relay")
    store = await SqliteStore.open(tmp_path / "relay.db")
    relay = Relay(store, None, RoutingDeliverer())  # type: ignore[arg-type]
    puppet = StuckPuppet()
    relay.puppets[relay_identity(ALICE)] = puppet  # type: ignore[assignment]
    try:
        stopping = asyncio.ensure_future(relay.stop())
        await asyncio.wait_for(puppet.stopping.wait(), 5)  # the input is closed by now
        relay.mls_client_seen(ALICE)  # the puppet is still known: its stop hangs
        assert relay._inbound.waiting == 0 and relay._inbound.running == 0
        assert relay._queued_input == {}
        assert ALICE not in relay.mls_clients  # replaced when next seen, after a start
        assert any("seen while stopping: ignored" in r.getMessage()
                   for r in caplog.records)
        stopping.cancel()  # the stop's deadline cuts it (bridge.app.shutdown)
        await asyncio.gather(stopping, return_exceptions=True)
        assert f"puppet {relay_identity(ALICE)} group {GROUP.hex()[:16]} not saved: " \
               "its stop was cut short" in relay.not_done()
    finally:
        await store.close()


async def test_before_its_stop_the_relay_replaces_the_puppet_of_an_mls_client(
        tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "relay.db")
    relay = Relay(store, None, RoutingDeliverer())  # type: ignore[arg-type]
    relay.puppets[relay_identity(ALICE)] = StuckPuppet()  # type: ignore[assignment]
    gate = asyncio.Event()
    replaced: list[str] = []

    async def replace(identity: str) -> None:  # the hub's Remove, stood in for
        replaced.append(identity)
        await gate.wait()

    relay._replace = replace  # type: ignore[method-assign]
    try:
        relay.mls_client_seen(ALICE)
        await asyncio.sleep(0)
        assert ALICE in relay.mls_clients and relay._inbound.running == 1
        assert replaced == [ALICE]
        gate.set()
        await asyncio.wait_for(relay._inbound.join(), 5)
    finally:
        await relay._inbound.close()
        await store.close()
