"""A Matrix member's message is posted into the group's room once, and the hub confirms
it there (``transports/matrix/client.py``, ``output.py``; docs/SECURITY.md A12), over a
real Synapse.

Everyone in the room reads the ``im.mlsbridge.send`` event at once; the hub logs it and
sends the group's Matrix members an ``im.mlsbridge.ack`` naming it (to-device; no copy
in the room), which orders it for them. A send event no ack of the hub names is never
delivered: a stranger's, a forged ack's, one posted into a room that is not the
group's. And the bot reads a send that a limited sync timeline left out.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import nio
import pytest

from bridge.app.services.matrix import MatrixService
from bridge.errors import HubRefused
from tests.matrix.conftest import MatrixMember, eventually, room_with_hub
from tests.matrix.test_matrix_e2e import converged
from transports.interface import Inbound, Kind, Op, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.sync import SyncRunner


async def room_events(reader: MatrixMember, room_id: str) -> list[dict[str, Any]]:
    """The room's latest events, oldest first (as /messages gives them)."""
    page = await reader.client.room_messages(room_id, None, limit=200)
    assert isinstance(page, nio.RoomMessagesResponse), page
    return [event.source for event in reversed(page.chunk)]


async def group_of_two(hub: MatrixService, members: Any) -> tuple[MatrixMember,
                                                                   MatrixMember, str, bytes]:
    assert hub.bot is not None
    alice = await members("alice", hub.bot.user_id)
    bob = await members("bob", hub.bot.user_id)
    room_id = await room_with_hub(alice, hub.bot.user_id)
    await bob.member.publish_key_packages(1)
    group_id = await alice.member.create_group(transport=ns.TRANSPORT_NAME, room_id=room_id)
    await alice.member.add_members(group_id, [bob.identity])
    await eventually(lambda: room_id in bob.client.rooms, what="bob in the room")
    await converged(group_id, alice, bob)
    return alice, bob, room_id, group_id


def received(person: MatrixMember, group_id: bytes) -> list[str]:
    return [r.content.body or "" for r in person.member.received(group_id)]


async def test_a_message_is_posted_once_and_the_hub_acknowledges_it(
        hub: MatrixService, members: Any) -> None:
    alice, bob, room_id, group_id = await group_of_two(hub, members)
    assert hub.bot is not None
    await alice.member.send_text(group_id, "hello bob")
    await eventually(lambda: received(bob, group_id) == ["hello bob"], what="bob reads it")
    entry = [m for m in bob.link.deliveries(Kind.APPLICATION)][-1]
    assert entry.sender == alice.identity

    timeline = await room_events(bob, room_id)
    sends = [e for e in timeline if e["type"] == ns.SEND_EVENT]
    copies = [e for e in timeline if e["type"] == ns.ENCRYPTED_EVENT
              and e["content"].get(ns.K_SEQ) == entry.seq]
    assert [e["sender"] for e in sends] == [alice.user_id]
    assert copies == [], "the hub posted a copy of a message the room holds"
    assert [(a.event_id, a.room_id, a.seq, a.sender, a.group_id) for a in bob.acks] == \
        [(sends[0]["event_id"], room_id, entry.seq, alice.identity, group_id)]
    # bob answers the same way; alice's own message came back to her as the echo only
    await bob.member.send_text(group_id, "hello alice")
    await eventually(lambda: received(alice, group_id) == ["hello alice"],
                     what="alice reads bob")


async def stranger_posts(stranger: MatrixMember, room_id: str, group_id: bytes,
                         op: str = Op.SEND, payload: bytes = b"") -> str:
    """``stranger`` posts a send event as a member's client would; its event id."""
    request = Inbound(op, stranger.identity, secrets.token_hex(8), group_id=group_id,
                      payload=payload or secrets.token_bytes(120))
    content = events.request_content(request, str(stranger.client.device_id))
    content[ns.K_PAYLOAD] = events.b64encode(request.payload)
    if ns.K_GROUP_ID in content:
        content[ns.K_GROUP_ID] = events.b64encode(group_id)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    stranger.link._pending[request.request_id] = future  # the to-device refusal
    sent = await stranger.client.room_send(room_id, ns.SEND_EVENT, content)
    assert isinstance(sent, nio.RoomSendResponse), sent
    reply = await events.parse_response(await asyncio.wait_for(future, 30),
                                        stranger.link.media.read_blob)
    assert not reply.ok
    stranger.link._pending.pop(request.request_id, None)
    return f"{sent.event_id}|{reply.code}"


async def test_sends_no_ack_names_are_never_delivered(hub: MatrixService,
                                                      members: Any) -> None:
    """A stranger in the room (carol: not in the MLS group) posts alice's message
    again as her own send: refused ``not-member`` (to-device), never acked; a posted
    request that is not a send: ``malformed``; carol's forged ack naming her own send:
    ignored by the members. Nothing reaches alice or bob."""
    alice, bob, room_id, group_id = await group_of_two(hub, members)
    assert hub.bot is not None
    carol = await members("carol", hub.bot.user_id)
    invited = await alice.client.room_invite(room_id, carol.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    joined = await carol.client.join(room_id)  # she accepts (her link joins the hub's only)
    assert isinstance(joined, nio.JoinResponse), joined

    await alice.member.send_text(group_id, "first")
    await eventually(lambda: received(bob, group_id) == ["first"], what="bob")
    alices = [e for e in await room_events(carol, room_id) if e["type"] == ns.SEND_EVENT]
    copied = events.b64decode(alices[-1]["content"][ns.K_PAYLOAD])
    refused = await stranger_posts(carol, room_id, group_id, payload=copied)
    assert refused.endswith("|not-member"), refused
    forged_event = refused.split("|")[0]
    assert (await stranger_posts(carol, room_id, group_id, op=Op.LEAVE)).endswith(
        "|malformed")

    forged_ack = events.ack_content([Outbound(
        str(Kind.APPLICATION), group_id=group_id, seq=99, epoch=1, sender=bob.identity,
        origin=(ns.TRANSPORT_NAME, room_id, forged_event))], room_id)
    sent = await carol.client.to_device(nio.ToDeviceMessage(
        ns.ACK_TO_DEVICE, bob.user_id, "*", forged_ack))
    assert isinstance(sent, nio.ToDeviceResponse), sent
    await eventually(lambda: ("to-device not from the hub", ns.ACK_TO_DEVICE)
                     in bob.link.ignored, what="bob ignoring carol's ack")
    await alice.member.send_text(group_id, "still here")
    await eventually(lambda: received(bob, group_id) == ["first", "still here"],
                     what="bob")
    assert forged_event not in {ack.event_id for ack in alice.acks + bob.acks}
    assert received(alice, group_id) == []


async def test_a_member_posting_into_another_room_is_refused(hub: MatrixService,
                                                             members: Any) -> None:
    """Bob, a member, posts his real next message into a room of the hub's that is not
    the group's: ``forbidden`` (A12), the group's log is unchanged; posted where it
    belongs, the same kind of message is delivered."""
    alice, bob, room_id, group_id = await group_of_two(hub, members)
    assert hub.bot is not None
    other_room = await room_with_hub(bob, hub.bot.user_id)
    before = await hub.store.get_group(group_id)
    bob.link.group_rooms[group_id] = other_room
    with pytest.raises(HubRefused) as refused:
        await bob.member.send_text(group_id, "wrong room")
    assert refused.value.code == "forbidden"
    assert await hub.store.get_group(group_id) == before
    bob.link.group_rooms[group_id] = room_id
    await bob.member.send_text(group_id, "right room")
    await eventually(lambda: received(alice, group_id) == ["right room"], what="alice")


async def test_a_send_a_limited_timeline_left_out_is_still_handled(
        hub: MatrixService, members: Any) -> None:
    """The hub's sync stops; alice posts a message, then bob 120 plain ones (more than
    the bot's timeline limit of 100); the sync resumes with a limited timeline, and the
    bot reads back to where it was: alice's message is acked and reaches bob."""
    alice, bob, room_id, group_id = await group_of_two(hub, members)
    assert hub.bot is not None
    await hub.stop_receiving()
    sending = asyncio.create_task(alice.member.send_text(group_id, "before the flood"))
    await eventually(lambda: bool(alice.link._posted), what="alice's send posted")
    for n in range(120):
        sent = await bob.client.room_send(room_id, ns.MESSAGE_EVENT,
                                          {"msgtype": "m.text", "body": f"plain {n}"})
        assert isinstance(sent, nio.RoomSendResponse), sent
    runner = hub.runner = SyncRunner(hub.bot, timeout_ms=1000)
    runner.start()
    await asyncio.wait_for(sending, 60)
    await eventually(lambda: received(bob, group_id) == ["before the flood"], what="bob")

