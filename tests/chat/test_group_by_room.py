"""Joining by a room's address: get-group-info with a transport and room id (no group
id) names the room's group, under the room's join policy; an unknown room is refused
and changes nothing."""

from __future__ import annotations

from pathlib import Path

from bridge.hub import Hub, HubIdentity
from bridge.hub.policy import JoinPolicy, RoomPolicy
from bridge.hub.store import SqliteStore
from bridge.member import Member
from transports.interface import Inbound, Op
from transports.memory import MemoryNetwork

ROOM = "lobby@mls.example.org"


async def test_group_info_by_room(tmp_path: Path) -> None:
    network = MemoryNetwork()
    store = await SqliteStore.open(tmp_path / "hub.db")
    hub = Hub(store, HubIdentity.generate("hub.example.org"), network)
    network.attach(hub)
    alice = Member(network.link("xmpp:alice@example.org"))
    bob = Member(network.link("xmpp:bob@example.org"))
    for member in (alice, bob):
        network.register(member.identity, member)
        await member.start()
    try:
        group_id = await alice.create_group()
        await hub.attach_room("xmpp", ROOM, group_id)  # as the configuration does
        by_room = Inbound(Op.GET_GROUP_INFO, "", transport="xmpp", room_id=ROOM)
        mine = await network.link(alice.identity).request(by_room)
        assert mine.ok and mine.group_id == group_id and mine.payload
        refused = await network.link(bob.identity).request(by_room)
        assert not refused.ok and refused.code == "join-policy"  # invitation only
        unknown = await network.link(bob.identity).request(
            Inbound(Op.GET_GROUP_INFO, "", transport="xmpp", room_id="none@x"))
        assert not unknown.ok and unknown.code == "unknown-group"

        hub.authz.configure(RoomPolicy((("xmpp", ROOM),), JoinPolicy.OPEN))
        reply = await network.link(bob.identity).request(by_room)
        assert reply.ok and reply.group_id == group_id
        await bob.rejoin(reply.group_id)  # an external join from what the room named
        await network.settle()
        await alice.idle()
        assert set(alice.roster(group_id)) == {alice.identity, bob.identity}
    finally:
        for member in (alice, bob):
            await member.stop()
        await network.close()
        await store.close()
