"""Fixtures for the bridging tests: ONE BridgeService (one hub, one SQLite store) with
the XEP-0114 component on the real Prosody and the hub bot on the real Synapse, MLS
members on both networks, and plain (non-MLS) clients for relay mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree as ET

import nio
import pytest
from slixmpp import ClientXMPP

from bridge import HubIdentity, Member
from bridge.public_view import identity_of
from bridge.services.bridge import BridgeService
from bridge.services.matrix import MatrixServiceConfig
from bridge.store import SqliteStore
from tests.matrix.conftest import login, make_member
from tests.servers.prosody import ProsodyServer
from tests.servers.synapse import SynapseServer
from tests.xmpp.conftest import new_peer
from transports.xmpp.component import ComponentConfig

TIMEOUT = 30.0
NS_MUC = "http://jabber.org/protocol/muc"


class Person(Protocol):
    """An MLS member on either network (tests.xmpp Peer or tests.matrix MatrixMember)."""

    member: Member

    @property
    def identity(self) -> str: ...

    async def close(self) -> None: ...


async def until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def in_group(person: Person, group_id: bytes) -> bool:
    return group_id in person.member.group_ids() and person.member.group(group_id).active


def roster(person: Person, group_id: bytes) -> set[str]:
    return {identity_of(leaf.credential) for _, leaf in person.member.group(group_id).members()}


def texts(person: Person, group_id: bytes) -> list[tuple[str, str]]:
    return [(r.sender, r.content.body or "") for r in person.member.received(group_id)]


async def converge(people: Sequence[Person], group_id: bytes) -> int:
    """Every person is in the group at the same epoch; return it."""
    def same() -> bool:
        return all(in_group(p, group_id) for p in people) and \
            len({p.member.group(group_id).epoch for p in people}) == 1
    await until(same, "members at one epoch")
    for person in people:
        await person.member.idle()
    return people[0].member.group(group_id).epoch


@pytest.fixture
async def bridge_service(prosody_server: ProsodyServer, synapse_server: SynapseServer,
                         tmp_path: Path) -> AsyncIterator[BridgeService]:
    """The combined service, started, with no room pairs yet (tests attach them)."""
    user_id, password = synapse_server.new_user("bridgehub")
    store = await SqliteStore.open(tmp_path / "bridge.db")
    service = BridgeService(
        store, HubIdentity.generate("mls-bridge"),
        xmpp=ComponentConfig(jid=prosody_server.component_name,
                             secret=prosody_server.component_secret,
                             host=prosody_server.host, port=prosody_server.component_port),
        matrix=MatrixServiceConfig(homeserver=synapse_server.url, user=user_id,
                                   password=password, sync_timeout_ms=1000))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await store.close()


@pytest.fixture
async def people(prosody_server: ProsodyServer, synapse_server: SynapseServer,
                 bridge_service: BridgeService) -> AsyncIterator[Callable[..., Any]]:
    """``await people("xmpp" | "matrix", prefix)`` -> a started MLS member."""
    made: list[Person] = []
    assert bridge_service.bot is not None
    hub_user = bridge_service.bot.user_id

    async def factory(network: str, prefix: str) -> Person:
        person: Person
        if network == "xmpp":
            person = await new_peer(prosody_server, prefix)
        else:
            person = await make_member(synapse_server, prefix, hub_user)
        made.append(person)
        return person

    try:
        yield factory
    finally:
        for person in made:
            await person.close()


class PlainXmpp:
    """A plain slixmpp client: no MLS plugin, joins rooms like any MUC client."""

    def __init__(self, client: ClientXMPP, jid: str) -> None:
        self.client = client
        self.jid = jid
        self.messages: list[tuple[str, str]] = []  # (from, body) of groupchat messages
        self.stanzas: list[str] = []  # every message stanza received, serialized
        client.add_event_handler("message", self._on_message)

    @property
    def identity(self) -> str:
        return "xmpp:" + self.jid

    def _on_message(self, message: Any) -> None:
        self.stanzas.append(str(message))
        if message["type"] == "groupchat" and message["body"]:
            self.messages.append((str(message["from"]), message["body"]))

    async def join(self, room: str, nick: str) -> None:
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_presence(presence: Any) -> None:
            if presence["from"].bare == room and not joined.done():
                joined.set_result(None)

        self.client.add_event_handler("presence", on_presence)
        presence = self.client.make_presence(pto=f"{room}/{nick}")
        ET.SubElement(presence.xml, f"{{{NS_MUC}}}x")
        presence.send()
        try:
            await asyncio.wait_for(joined, TIMEOUT)
        finally:
            self.client.del_event_handler("presence", on_presence)

    def say(self, room: str, body: str) -> None:
        self.client.make_message(mto=room, mbody=body, mtype="groupchat").send()

    async def close(self) -> None:
        await self.client.disconnect(wait=1.0)


async def plain_xmpp(server: ProsodyServer, prefix: str) -> PlainXmpp:
    jid, password = server.new_user(prefix)
    client = ClientXMPP(f"{jid}/plain", password)
    client.register_plugin("xep_0030")
    server.configure_client(client)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_start(_event: Any) -> None:
        client.send_presence()
        if not ready.done():
            ready.set_result(None)

    client.add_event_handler("session_start", on_start)
    client.connect(host=server.host, port=server.c2s_port)
    await asyncio.wait_for(ready, TIMEOUT)
    return PlainXmpp(client, jid)


class PlainMatrix:
    """A plain matrix-nio client: no MLS, just the room timeline."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self.client = client
        self.events: list[tuple[str, dict[str, Any]]] = []  # (room id, event source)
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def identity(self) -> str:
        return "matrix:u/" + self.user_id[1:]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        since = None
        while True:
            response = await self.client.sync(timeout=1000, since=since)
            if isinstance(response, nio.SyncResponse):
                for room_id, room in response.rooms.join.items():
                    for event in room.timeline.events:
                        self.events.append((room_id, event.source))
                since = response.next_batch
                self.synced.set()
            else:
                await asyncio.sleep(0.2)

    def messages(self, room_id: str, msgtype: str = "m.text") -> list[dict[str, Any]]:
        return [e for r, e in self.events if r == room_id and e.get("type") == "m.room.message"
                and e.get("content", {}).get("msgtype") == msgtype]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()


async def plain_matrix(server: SynapseServer, prefix: str) -> PlainMatrix:
    user_id, password = server.new_user(prefix)
    plain = PlainMatrix(await login(server, user_id, password))
    plain.start()
    await asyncio.wait_for(plain.synced.wait(), TIMEOUT)
    return plain
