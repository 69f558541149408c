"""Fixtures for the Matrix transport tests: a hub bot and MLS members on a real Synapse.

``hub`` runs :class:`bridge.app.services.matrix.MatrixService` in-process (Hub + SQLite store
in a tmp dir + the bot, /sync mode); ``members`` makes logged-in matrix-nio accounts,
each a :class:`transports.matrix.client.MatrixMemberLink` feeding a
:class:`bridge.member.Member`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio
import pytest

from benchmarks.bridge_run import until
from bridge.app.services.matrix import MatrixService, MatrixServiceConfig
from bridge.devservers.synapse import SynapseServer
from bridge.hub.store import SqliteStore
from bridge.member import Member, RetryPolicy
from transports.matrix.client import MatrixMemberLink
from transports.matrix.events import Ack

TIMEOUT = 30.0
SYNC_MS = 1000


async def eventually(check: Callable[[], Any], timeout: float = TIMEOUT,
                     what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    return await until(check, what, timeout)


async def login(server: SynapseServer, user_id: str, password: str) -> nio.AsyncClient:
    client = nio.AsyncClient(server.url, user_id)
    response = await client.login(password, device_name="mls-test")
    assert isinstance(response, nio.LoginResponse), response
    return client


@dataclass
class MatrixMember:
    """One test member: its nio client, Matrix link, bridge HubLink and MLS Member."""

    client: nio.AsyncClient
    link: MatrixMemberLink
    hub_link: MatrixMemberLink  # the member's HubLink (the same object as link)
    member: Member

    @property
    def identity(self) -> str:
        return self.link.identity

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def acks(self) -> list[Ack]:
        """The hub's acks this member was handed (its own sends' and others')."""
        return list(self.link.acked)

    def texts(self, group_id: bytes) -> list[tuple[str, str]]:
        return [(r.sender, r.content.body or "") for r in self.member.received(group_id)]

    async def close(self) -> None:
        await self.member.stop()
        await self.link.stop()
        await self.client.close()


MemberFactory = Callable[[str], Awaitable[MatrixMember]]


@pytest.fixture
async def hub(synapse_server: SynapseServer, tmp_path: Path) -> AsyncIterator[MatrixService]:
    """The hub bot (plain account, /sync) with a SQLite store in ``tmp_path``."""
    user_id, password = synapse_server.new_user("hub")
    store = await SqliteStore.open(tmp_path / "hub.db")
    service = MatrixService(store, None, MatrixServiceConfig(
        homeserver=synapse_server.url, user=user_id, password=password,
        sync_timeout_ms=SYNC_MS))
    await service.start()
    await service.wait_ready()
    try:
        yield service
    finally:
        await service.stop()
        await store.close()


async def make_member(server: SynapseServer, prefix: str, hub_user: str, *,
                      request_timeout: float = TIMEOUT) -> MatrixMember:
    user_id, password = server.new_user(prefix)
    client = await login(server, user_id, password)
    link = MatrixMemberLink(client, hub_user, request_timeout=request_timeout,
                            sync_timeout_ms=SYNC_MS)
    hub_link = link
    member = Member(hub_link, retry=RetryPolicy(attempts=12, base_delay=0.05, max_delay=0.5))
    hub_link.attach(member)
    link.start()  # first: starting the member asks the hub (hub-info, attest)
    await asyncio.wait_for(link.synced.wait(), TIMEOUT)
    await member.start()
    return member_record(client, link, hub_link, member)


def member_record(client: nio.AsyncClient, link: MatrixMemberLink, hub_link: MatrixMemberLink,
                  member: Member) -> MatrixMember:
    return MatrixMember(client, link, hub_link, member)


@pytest.fixture
async def members(synapse_server: SynapseServer) -> AsyncIterator[Callable[..., Any]]:
    """``await members(prefix, hub_user)`` -> a started :class:`MatrixMember`."""
    made: list[MatrixMember] = []

    async def factory(prefix: str, hub_user: str, **kwargs: Any) -> MatrixMember:
        record = await make_member(synapse_server, prefix, hub_user, **kwargs)
        made.append(record)
        return record

    try:
        yield factory
    finally:
        for record in made:
            await record.close()


async def room_with_hub(owner: MatrixMember, hub_user: str) -> str:
    """A private room created by ``owner`` with the hub bot invited and joined."""
    # the hub publishes the im.mlsbridge.group state event: it needs the state level (50)
    powers = {"users": {hub_user: 50}}
    created = await owner.client.room_create(name="mls room", invite=[hub_user],
                                             power_level_override=powers)
    assert isinstance(created, nio.RoomCreateResponse), created

    async def hub_joined() -> bool:
        response = await owner.client.joined_members(created.room_id)
        return isinstance(response, nio.JoinedMembersResponse) and \
            hub_user in {m.user_id for m in response.members}

    await eventually(hub_joined, what="the hub joining the room")
    return str(created.room_id)
