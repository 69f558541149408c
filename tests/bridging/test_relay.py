"""Relay mode over real Prosody and Synapse: a plain slixmpp client and a plain
matrix-nio client (no MLS) talk with MLS members through the bridge, which holds a
puppet leaf for each of them and says plainly that encryption ends at the bridge. In a
room pair without relay, the same plain clients see nothing readable."""

from __future__ import annotations

import json
import secrets
from typing import Any

import nio

from benchmarks.bridge_run import PlainXmpp, plain_xmpp
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.relay import NOTICE
from tests.bridging.conftest import (
    PlainMatrix,
    converge,
    in_group,
    plain_matrix,
    roster,
    texts,
    until,
)
from tests.matrix.conftest import room_with_hub
from transports.matrix import namespace as matrix_ns
from transports.xmpp import namespace as xmpp_ns


async def _invite_and_join(owner: Any, plain: PlainMatrix, room_id: str) -> None:
    invited = await owner.client.room_invite(room_id, plain.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    joined = await plain.client.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined


async def _bridged_group(service: BridgeService, people: Any, prosody: ProsodyServer,
                         relay: bool, plain_m: PlainMatrix) -> tuple[Any, Any, str, str, bytes]:
    """An MLS Matrix member creates the group in a paired Matrix room (the plain Matrix
    user already there), an MLS XMPP member is added and enters the XMPP room."""
    assert service.bot is not None
    owner = await people("matrix", "owner")
    xmember = await people("xmpp", "xmls")
    await xmember.member.publish_key_packages(1)
    matrix_room = await room_with_hub(owner, service.bot.user_id)
    xmpp_room = f"relay{secrets.token_hex(3)}@{prosody.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, matrix_room, relay=relay)])
    await _invite_and_join(owner, plain_m, matrix_room)
    group_id = await owner.member.create_group(transport="matrix", room_id=matrix_room)
    await owner.member.add_members(group_id, [xmember.identity])
    await until(lambda: in_group(xmember, group_id) and xmpp_room in xmember.plugin.rooms,
                "the XMPP member joining and entering the room")
    return owner, xmember, matrix_room, xmpp_room, group_id


async def test_relay_on_and_off(bridge_service: BridgeService, people: Any,
                                prosody_server: ProsodyServer,
                                synapse_server: SynapseServer) -> None:
    plain_x = await plain_xmpp(prosody_server, "legx")
    plain_m = await plain_matrix(synapse_server, "legm")
    try:
        await _relay_on(bridge_service, people, prosody_server, plain_x, plain_m)
        await _relay_off(bridge_service, people, prosody_server, plain_x, plain_m)
    finally:
        await plain_x.close()
        await plain_m.close()


async def _relay_on(service: BridgeService, people: Any, prosody: ProsodyServer,
                    plain_x: PlainXmpp, plain_m: PlainMatrix) -> None:
    owner, xmember, matrix_room, xmpp_room, group_id = await _bridged_group(
        service, people, prosody, True, plain_m)
    assert service.bot is not None
    # the plain Matrix user was in the room when relay began; the plain XMPP user joins
    # now (no MLS client marker in the join presence): each gets a puppet leaf
    await plain_x.join(xmpp_room, "legacy-x")
    mls = [owner, xmember]
    await until(lambda: roster(owner, group_id) >= {plain_x.identity, plain_m.identity},
                "both puppets in the group")
    await converge(mls, group_id)
    assert roster(xmember, group_id) == {owner.identity, xmember.identity,
                                         plain_x.identity, plain_m.identity}

    # the bridge says so: notices, m.bridge state, the room's disco#info
    await until(lambda: any(b == NOTICE for _, b in plain_x.messages), "the XMPP notice")
    await until(lambda: any(e["content"]["body"] == NOTICE
                            for e in plain_m.messages(matrix_room, "m.notice")),
                "the Matrix notice")
    bridge_state = await plain_m.client.room_get_state_event(
        matrix_room, matrix_ns.BRIDGE_STATE, f"{matrix_ns.PREFIX}://xmpp/{xmpp_room}")
    assert isinstance(bridge_state, nio.RoomGetStateEventResponse), bridge_state
    assert bridge_state.content["channel"]["id"] == xmpp_room
    assert bridge_state.content[matrix_ns.RELAY_KEY]["relay"] is True
    assert bridge_state.content[matrix_ns.RELAY_KEY]["end_to_end"] is False
    info = await plain_x.client.plugin["xep_0030"].get_info(jid=xmpp_room)
    assert xmpp_ns.FEATURE_RELAY in info["disco_info"]["features"]
    names = {identity[3] for identity in info["disco_info"]["identities"]}
    assert names == {xmpp_ns.RELAY_ROOM_NAME}

    # MLS -> legacy: decrypted by the bridge, re-emitted as plain text on both sides
    from_owner = f"owner says {secrets.token_hex(4)}"
    from_xmember = f"xmls says {secrets.token_hex(4)}"
    await owner.member.send_text(group_id, from_owner)
    await xmember.member.send_text(group_id, from_xmember)
    await until(lambda: [b for _, b in plain_x.messages if b != NOTICE]
                == [from_owner, from_xmember], "the plain XMPP client reading both")
    nicks = [sender.split("/", 1)[1] for sender, b in plain_x.messages if b != NOTICE]
    assert nicks == [owner.identity, xmember.identity]  # from room/<credential URI>
    await until(lambda: [e["content"]["body"] for e in plain_m.messages(matrix_room)
                         if e["sender"] == service.bot.user_id]  # type: ignore[union-attr]
                == [f"<{owner.identity}> {from_owner}", f"<{xmember.identity}> {from_xmember}"],
                "the plain Matrix client reading both from the bot")
    relayed = [e for e in plain_m.messages(matrix_room) if e["sender"] == service.bot.user_id]
    assert relayed[1]["content"][matrix_ns.RELAY_KEY]["sender"] == xmember.identity

    # legacy -> MLS: encrypted by the sender's puppet, shown to the other legacy side
    from_plain_x = f"plain xmpp says {secrets.token_hex(4)}"
    plain_x.say(xmpp_room, from_plain_x)
    for person in mls:
        await until(lambda p=person: (plain_x.identity, from_plain_x) in texts(p, group_id),
                    f"{person.identity} reading the plain XMPP user")
    await until(lambda: f"<{plain_x.identity}> {from_plain_x}" in
                [e["content"]["body"] for e in plain_m.messages(matrix_room)],
                "the plain Matrix client reading the plain XMPP user")
    from_plain_m = f"plain matrix says {secrets.token_hex(4)}"
    sent = await plain_m.client.room_send(matrix_room, "m.room.message",
                                          {"msgtype": "m.text", "body": from_plain_m})
    assert isinstance(sent, nio.RoomSendResponse), sent
    for person in mls:
        await until(lambda p=person: (plain_m.identity, from_plain_m) in texts(p, group_id),
                    f"{person.identity} reading the plain Matrix user")
    await until(lambda: (f"{xmpp_room}/{plain_m.identity}", from_plain_m) in plain_x.messages,
                "the plain XMPP client reading the plain Matrix user")
    # the Matrix user's own message was not echoed into the Matrix room by the bot
    assert not any(from_plain_m in e["content"]["body"] for e in plain_m.messages(matrix_room)
                   if e["sender"] == service.bot.user_id)
    # every message reached each MLS member exactly once
    for person in mls:
        got = [t for _, t in texts(person, group_id)]
        assert len(got) == len(set(got))


async def _relay_off(service: BridgeService, people: Any, prosody: ProsodyServer,
                     plain_x: PlainXmpp, plain_m: PlainMatrix) -> None:
    before_x = len(plain_x.messages)
    before_m = len(plain_m.events)
    puppets = set(service.relay.puppets)
    owner, xmember, matrix_room, xmpp_room, group_id = await _bridged_group(
        service, people, prosody, False, plain_m)
    await plain_x.join(xmpp_room, "legacy-x")
    secret_texts = [f"private {secrets.token_hex(6)}" for _ in range(2)]
    await owner.member.send_text(group_id, secret_texts[0])
    await xmember.member.send_text(group_id, secret_texts[1])
    await until(lambda: [t for _, t in texts(xmember, group_id)] == secret_texts[:1],
                "the MLS XMPP member reading")
    await until(lambda: [t for _, t in texts(owner, group_id)] == secret_texts[1:],
                "the MLS Matrix member reading")
    plain_x.say(xmpp_room, "plain text into an end-to-end room")
    await plain_m.client.room_send(matrix_room, "m.room.message",
                                   {"msgtype": "m.text", "body": "plain text too"})
    # ciphertext reached the Matrix room (the plain client sees it, unreadable)
    await until(lambda: any(r == matrix_room and e.get("type") == "m.room.encrypted"
                            for r, e in plain_m.events[before_m:]), "MLS events in the room")
    await converge([owner, xmember], group_id)
    # nothing readable reached the plain clients, no puppet was made, nothing was let in
    assert plain_x.messages[before_x:] == []
    seen = json.dumps([e for r, e in plain_m.events[before_m:] if r == matrix_room])
    assert not any(t in seen for t in secret_texts)
    assert set(service.relay.puppets) == puppets
    assert roster(owner, group_id) == {owner.identity, xmember.identity}
    assert [t for _, t in texts(owner, group_id)] == secret_texts[1:]
    info = await plain_x.client.plugin["xep_0030"].get_info(jid=xmpp_room)
    assert xmpp_ns.FEATURE_RELAY not in info["disco_info"]["features"]
    state = await plain_m.client.room_get_state_event(
        matrix_room, matrix_ns.BRIDGE_STATE, f"{matrix_ns.PREFIX}://xmpp/{xmpp_room}")
    assert isinstance(state, nio.RoomGetStateEventResponse), state
    assert state.content[matrix_ns.RELAY_KEY]["end_to_end"] is True
