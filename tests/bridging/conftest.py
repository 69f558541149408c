"""Fixtures for the bridging tests: ONE BridgeService (one hub, one SQLite store) with
the XEP-0114 component on the real Prosody and the hub bot on the real Synapse, MLS
members on both networks, and plain (non-MLS) clients for relay mode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import nio
import pytest
from slixmpp import ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from benchmarks.bridge_run import PlainXmpp
from benchmarks.bridge_run import until as poll_until
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.app.services.matrix import MatrixServiceConfig
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.hub import HubIdentity
from bridge.hub.store import SqliteStore
from bridge.identities import relay_identity
from bridge.member import Member
from bridge.relay import PuppetSecrets
from tests.matrix.conftest import login, make_member
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
    return await poll_until(check, what, timeout)


def in_group(person: Person, group_id: bytes) -> bool:
    return group_id in person.member.group_ids() and person.member.group(group_id).active


def roster(person: Person, group_id: bytes) -> set[str]:
    return set(person.member.roster(group_id))


def groupchat(client: ClientXMPP) -> list[tuple[str, str]]:
    """(body, subject) of every groupchat message ``client`` receives from now on (a
    subject-only message has an empty body)."""
    seen: list[tuple[str, str]] = []

    def saw(message: Any) -> None:
        if message["type"] == "groupchat":
            seen.append((message["body"] or "", message["subject"] or ""))

    client.register_handler(Callback(f"groupchat-{id(seen)}",
                                     MatchXPath(f"{{{client.default_ns}}}message"), saw))
    return seen


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


DATABASE = "bridge.db"  # the bridge_service's store, in the test's tmp_path


async def started_again(service: BridgeService, tmp_path: Path,
                        rooms: Sequence[RoomPair] = ()) -> BridgeService:
    """A service like the stopped ``service`` (the :func:`bridge_service`), started
    again: its stop closed the store, last, so the database is opened again; the same
    identity, networks and relay secrets. Its own stop closes its store."""
    store = await SqliteStore.open(tmp_path / DATABASE)
    fresh = BridgeService(store, service.identity, xmpp=service.xmpp_config,
                          matrix=service.matrix_config, rooms=rooms,
                          relay_secrets=service.relay.secrets)
    try:
        await fresh.start()
    except BaseException:
        await store.close()
        raise
    return fresh


@contextlib.asynccontextmanager
async def running_bridge(prosody_server: ProsodyServer, tmp_path: Path,
                         matrix: MatrixServiceConfig) -> AsyncIterator[BridgeService]:
    """The combined service, started, with no room pairs yet (tests attach them): its
    store ``tmp_path / DATABASE``, the relay's puppet secrets in ``tmp_path /
    "relay-secrets"``, the XEP-0114 component on ``prosody_server``, the Matrix side as
    ``matrix`` says; stopped and both files closed at the end."""
    store = await SqliteStore.open(tmp_path / DATABASE)
    secrets = await PuppetSecrets.open(tmp_path / "relay-secrets")
    service = BridgeService(
        store, HubIdentity.generate("mls-bridge"),
        xmpp=ComponentConfig(jid=prosody_server.component_name,
                             secret=prosody_server.component_secret,
                             host=prosody_server.host, port=prosody_server.component_port),
        matrix=matrix, relay_secrets=secrets)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await secrets.close()
        await store.close()


def bot_account(synapse_server: SynapseServer, olm_store: str = "") -> MatrixServiceConfig:
    """The Matrix side as a plain bot account (a new user); ``olm_store``: Megolm on."""
    user_id, password = synapse_server.new_user("bridgehub")
    return MatrixServiceConfig(homeserver=synapse_server.url, user=user_id,
                               password=password, sync_timeout_ms=1000, olm_store=olm_store)


@pytest.fixture
async def bridge_service(prosody_server: ProsodyServer, synapse_server: SynapseServer,
                         tmp_path: Path) -> AsyncIterator[BridgeService]:
    """:func:`running_bridge` with the plain bot account."""
    async with running_bridge(prosody_server, tmp_path, bot_account(synapse_server)) as service:
        yield service


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


async def owner_and_xmember(people: Callable[..., Any]) -> tuple[Any, Any]:
    """An MLS member on Matrix (to own a room) and one on XMPP with a KeyPackage
    published, made by the ``people`` fixture."""
    owner = await people("matrix", "owner")
    xmember = await people("xmpp", "xmls")
    await xmember.member.publish_key_packages(1)
    return owner, xmember


async def relayed_group(owner: Any, xmember: Any, matrix_room: str, xmpp_room: str,
                        plain_x: PlainXmpp, plain_m: PlainMatrix) -> bytes:
    """In a relayed pair: ``owner`` makes the group of ``matrix_room`` and adds
    ``xmember``, who enters ``xmpp_room``; the plain ``plain_x`` joins that room; once
    the puppets of both plain users (``plain_m`` is in ``matrix_room``) are in the group
    and both MLS members are at one epoch: the group id."""
    group_id = await owner.member.create_group(transport="matrix", room_id=matrix_room)
    await owner.member.add_members(group_id, [xmember.identity])
    await until(lambda: in_group(xmember, group_id) and xmpp_room in xmember.plugin.rooms,
                "the XMPP member in the group and the room")
    await plain_x.join(xmpp_room, "legacy-x")
    puppets = {relay_identity(plain_x.identity), relay_identity(plain_m.identity)}
    await until(lambda: roster(owner, group_id) >= puppets, "both puppets in the group")
    await converge([owner, xmember], group_id)
    return group_id


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
