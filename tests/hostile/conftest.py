"""A hub on SQLite with a recording deliverer, and plain ``Group`` members driven by hand.

Members are bare :class:`mls.group.group.Group` objects (not ``bridge.Member``), so a
test can forge anything and submit it through :meth:`Hub.handle` exactly as a transport
would, with ``sender`` the network-authenticated identity.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.hub import Hub, HubIdentity
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
from tests.bridge.conftest import authenticated
from tests.mls.fixtures import NOW, Person
from transports.interface import Inbound, Membership, NetworkEvent, Op, Outbound

CS = suite(1)
KICK_ROOM = "room@mls.example.org"


def identity(name: str) -> str:
    return f"xmpp:{name}@example.org"


def bundle(name: str, rng: random.Random, *, now: int = NOW, cs_id: int = 1,
           lifetime: int | None = None) -> KeyPackageBundle:
    options = {} if lifetime is None else {"lifetime": lifetime}
    return Person(identity(name).encode(), rng.randbytes).key_package(suite(cs_id), now=now,
                                                                      **options)


class RecordingDeliverer:
    """The hub-side transport of these tests: remembers every delivery."""

    def __init__(self) -> None:
        self.delivered: list[Outbound] = []

    async def deliver(self, message: Outbound) -> None:
        self.delivered.append(message)


@dataclass
class Bench:
    hub: Hub
    store: SqliteStore
    deliverer: RecordingDeliverer
    rng: random.Random
    group_id: bytes = b""
    groups: dict[str, Group] = field(default_factory=dict)

    def draw(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    async def snapshot(self) -> tuple[object, ...]:
        store, group_id = self.store, self.group_id
        record = await store.get_group(group_id)
        return (record, await store.log_since(group_id, 0, 1000),
                await store.queued_proposals(group_id, record.epoch),
                await store.get_members(group_id), await store.group_rooms(group_id))

    async def refused(self, request: Inbound, code: str) -> Outbound:
        """The hub refuses ``request`` with ``code``, delivers nothing, stores nothing."""
        before = await self.snapshot()
        delivered = len(self.deliverer.delivered)
        reply = await self.ask(request)
        assert not reply.ok, f"the hub accepted a {request.op} it should refuse"
        assert reply.code == code, (reply.code, reply.reason)
        assert len(self.deliverer.delivered) == delivered, "the hub relayed it"
        assert await self.snapshot() == before, "the hub's store changed"
        return reply

    async def ask(self, request: Inbound) -> Outbound:
        """``request`` to the hub as its sender's network would hand it over; its
        deliveries are made by the time this returns (the fan-out is drained)."""
        reply = await self.hub.handle(authenticated(request))
        await self.hub.fanout.idle()
        return reply

    async def accepted(self, request: Inbound) -> Outbound:
        reply = await self.ask(request)
        assert reply.ok, (reply.code, reply.reason)
        return reply

    def commit_request(self, sender: str, staged: StagedCommit, **changes: bytes) -> Inbound:
        fields = {
            "payload": encode(staged.message),
            "welcome": encode(staged.welcome) if staged.welcome else b"",
            "group_info": encode(MLSMessage.wrap(staged.group_info)),
        }
        fields.update(changes)
        return Inbound(Op.SUBMIT_COMMIT, sender, group_id=self.group_id, **fields)

    def send_request(self, sender: str, message: MLSMessage | bytes) -> Inbound:
        payload = message if isinstance(message, bytes) else encode(message)
        return Inbound(Op.SEND, sender, group_id=self.group_id, payload=payload)

    async def kick(self, target: str, by: str = "moderator") -> Outbound:
        """``by`` kicks ``target`` from the group's XMPP room (attached on first use):
        the network event a transport reports, which the hub turns into a Remove."""
        if not await self.store.group_rooms(self.group_id):
            await self.hub.attach_room("xmpp", KICK_ROOM, self.group_id)
        reply = await self.hub.network_event(NetworkEvent(
            "xmpp", KICK_ROOM, identity(target), identity(by), Membership.JOINED,
            Membership.NONE, actor_moderator=True))
        await self.hub.fanout.idle()
        return reply

    async def publish(self, name: str, bundle: KeyPackageBundle) -> None:
        """``name`` publishes its KeyPackage: Adds of basic credentials must come from
        the directory (A7)."""
        await self.accepted(Inbound(Op.PUBLISH_KEY_PACKAGE, identity(name),
                                    payload=encode(MLSMessage.wrap(bundle.key_package))))

    async def commit(self, name: str, staged: StagedCommit, *receivers: str) -> None:
        """Submit through the hub, merge for the committer, process for ``receivers``."""
        await self.accepted(self.commit_request(identity(name), staged))
        self.groups[name] = self.groups[name].merge(staged)
        for other in receivers:
            self.groups[other], _ = self.groups[other].process(staged.message, now=NOW)


async def three_member_bench(tmp_path: Path, **config: object) -> AsyncIterator[Bench]:
    rng = random.Random(99)
    hub_identity = HubIdentity.generate("hub.example.org", rng=rng.randbytes)
    store = await SqliteStore.open(tmp_path / "hub.db")
    deliverer = RecordingDeliverer()
    hub = Hub(store, hub_identity, deliverer, clock=lambda: NOW)
    bench = Bench(hub, store, deliverer, rng)
    senders = Extension(ExtensionType.EXTERNAL_SENDERS,
                        encode_external_senders([hub_identity.external_sender(1)]))
    bundles = {name: bundle(name, rng) for name in ("alice", "bob", "carol")}
    for name in ("bob", "carol"):
        await bench.publish(name, bundles[name])
    alice = Group.create(bundles["alice"], group_id=rng.randbytes(32), rng=bench.draw,
                         extensions=(senders,), **config)  # type: ignore[arg-type]
    bench.group_id = alice.group_id
    await bench.accepted(Inbound(Op.CREATE_GROUP, identity("alice"),
                                 group_info=encode(MLSMessage.wrap(alice.group_info()))))
    staged = alice.commit(rng=bench.draw, now=NOW, add=[bundles["bob"].key_package,
                                                        bundles["carol"].key_package])
    bench.groups["alice"] = alice
    await bench.commit("alice", staged)
    assert staged.welcome is not None
    for name in ("bob", "carol"):
        bench.groups[name] = Group.join(staged.welcome, bundles[name], now=NOW,
                                        **config)  # type: ignore[arg-type]
    try:
        yield bench
    finally:
        await store.close()


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async for value in three_member_bench(tmp_path):
        yield value
