"""Relay mode over real Prosody and Synapse: a plain slixmpp client and a plain
matrix-nio client (no MLS) talk with MLS members through the bridge, which holds a
puppet leaf for each of them -- named ``relay+<their identity>``, shown as
"... (relayed)" -- and tells everyone, MLS members included, that encryption ends at the
bridge: when relay mode is turned on, and again when it is turned off. In a room pair
without relay, the same plain clients see nothing readable."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import nio

from benchmarks.bridge_run import PlainXmpp, plain_xmpp
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import display, relay_identity
from bridge.relay import NOTICE, OFF_NOTICE
from bridge.relay.relay import MLS_MARK
from tests.bridging.conftest import (
    PlainMatrix,
    converge,
    groupchat,
    in_group,
    plain_matrix,
    roster,
    started_again,
    texts,
    until,
)
from tests.matrix.conftest import room_with_hub
from transports.matrix import namespace as matrix_ns
from transports.xmpp import namespace as xmpp_ns
from transports.xmpp.roominfo import NS_ROOMINFO


async def _invite_and_join(owner: Any, plain: PlainMatrix, room_id: str) -> None:
    invited = await owner.client.room_invite(room_id, plain.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    joined = await plain.client.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined


async def _bridged_group(service: BridgeService, people: Any, prosody: ProsodyServer,
                         relay: bool, plain_m: PlainMatrix
                         ) -> tuple[Any, Any, str, str, bytes, list[tuple[str, str]]]:
    """An MLS Matrix member creates the group in a paired Matrix room (the plain Matrix
    user already there), an MLS XMPP member is added and enters the XMPP room; with
    what the XMPP member's client receives in groupchat."""
    assert service.bot is not None
    owner = await people("matrix", "owner")
    xmember = await people("xmpp", "xmls")
    xmember_saw = groupchat(xmember.client)
    await xmember.member.publish_key_packages(1)
    matrix_room = await room_with_hub(owner, service.bot.user_id)
    xmpp_room = f"relay{secrets.token_hex(3)}@{prosody.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, matrix_room, relay=relay)])
    await _invite_and_join(owner, plain_m, matrix_room)
    group_id = await owner.member.create_group(transport="matrix", room_id=matrix_room)
    await owner.member.add_members(group_id, [xmember.identity])
    await until(lambda: in_group(xmember, group_id) and xmpp_room in xmember.plugin.rooms,
                "the XMPP member joining and entering the room")
    return owner, xmember, matrix_room, xmpp_room, group_id, xmember_saw


async def _matrix_notices(person: Any, room_id: str) -> list[dict[str, Any]]:
    """The bot's m.notice events in ``room_id``, as ``person``'s own account reads them."""
    response = await person.client.room_messages(room_id, limit=100)
    assert isinstance(response, nio.RoomMessagesResponse), response
    return [e.source["content"] for e in response.chunk
            if e.source.get("content", {}).get("msgtype") == "m.notice"]


async def test_relay_on_and_off(bridge_service: BridgeService, people: Any,
                                prosody_server: ProsodyServer,
                                synapse_server: SynapseServer, tmp_path: Path) -> None:
    plain_x = await plain_xmpp(prosody_server, "legx")
    plain_m = await plain_matrix(synapse_server, "legm")
    try:
        await _relay_on(bridge_service, people, prosody_server, plain_x, plain_m, tmp_path)
        await _never_relayed(bridge_service, people, prosody_server, plain_x, plain_m,
                             tmp_path)
    finally:
        await plain_x.close()
        await plain_m.close()


async def _relay_on(service: BridgeService, people: Any, prosody: ProsodyServer,
                    plain_x: PlainXmpp, plain_m: PlainMatrix, tmp_path: Path) -> None:
    owner, xmember, matrix_room, xmpp_room, group_id, xmember_saw = await _bridged_group(
        service, people, prosody, True, plain_m)
    assert service.bot is not None
    # the plain Matrix user was in the room when relay began; the plain XMPP user joins
    # now (no MLS client marker in the join presence): each gets a puppet leaf, named
    # in the relay's namespace
    await plain_x.join(xmpp_room, "legacy-x")
    mls = [owner, xmember]
    puppets = {relay_identity(plain_x.identity), relay_identity(plain_m.identity)}
    await until(lambda: roster(owner, group_id) >= puppets, "both puppets in the group")
    await converge(mls, group_id)
    assert roster(xmember, group_id) == {owner.identity, xmember.identity, *puppets}
    # ... which the members' library reports: the group is relayed
    for person in mls:
        assert person.member.relayed(group_id) == sorted(puppets)
    assert display(relay_identity(plain_x.identity)) == \
        plain_x.identity.removeprefix("xmpp:") + " (relayed)"

    await _told_relay_on(owner, xmember_saw, plain_x, plain_m, xmpp_room, matrix_room)

    # MLS -> legacy: decrypted by the bridge, re-emitted as plain text on both sides
    from_owner = f"owner says {secrets.token_hex(4)}"
    from_xmember = f"xmls says {secrets.token_hex(4)}"
    await owner.member.send_text(group_id, from_owner)
    await xmember.member.send_text(group_id, from_xmember)
    await until(lambda: [b for _, b in plain_x.messages if b != NOTICE]
                == [from_owner, from_xmember], "the plain XMPP client reading both")
    nicks = [sender.split("/", 1)[1] for sender, b in plain_x.messages if b != NOTICE]
    assert nicks == [display(owner.identity) + MLS_MARK, display(xmember.identity) + MLS_MARK]
    await until(lambda: [e["content"]["body"] for e in plain_m.messages(matrix_room)
                         if e["sender"] == service.bot.user_id]  # type: ignore[union-attr]
                == [f"<{display(owner.identity)}> {from_owner}",
                    f"<{display(xmember.identity)}> {from_xmember}"],
                "the plain Matrix client reading both from the bot")
    relayed = [e for e in plain_m.messages(matrix_room) if e["sender"] == service.bot.user_id]
    assert relayed[1]["content"][matrix_ns.RELAY_KEY]["sender"] == xmember.identity

    # legacy -> MLS: encrypted by the sender's puppet, shown to the other legacy side
    from_plain_x = f"plain xmpp says {secrets.token_hex(4)}"
    plain_x.say(xmpp_room, from_plain_x)
    for person in mls:
        await until(lambda p=person: (relay_identity(plain_x.identity), from_plain_x)
                    in texts(p, group_id), f"{person.identity} reading the plain XMPP user")
    await until(lambda: f"<{display(relay_identity(plain_x.identity))}> {from_plain_x}" in
                [e["content"]["body"] for e in plain_m.messages(matrix_room)],
                "the plain Matrix client reading the plain XMPP user")
    from_plain_m = f"plain matrix says {secrets.token_hex(4)}"
    sent = await plain_m.client.room_send(matrix_room, "m.room.message",
                                          {"msgtype": "m.text", "body": from_plain_m})
    assert isinstance(sent, nio.RoomSendResponse), sent
    for person in mls:
        await until(lambda p=person: (relay_identity(plain_m.identity), from_plain_m)
                    in texts(p, group_id), f"{person.identity} reading the plain Matrix user")
    shown_as = f"{xmpp_room}/{display(relay_identity(plain_m.identity))}"
    await until(lambda: (shown_as, from_plain_m) in plain_x.messages,
                "the plain XMPP client reading the plain Matrix user")
    # the Matrix user's own message was not echoed into the Matrix room by the bot
    assert not any(from_plain_m in e["content"]["body"] for e in plain_m.messages(matrix_room)
                   if e["sender"] == service.bot.user_id)
    # every message reached each MLS member exactly once
    for person in mls:
        got = [t for _, t in texts(person, group_id)]
        assert len(got) == len(set(got))
    await _relay_turned_off(service, owner, xmember, xmember_saw, plain_x, plain_m,
                            RoomPair(xmpp_room, matrix_room, relay=False), group_id,
                            tmp_path)


async def _told_relay_on(owner: Any, xmember_saw: list[tuple[str, str]],
                         plain_x: PlainXmpp, plain_m: PlainMatrix, xmpp_room: str,
                         matrix_room: str) -> None:
    """Relay mode is on, and the bridge says so to everyone: the XMPP MLS member and
    the plain XMPP user (the subject and the notice as they enter), both sides' Matrix
    accounts (m.notice), the m.bridge state, the XMPP room's disco#info."""
    await until(lambda: {(NOTICE, ""), ("", NOTICE)} <= set(xmember_saw),
                "the XMPP MLS member's notice and subject")
    await until(lambda: any(b == NOTICE for _, b in plain_x.messages), "the XMPP notice")
    await until(lambda: any(e["content"]["body"] == NOTICE
                            for e in plain_m.messages(matrix_room, "m.notice")),
                "the Matrix notice")
    for content in await _matrix_notices(owner, matrix_room):  # the MLS Matrix member
        if content["body"] == NOTICE:
            assert content[matrix_ns.RELAY_KEY] == {"relay": True, "end_to_end": False}
            break
    else:
        raise AssertionError("the MLS Matrix member was not told")
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
    form = info["disco_info"].xml.find("{jabber:x:data}x")
    assert form is not None
    fields = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form}
    assert fields["FORM_TYPE"] == NS_ROOMINFO
    assert fields["muc#roominfo_description"] == NOTICE


async def _relay_turned_off(service: BridgeService, owner: Any, xmember: Any,
                            xmember_saw: list[tuple[str, str]], plain_x: PlainXmpp,
                            plain_m: PlainMatrix, pair: RoomPair, group_id: bytes,
                            tmp_path: Path) -> None:
    """The bridge restarts with the pair no longer relayed: the puppets leave the group,
    everyone is told, the room's disco#info and m.bridge state say end to end."""
    await service.stop()
    fresh = await started_again(service, tmp_path, [pair])
    try:
        await until(lambda: any(b == OFF_NOTICE for _, b in plain_x.messages),
                    "the plain XMPP user told relay is off")
        await until(lambda: any(b == OFF_NOTICE for b, _ in xmember_saw),
                    "the XMPP MLS member told relay is off")
        await until(lambda: any(e["content"]["body"] == OFF_NOTICE
                                for e in plain_m.messages(pair.matrix_room, "m.notice")),
                    "the Matrix room told relay is off")
        assert fresh.relay.puppets == {}
        assert await fresh.relay.secrets.puppets() == []  # type: ignore[union-attr]
        epoch = owner.member.group(group_id).epoch
        await until(lambda: len(owner.member.group(group_id).state.pending) == 2,
                    "the puppets' Removes", 60)
        assert await owner.member.commit_pending(group_id)
        await converge([owner, xmember], group_id)
        assert owner.member.group(group_id).epoch == epoch + 1
        assert roster(xmember, group_id) == {owner.identity, xmember.identity}
        assert owner.member.relayed(group_id) == [] == xmember.member.relayed(group_id)
        info = await plain_x.client.plugin["xep_0030"].get_info(jid=pair.xmpp_room)
        assert xmpp_ns.FEATURE_RELAY not in info["disco_info"]["features"]
        assert info["disco_info"].xml.find("{jabber:x:data}x") is None
        assert {identity[3] for identity in info["disco_info"]["identities"]} == \
            {xmpp_ns.ROOM_NAME}
        state = await plain_m.client.room_get_state_event(
            pair.matrix_room, matrix_ns.BRIDGE_STATE,
            f"{matrix_ns.PREFIX}://xmpp/{pair.xmpp_room}")
        assert isinstance(state, nio.RoomGetStateEventResponse), state
        assert state.content[matrix_ns.RELAY_KEY]["end_to_end"] is True
    finally:
        await fresh.stop()


async def _never_relayed(service: BridgeService, people: Any, prosody: ProsodyServer,
                         plain_x: PlainXmpp, plain_m: PlainMatrix, tmp_path: Path) -> None:
    """A pair that never was relayed: no notice, no puppet, nothing readable."""
    before_x = len(plain_x.messages)
    before_m = len(plain_m.events)
    service = await started_again(service, tmp_path)  # the relay-off step stopped it
    puppets = set(service.relay.puppets)
    owner, xmember, matrix_room, xmpp_room, group_id, _ = await _bridged_group(
        service, people, prosody, False, plain_m)
    try:
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
                                for r, e in plain_m.events[before_m:]),
                    "MLS events in the room")
        await converge([owner, xmember], group_id)
        # nothing readable reached the plain clients, no puppet, nothing was let in
        assert [b for s, b in plain_x.messages[before_x:] if s.startswith(xmpp_room)] == []
        seen = json.dumps([e for r, e in plain_m.events[before_m:] if r == matrix_room])
        assert not any(t in seen for t in secret_texts)
        assert set(service.relay.puppets) == puppets
        assert roster(owner, group_id) == {owner.identity, xmember.identity}
        assert owner.member.relayed(group_id) == []
        assert [t for _, t in texts(owner, group_id)] == secret_texts[1:]
        info = await plain_x.client.plugin["xep_0030"].get_info(jid=xmpp_room)
        assert xmpp_ns.FEATURE_RELAY not in info["disco_info"]["features"]
        state = await plain_m.client.room_get_state_event(
            matrix_room, matrix_ns.BRIDGE_STATE, f"{matrix_ns.PREFIX}://xmpp/{xmpp_room}")
        assert isinstance(state, nio.RoomGetStateEventResponse), state
        assert state.content[matrix_ns.RELAY_KEY]["end_to_end"] is True
        assert not [c for c in await _matrix_notices(owner, matrix_room)
                    if c["body"] in (NOTICE, OFF_NOTICE)]
    finally:
        await service.stop()

