"""Three (and a fourth) slixmpp members, the Hub behind the component, real Prosody:
create, add, chat, update, remove, external join (of a room member, under the ``room``
join policy), leave by presence, two commits in one epoch, kicks by the room's owner.
Every member receives exactly what the others sent."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bridge.devservers.prosody import ProsodyServer
from bridge.errors import HubRefused
from bridge.hub import Hub
from bridge.hub.policy import JoinPolicy
from tests.xmpp.conftest import InProcessHub, Peer, new_peer, start_hub
from tests.xmpp.helpers import (
    chat,
    converge,
    in_group,
    muc_admin,
    nick_of,
    received_all,
    room_jid,
    roster,
    texts,
    until,
)
from transports.interface import Inbound, Op


async def test_group_lifecycle_over_xmpp(prosody_server: ProsodyServer,
                                         hub_in_process: InProcessHub) -> None:
    alice, bob, carol, dave = [await new_peer(prosody_server, name)
                               for name in ("alice", "bob", "carol", "dave")]
    peers: list[Peer] = [alice, bob, carol, dave]
    try:
        for peer in (bob, carol):
            await peer.member.publish_key_packages(2)
        room = room_jid(prosody_server.component_name)
        group_id = await alice.member.create_group(transport="xmpp", room_id=room)
        assert room in alice.plugin.rooms

        # add: bob and carol join from their Welcomes and enter the room
        await alice.member.add_members(group_id, [bob.identity, carol.identity])
        await until(lambda: in_group(bob, group_id) and in_group(carol, group_id),
                    "bob and carol to join from their Welcomes")
        await until(lambda: all(room in p.plugin.rooms for p in (bob, carol)),
                    "bob and carol to enter the room")
        trio = [alice, bob, carol]
        await converge(trio, group_id)
        assert all(roster(p, group_id) == {alice.identity, bob.identity, carol.identity}
                   for p in trio)

        sent: dict[str, list[tuple[str, str]]] = {}
        await chat(trio, group_id, sent, tag="hello ")
        await received_all(trio, group_id, sent)

        # update (a full path from bob), then more chat in the new epoch
        await bob.member.update(group_id)
        await converge(trio, group_id)
        await chat(trio, group_id, sent, rounds=1, tag="after update ")
        await received_all(trio, group_id, sent)

        # two members commit in the same epoch: one wins, the other retries and lands
        epoch = alice.member.group(group_id).epoch
        await asyncio.gather(alice.member.update(group_id), carol.member.update(group_id))
        await converge(trio, group_id)
        assert alice.member.group(group_id).epoch == epoch + 2

        # remove carol; she sees her removal, the others go on without her
        await alice.member.remove_members(group_id, [carol.identity])
        await until(lambda: not carol.member.group(group_id).active, "carol to be removed")
        duo = [alice, bob]
        await converge(duo, group_id)
        assert roster(alice, group_id) == {alice.identity, bob.identity}

        # external join from the hub's GroupInfo by a member of the room (alice, its
        # owner, grants dave membership: XEP-0045 §9.3), then dave enters the room
        hub = hub_in_process.hub
        assert isinstance(hub, Hub)
        hub.config = dataclasses.replace(hub.config, default_join=JoinPolicy.ROOM)
        with pytest.raises(HubRefused) as refusal:
            await dave.member.rejoin(group_id)  # not a member of the room yet
        assert refusal.value.code == "join-policy"
        dave_jid = dave.plugin.xmpp.boundjid.bare
        assert await muc_admin(bob, room, affiliation="member", jid=dave_jid) == "forbidden"
        assert await muc_admin(alice, room, affiliation="member", jid=dave_jid) == ""
        await dave.member.rejoin(group_id)
        await dave.plugin.join_room(room, group_id)
        members = [alice, bob, dave]
        await converge(members, group_id)
        assert roster(bob, group_id) == {alice.identity, bob.identity, dave.identity}
        await chat(members, group_id, sent, rounds=1, tag="with dave ")
        await received_all(members, group_id, sent)

        # dave leaves the room: the hub proposes his Remove; the next commit covers it
        dave.plugin.leave_room(room)
        await until(lambda: bool(alice.member.group(group_id).state.pending),
                    "the hub's Remove proposal to arrive")
        await alice.member.commit_pending(group_id)
        await converge(duo, group_id)
        assert roster(bob, group_id) == {alice.identity, bob.identity}
        await chat(duo, group_id, sent, rounds=1, tag="final ")
        await received_all(duo, group_id, sent)
        # carol got nothing after her removal; dave nothing after leaving
        assert not any(t.startswith("with dave") for _, t in
                       [(s, t) for s, t in sent.get(carol.identity, [])])
    finally:
        for peer in peers:
            await peer.close()


async def test_offline_welcome_and_admin_kick(prosody_server: ProsodyServer,
                                              tmp_path: Path) -> None:
    alice = await new_peer(prosody_server, "ka")
    hub = await start_hub(prosody_server, tmp_path / "hub.db",
                          admins=frozenset({alice.identity}))
    bob = await new_peer(prosody_server, "kb")
    carol = await new_peer(prosody_server, "kc")
    try:
        for peer in (bob, carol):
            await peer.member.publish_key_packages(1)
        await carol.client.disconnect(wait=1.0)  # carol is offline when she is added
        room = room_jid(prosody_server.component_name)
        group_id = await alice.member.create_group(transport="xmpp", room_id=room)
        await alice.member.add_members(group_id, [bob.identity, carol.identity])
        await until(lambda: in_group(bob, group_id), "bob's Welcome")
        assert not carol.member.group_ids()

        # back online: Prosody's offline storage hands her the Welcome (a server
        # without it bounces it: see test_restart's held-Welcome test)
        started = asyncio.get_running_loop().create_future()

        def on_start(_event: object) -> None:
            if not started.done():
                started.set_result(None)

        carol.client.add_event_handler("session_start", on_start)
        carol.client.connect(host=prosody_server.host, port=prosody_server.c2s_port)
        await asyncio.wait_for(started, 20)
        await until(lambda: in_group(carol, group_id), "carol's held Welcome")
        trio = [alice, bob, carol]
        await converge(trio, group_id)

        # a kick is no request (even from the room's owner); bob is no moderator of the
        # room; alice, its owner (she created it), kicks carol the XEP-0045 way (§8.2)
        refused = await alice.plugin.request(Inbound(
            op=Op.KICK.value, sender="", group_id=group_id, target=carol.identity))
        assert not refused.ok and refused.code == "forbidden"
        await until(lambda: room in carol.plugin.rooms, "carol to enter the room")
        assert await muc_admin(bob, room, role="none", nick=nick_of(carol)) == "forbidden"
        assert await muc_admin(alice, room, role="none", nick=nick_of(carol)) == ""
        await until(lambda: room not in carol.plugin.rooms, "carol's kick presence")
        await until(lambda: bool(alice.member.group(group_id).state.pending),
                    "the hub's Remove proposal")
        await alice.member.commit_pending(group_id)
        await converge([alice, bob], group_id)
        assert roster(bob, group_id) == {alice.identity, bob.identity}
        # out of the room, carol gets nothing more (not even her removal: she is off
        # the room, and the log is for members only)
        await alice.member.send_text(group_id, "after the kick")
        await until(lambda: texts(bob, group_id) == [(alice.identity, "after the kick")],
                    "bob to receive the message")
        await asyncio.sleep(0.3)
        assert texts(carol, group_id) == []
    finally:
        for peer in (alice, bob, carol):
            await peer.close()
        await hub.close()


async def test_dropped_member_is_proposed_for_removal_after_grace(
        prosody_server: ProsodyServer, tmp_path: Path) -> None:
    hub = await start_hub(prosody_server, tmp_path / "hub.db", leave_grace=0.5)
    alice = await new_peer(prosody_server, "ga")
    bob = await new_peer(prosody_server, "gb")
    try:
        await bob.member.publish_key_packages(1)
        room = room_jid(prosody_server.component_name)
        group_id = await alice.member.create_group(transport="xmpp", room_id=room)
        await alice.member.add_members(group_id, [bob.identity])
        await until(lambda: room in bob.plugin.rooms, "bob to enter the room")
        await converge([alice, bob], group_id)
        await bob.client.disconnect(wait=1.0)  # no <leave/>: the server reports him gone
        assert not alice.member.group(group_id).state.pending
        await until(lambda: bool(alice.member.group(group_id).state.pending),
                    "the hub's Remove after the grace period", timeout=10)
        await alice.member.commit_pending(group_id)
        assert roster(alice, group_id) == {alice.identity}
    finally:
        for peer in (alice, bob):
            await peer.close()
        await hub.close()
