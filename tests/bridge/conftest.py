"""A hub on a SQLite store in a temp dir, an in-memory network and member factory."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.hub import Hub, HubConfig, HubIdentity
from bridge.hub.store import SqliteStore, Store
from bridge.member import Member, RetryPolicy
from transports.interface import Inbound, Network, Outbound, Role, network_of
from transports.memory import MemoryNetwork

NOW = 1_700_000_000


def authenticated(request: Inbound) -> Inbound:
    """``request`` as a transport hands it over: with the network that authenticated
    its sender (the one its identity's scheme names, unless already set)."""
    if request.network:
        return request
    return dataclasses.replace(request, network=network_of(request.sender))


def clock() -> int:
    return NOW


def domain(name: str) -> str:
    return f"xmpp:{name}@example.org"


class Harness:
    """One hub (restartable) on one store file, a network and the members made on it."""

    def __init__(self, path: Path, config: HubConfig | None = None) -> None:
        self.path = path
        self.config = config or HubConfig()
        self.identity = HubIdentity.generate("hub.example.org",
                                             rng=random.Random(7).randbytes)
        self.network = MemoryNetwork()
        self.members: list[Member] = []
        self.store: Store | None = None
        self.hub: Hub | None = None
        self._seeds = 1000

    async def start_hub(self) -> Hub:
        self.store = await SqliteStore.open(self.path)
        self.hub = Hub(self.store, self.identity, self.network, config=self.config,
                       clock=clock, directories=self.network.rooms)
        self.network.attach(self.hub)
        return self.hub

    async def stop_hub(self) -> None:
        """Drop the hub and close its store (in-flight requests finish first)."""
        await self.network.detach()
        self.hub = None
        assert self.store is not None
        await self.store.close()
        self.store = None

    async def ask(self, request: Inbound) -> Outbound:
        """``request`` straight to the hub, as the network of its sender's scheme
        would authenticate it (unless the test set another network)."""
        assert self.hub is not None
        reply = await self.hub.handle(authenticated(request))
        await self.hub.fanout.idle()  # its deliveries are made by now
        return reply

    def room(self, room: str, *owners: Member, network: str = Network.XMPP) -> str:
        """A room of ``network`` in which ``owners`` are administrators."""
        for owner in owners:
            self.network.rooms[network].set_role(room, owner.identity, Role.ADMIN)
        return room

    async def member(self, name: str, *, publish: int = 1, **options: object) -> Member:
        self._seeds += 1
        options.setdefault("retry", RetryPolicy(attempts=12, base_delay=0.005,
                                                max_delay=0.2))
        options.setdefault("clock", clock)
        member = Member(self.network.link(domain(name)),
                        rng=random.Random(self._seeds).randbytes,
                        **options)  # type: ignore[arg-type]
        await member.start()
        self.network.register(member.identity, member)
        if publish:
            await member.publish_key_packages(publish)
        self.members.append(member)
        return member

    async def alice_and_bob(self, room: str = "room@mls.example.org",
                            ) -> tuple[Member, Member, bytes]:
        """Alice and Bob in a group Alice created for the XMPP ``room`` (hers), Bob
        added and every delivery processed: ``(alice, bob, group_id)``."""
        alice = await self.member("alice")
        bob = await self.member("bob")
        group_id = await alice.create_group(transport="xmpp", room_id=self.room(room, alice))
        await alice.add_members(group_id, [domain("bob")])
        await self.quiesce()
        return alice, bob, group_id

    async def quiesce(self) -> None:
        """Wait until no delivery is queued and every member processed its inbox."""
        for _ in range(50):
            if self.hub is not None:
                await self.hub.fanout.idle()
            await self.network.settle()
            await asyncio.gather(*(member.idle() for member in self.members))
            await asyncio.sleep(0)
            if all(member.inbox.empty() for member in self.members):
                await self.network.settle()
                if all(member.inbox.empty() for member in self.members):
                    return
        raise AssertionError("the network did not settle")

    async def close(self) -> None:
        for member in self.members:
            await member.stop()
        await self.network.close()
        if self.store is not None:
            await self.store.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "hub.db")
    await h.start_hub()
    try:
        yield h
    finally:
        await h.close()


from tests.store.conftest import pg_server  # noqa: E402  (the session PostgreSQL fixture)

__all__ = ["pg_server"]
