"""End to end over a real Synapse: the hub bot plus three matrix-nio MLS members.

One MLS group rides one Matrix room: create, add (Welcome to-device, invite by the
hub), chat (m.room.encrypted with the MLS algorithm), a payload over the event limit
(media repository), an external join, a remove, an update, two members committing in
the same epoch, a Matrix leave turned into the hub's Remove proposal, and a forged
commit event from a non-hub user that everyone ignores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from typing import Any

import nio
import pytest

from bridge.app.services.matrix import MatrixService
from bridge.errors import HubRefused
from bridge.hub.policy import JoinPolicy
from tests.matrix.conftest import MatrixMember, eventually, room_with_hub
from transports.interface import Kind
from transports.matrix import namespace as ns
from transports.matrix.events import b64encode


async def converged(group_id: bytes, *people: MatrixMember) -> int:
    """Wait until every member is at the same epoch; return it."""
    def same() -> bool:
        epochs = {p.member.group(group_id).epoch for p in people
                  if group_id in p.member.group_ids()}
        return len(epochs) == 1 and all(group_id in p.member.group_ids() for p in people)
    await eventually(same, what="members at one epoch")
    return people[0].member.group(group_id).epoch


async def say(sender: MatrixMember, group_id: bytes, text: str,
              log: list[tuple[str, str]]) -> None:
    await sender.member.send_text(group_id, text)
    log.append((sender.identity, text))


def expected_for(reader: MatrixMember, log: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(who, text) for who, text in log if who != reader.identity]


async def test_mls_room_lifecycle(hub: MatrixService, members: Any) -> None:
    assert hub.bot is not None
    hub_user = hub.bot.user_id
    alice: MatrixMember = await members("alice", hub_user)
    bob: MatrixMember = await members("bob", hub_user)
    carol: MatrixMember = await members("carol", hub_user)
    room_id = await room_with_hub(alice, hub_user)
    for person in (bob, carol):
        await person.member.publish_key_packages(2)

    group_id = await alice.member.create_group(transport=ns.TRANSPORT_NAME, room_id=room_id)
    state = await alice.link.group_state(room_id)
    assert (state.group_id, state.hub_user, state.cipher_suite) == (group_id, hub_user, 1)
    assert state.hub_device == hub.bot.device_id

    # add bob: commit as a room event, Welcome to-device, invite by the hub
    await alice.member.add_members(group_id, [bob.identity])
    await eventually(lambda: group_id in bob.member.group_ids(), what="bob joining")
    await eventually(lambda: room_id in bob.client.rooms, what="bob in the Matrix room")
    assert [w.group_id for w in bob.link.deliveries(Kind.WELCOME)] == [group_id]

    chat: list[tuple[str, str]] = []
    await say(alice, group_id, "hello bob", chat)
    await say(bob, group_id, "hello alice", chat)
    await say(alice, group_id, "x" * 70_000, chat)  # over the event limit: media repository
    await eventually(lambda: bob.texts(group_id) == expected_for(bob, chat), what="bob's chat")
    await eventually(lambda: alice.texts(group_id) == expected_for(alice, chat),
                     what="alice's chat")
    assert alice.link.media.uploads >= 1 and bob.link.media.downloads >= 1

    # external join under the ``room`` join policy: not before carol is in the room;
    # once alice invited her to the Matrix room, she joins the group herself
    assert hub.hub is not None
    hub.hub.config = dataclasses.replace(hub.hub.config, default_join=JoinPolicy.ROOM)
    with pytest.raises(HubRefused) as refusal:
        await carol.member.rejoin(group_id)
    assert refusal.value.code == "join-policy"
    invited = await alice.client.room_invite(room_id, carol.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    await eventually(lambda: room_id in carol.client.invited_rooms or
                     room_id in carol.client.rooms, what="carol's invite")
    joined = await carol.client.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined
    await carol.member.rejoin(group_id)
    epoch = await converged(group_id, alice, bob, carol)
    await say(carol, group_id, "carol here", chat)
    await eventually(lambda: ("matrix:u/" + carol.user_id[1:], "carol here")
                     in alice.texts(group_id), what="alice hearing carol")

    # remove carol, update bob
    await alice.member.remove_members(group_id, [carol.identity])
    await bob.member.update(group_id)
    assert await converged(group_id, alice, bob) == epoch + 2
    await eventually(lambda: not carol.member.group(group_id).active, what="carol removed")

    # two members commit in the same epoch: one wins, the other catches up and retries
    before = alice.member.group(group_id).epoch
    await asyncio.gather(alice.member.update(group_id), bob.member.update(group_id))
    assert await converged(group_id, alice, bob) == before + 2

    await say(bob, group_id, "after the race", chat)
    await say(alice, group_id, "still here", chat)
    alice_sees = [m for m in expected_for(alice, chat) if m[0] != carol.identity]
    await eventually(lambda: [m for m in alice.texts(group_id) if m[0] != carol.identity]
                     == alice_sees, what="alice's final chat")
    bob_expected = expected_for(bob, chat)
    await eventually(lambda: bob.texts(group_id) == bob_expected, what="bob's final chat")

    # nothing was handed over twice, and every seq arrived in order
    for person in (alice, bob):
        seqs = [m.seq for m in person.link.delivered if m.kind != Kind.WELCOME]
        assert seqs == sorted(set(seqs)), seqs

    # a forged commit room event from a non-hub user is ignored by members and hub
    group = alice.member.group(group_id)
    seq_now = alice.member.next_seq(group_id)
    forged = {ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(group_id),
              ns.K_SEQ: seq_now, ns.K_EPOCH: group.epoch, ns.K_SENDER: alice.identity,
              ns.K_COMMIT: b64encode(b"\x00\x01forged")}
    sent = await bob.client.room_send(room_id, ns.COMMIT_EVENT, forged)
    assert isinstance(sent, nio.RoomSendResponse), sent
    await eventually(lambda: any(e == sent.event_id for _, e in alice.link.ignored),
                     what="alice ignoring the forgery")
    bot = hub.bot
    await eventually(lambda: any(e == sent.event_id for _, e in bot.ignored),
                     what="the hub ignoring the forgery")
    assert alice.member.group(group_id).epoch == group.epoch
    assert not any(m.payload == b"\x00\x01forged" for m in alice.link.delivered)

    # a Matrix leave becomes the hub's Remove proposal; committing it removes bob
    left = await bob.client.room_leave(room_id)
    assert isinstance(left, nio.RoomLeaveResponse), left
    await eventually(lambda: alice.member.group(group_id).state.pending,
                     what="the hub's Remove proposal reaching alice")
    await alice.member.commit_pending(group_id)
    assert len(list(alice.member.group(group_id).members())) == 1
    print(f"matrix e2e: epoch {alice.member.group(group_id).epoch}, "
          f"{len(alice.link.delivered)} deliveries to alice", file=sys.stderr)
