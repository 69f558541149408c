"""The authorization bench: a hub on SQLite whose room directories are in memory, and
plain ``Group`` members driven by hand on both networks, so a test can try every
operation as a stranger, as a member and from the other network (docs/SECURITY.md).

People (identity, network): alice ``xmpp:alice@example.org`` and bob
``xmpp:bob@example.org`` on XMPP, carol ``matrix:u/carol:example.org`` on Matrix --
the group's three members; mallory (XMPP) and eve (Matrix) are strangers; dave
``xmpp:dave@example.org`` and frank ``matrix:u/frank:example.org`` are legacy users
whose relay puppets are ``dave-relayed`` and ``frank-relayed`` (``relay+...``, whose
requests come over the relay link, network ``local``). The group has no room until a
test attaches one (:meth:`AuthzBench.attach`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.hub import Hub, HubConfig, HubIdentity
from bridge.hub.policy import JoinPolicy, RoomPolicy
from bridge.hub.store import SqliteStore
from mls.codec import encode
from mls.crypto import suite
from mls.enums import ExtensionType
from mls.group.commit import StagedCommit
from mls.group.group import Group
from mls.group.key_package import KeyPackageBundle
from mls.messages.extension_types import encode_external_senders
from mls.messages.extensions import Extension
from mls.messages.framing import MLSMessage
from tests.hostile.conftest import RecordingDeliverer
from tests.mls.fixtures import NOW, Person
from transports.interface import Inbound, Network, Op, Outbound, Role, network_of
from transports.memory import MemoryRooms

CS = suite(1)
XMPP_ROOM = "room@mls.example.org"
MATRIX_ROOM = "!room:example.org"

IDENTITIES = {
    "alice": "xmpp:alice@example.org",
    "bob": "xmpp:bob@example.org",
    "carol": "matrix:u/carol:example.org",
    "mallory": "xmpp:mallory@example.org",
    "eve": "matrix:u/eve:example.org",
    "dave": "xmpp:dave@example.org",
    "frank": "matrix:u/frank:example.org",
    "dave-relayed": "relay+xmpp:dave@example.org",
    "frank-relayed": "relay+matrix:u/frank:example.org",
}


def who(name: str) -> str:
    return IDENTITIES[name]


@dataclass
class AuthzBench:
    hub: Hub
    store: SqliteStore
    deliverer: RecordingDeliverer
    rooms: dict[str, MemoryRooms]
    rng: random.Random
    people: dict[str, Person] = field(default_factory=dict)
    group_id: bytes = b""
    groups: dict[str, Group] = field(default_factory=dict)

    def draw(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def person(self, name: str) -> Person:
        if name not in self.people:
            self.people[name] = Person(who(name).encode(), self.rng.randbytes)
        return self.people[name]

    def bundle(self, name: str, **options: object) -> KeyPackageBundle:
        return self.person(name).key_package(CS, now=NOW, **options)

    # -- asking the hub, as a transport would ---------------------------------------------

    def request(self, op: str, name: str, **fields: object) -> Inbound:
        """A request from ``name``, authenticated by its own network (a relayed
        identity: over the relay link)."""
        identity = who(name)
        return Inbound(op, identity, network=network_of(identity) or Network.LOCAL,
                       **fields)  # type: ignore[arg-type]

    async def ask(self, request: Inbound) -> Outbound:
        """``request`` to the hub; its deliveries are made by the time this returns."""
        reply = await self.hub.handle(request)
        await self.hub.fanout.idle()
        return reply

    async def snapshot(self) -> tuple[object, ...]:
        store, group_id = self.store, self.group_id
        record = await store.get_group(group_id)
        return (record, await store.log_since(group_id, 0, 1000),
                await store.queued_proposals(group_id, record.epoch),
                await store.get_members(group_id), await store.group_rooms(group_id),
                await store.list_key_packages(who("alice")),
                await store.list_key_packages(who("carol")))

    async def refused(self, request: Inbound, code: str) -> Outbound:
        """The hub refuses ``request`` with ``code``: nothing delivered, nothing stored."""
        before = await self.snapshot()
        delivered = len(self.deliverer.delivered)
        reply = await self.ask(request)
        assert not reply.ok, f"the hub accepted {request.op} from {request.sender}"
        assert reply.code == code, (reply.code, reply.reason)
        assert len(self.deliverer.delivered) == delivered, "the hub relayed it"
        assert await self.snapshot() == before, "the hub's store changed"
        return reply

    async def accepted(self, request: Inbound) -> Outbound:
        reply = await self.ask(request)
        assert reply.ok, (reply.code, reply.reason)
        return reply

    # -- groups and rooms ---------------------------------------------------------------

    def commit_request(self, name: str, staged: StagedCommit) -> Inbound:
        return self.request(Op.SUBMIT_COMMIT, name, group_id=self.group_id,
                            payload=encode(staged.message),
                            welcome=encode(staged.welcome) if staged.welcome else b"",
                            group_info=encode(MLSMessage.wrap(staged.group_info)))

    async def commit(self, name: str, staged: StagedCommit) -> None:
        """Submit, merge for the committer, process for every other member."""
        await self.accepted(self.commit_request(name, staged))
        self.groups[name] = self.groups[name].merge(staged)
        for other in [n for n in self.groups if n != name]:
            if self.groups[other].active:
                self.groups[other], _ = self.groups[other].process(staged.message, now=NOW)

    def role(self, network: str, room: str, name: str, role: Role) -> None:
        self.rooms[network].set_role(room, who(name), role)

    async def attach(self, *rooms: tuple[str, str], join: JoinPolicy = JoinPolicy.INVITE,
                     admins: frozenset[str] = frozenset(), configured: bool = True) -> None:
        """Attach rooms to the group (as the configuration does) and, if
        ``configured``, register them as one configured pair with ``join``/``admins``."""
        for transport, room in rooms:
            await self.hub.attach_room(transport, room, self.group_id)
        if configured:
            self.hub.authz.configure(RoomPolicy(rooms, join, admins))

    def new_group(self, name: str, transport: str = "", room: str = ""
                  ) -> tuple[Group, Inbound]:
        """A fresh group of ``name``'s (listing the hub as external sender) and the
        create-group request that registers it (for ``room`` if given)."""
        senders = Extension(ExtensionType.EXTERNAL_SENDERS,
                            encode_external_senders([self.hub.identity.external_sender(1)]))
        group = Group.create(self.bundle(name), group_id=self.draw(32), rng=self.draw,
                             extensions=(senders,))
        return group, self.request(Op.CREATE_GROUP, name, group_id=group.group_id,
                                   group_info=encode(MLSMessage.wrap(group.group_info())),
                                   transport=transport, room_id=room)

    async def from_directory(self, name: str, claimer: str, **options: object
                             ) -> KeyPackageBundle:
        """A KeyPackage of ``name`` that ``name`` published and ``claimer`` (a member)
        claimed for the group, as a member adds someone (an Add of a basic credential
        must come from the directory, A7)."""
        bundle = self.bundle(name, **options)
        await self.accepted(self.request(Op.PUBLISH_KEY_PACKAGE, name, payload=encode(
            MLSMessage.wrap(bundle.key_package))))
        await self.accepted(self.request(Op.CLAIM_KEY_PACKAGE, claimer, target=who(name),
                                         group_id=self.group_id, cipher_suite=1))
        return bundle

    def set_default_join(self, join: JoinPolicy) -> None:
        self.hub.config = dataclasses.replace(self.hub.config, default_join=join)


async def authz_bench(tmp_path: Path, config: HubConfig | None = None
                      ) -> AsyncIterator[AuthzBench]:
    rng = random.Random(1616)
    hub_identity = HubIdentity.generate("hub.example.org", rng=rng.randbytes)
    store = await SqliteStore.open(tmp_path / "hub.db")
    deliverer = RecordingDeliverer()
    rooms = {"xmpp": MemoryRooms(), "matrix": MemoryRooms()}
    hub = Hub(store, hub_identity, deliverer, config=config, clock=lambda: NOW,
              directories=rooms)
    bench = AuthzBench(hub, store, deliverer, rooms, rng)
    senders = Extension(ExtensionType.EXTERNAL_SENDERS,
                        encode_external_senders([hub_identity.external_sender(1)]))
    bundles = {"alice": bench.bundle("alice")}
    alice = Group.create(bundles["alice"], group_id=rng.randbytes(32), rng=bench.draw,
                         extensions=(senders,))
    bench.group_id = alice.group_id
    await bench.accepted(bench.request(Op.CREATE_GROUP, "alice", group_info=encode(
        MLSMessage.wrap(alice.group_info()))))
    bench.groups["alice"] = alice
    for name in ("bob", "carol"):
        bundles[name] = await bench.from_directory(name, "alice")
    staged = alice.commit(rng=bench.draw, now=NOW, add=[bundles["bob"].key_package,
                                                        bundles["carol"].key_package])
    await bench.commit("alice", staged)
    assert staged.welcome is not None
    for name in ("bob", "carol"):
        bench.groups[name] = Group.join(staged.welcome, bundles[name], now=NOW)
    try:
        yield bench
    finally:
        await store.close()


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[AuthzBench]:
    async for value in authz_bench(tmp_path):
        yield value
