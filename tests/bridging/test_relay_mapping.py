"""Edits, replies, reactions and retractions cross a relayed room pair both ways, over
real Prosody and Synapse (application service), through the group's content format: a
Matrix edit (m.replace) becomes an XEP-0308 correction of the right XMPP message, an
XMPP reaction (XEP-0444) an m.reaction on the right Matrix event, a Matrix reply an
XEP-0461 reply, an XMPP retraction (XEP-0424) a redaction by the ghost -- and the MLS
members read each as content naming the right message."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nio
import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from benchmarks.bridge_run import PlainXmpp
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import relay_identity
from tests.bridging.conftest import started_again, until
from tests.bridging.relayed import (
    events_from,
    matrix_events,
    matrix_send,
    react,
    redacts,
    send,
    text_to_xmpp,
    with_body,
    xmpp_ghost,
)
from tests.bridging.test_relay_ghosts import SPEC, bridge_service, relayed_rooms

__all__ = ["bridge_service"]  # the application-service fixture, used here too
pytestmark = pytest.mark.parametrize("synapse_server", [SPEC], indirect=True)

async def test_edits_reactions_replies_retractions(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer) -> None:
    service = bridge_service
    owner, xmember, plain_x, plain_m, xmpp_room, matrix_room, group_id = \
        await relayed_rooms(service, people, prosody_server, synapse_server)
    ghost_x = xmpp_ghost(service, plain_x.jid)
    try:
        # a plain Matrix message reaches XMPP; the XMPP user knows it by a stanza id
        original = f"matrix original {secrets.token_hex(4)}"
        sent, shown = await text_to_xmpp(plain_m, matrix_room, plain_x, xmpp_room, original,
                                         "the original on XMPP")
        xmpp_id = shown.get("id")
        assert xmpp_id

        # edit in Matrix -> XEP-0308 correction of that message on XMPP
        fixed = f"matrix corrected {secrets.token_hex(4)}"
        await matrix_send(plain_m, matrix_room, {
            "msgtype": "m.text", "body": "* " + fixed,
            "m.new_content": {"msgtype": "m.text", "body": fixed},
            "m.relates_to": {"rel_type": "m.replace", "event_id": sent.event_id}})
        corrections = await until(lambda: with_body(plain_x, xmpp_room, fixed),
                                  "the correction on XMPP")
        replace = corrections[0].find("{urn:xmpp:message-correct:0}replace")
        assert replace is not None and replace.get("id") == xmpp_id
        # ... and the MLS members read an edit of the original's content message
        mls_original = await until(lambda: [r.content for r in owner.member.received(group_id)
                                            if r.content.body == original], "MLS original")
        await until(lambda: [r for r in xmember.member.received(group_id)
                             if r.content.body == fixed
                             and r.content.replaces == mls_original[0].message_id],
                    "the MLS XMPP member reading the edit")

        # reaction on XMPP (XEP-0444) -> m.reaction on the right Matrix event
        react(plain_x, xmpp_room, xmpp_id, "👍")
        reaction = await events_from(plain_m, matrix_room, ghost_x, "m.reaction",
                                     "the m.reaction")
        assert reaction[0]["content"]["m.relates_to"] == {
            "rel_type": "m.annotation", "event_id": sent.event_id, "key": "👍"}
        await until(lambda: [r for r in owner.member.received(group_id)
                             if r.content.reaction == "👍"
                             and r.content.reply_to == mls_original[0].message_id
                             and r.sender == relay_identity(plain_x.identity)],
                    "the MLS Matrix member reading the reaction")

        # reply in Matrix -> XEP-0461 reply on XMPP
        answer = f"matrix reply {secrets.token_hex(4)}"
        await matrix_send(plain_m, matrix_room, {
            "msgtype": "m.text", "body": answer,
            "m.relates_to": {"m.in_reply_to": {"event_id": sent.event_id}}})
        replies = await until(lambda: with_body(plain_x, xmpp_room, answer), "the reply")
        reply_to = replies[0].find("{urn:xmpp:reply:0}reply")
        assert reply_to is not None and reply_to.get("id") == xmpp_id

        # retraction on XMPP (XEP-0424) of the user's own message -> redaction
        own_id = f"own-{secrets.token_hex(4)}"
        regret = f"xmpp regret {secrets.token_hex(4)}"
        send(plain_x, xmpp_room, own_id, regret)
        posted = await until(lambda: [e for e in plain_m.messages(matrix_room)
                                      if e["sender"] == ghost_x
                                      and e["content"].get("body") == regret],
                             "the XMPP message on Matrix")
        send(plain_x, xmpp_room, f"retract-{secrets.token_hex(4)}",
             child=ET.Element("{urn:xmpp:message-retract:1}retract", {"id": own_id}))
        redactions = await events_from(plain_m, matrix_room, ghost_x, "m.room.redaction",
                                       "the redaction")
        assert redacts(redactions[0]) == posted[0]["event_id"]

        # someone else's message cannot be retracted from XMPP: nothing happens
        before = len(matrix_events(plain_m, matrix_room, "m.room.redaction"))
        send(plain_x, xmpp_room, f"retract-{secrets.token_hex(4)}",
             child=ET.Element("{urn:xmpp:message-retract:1}retract", {"id": xmpp_id}))
        marker = f"after {secrets.token_hex(4)}"
        plain_x.say(xmpp_room, marker)  # input is handled in order: this comes after
        await until(lambda: [e for e in plain_m.messages(matrix_room)
                             if e["content"].get("body") == marker], "the marker")
        assert len(matrix_events(plain_m, matrix_room, "m.room.redaction")) == before
        assert not [r for r in owner.member.received(group_id)
                    if r.content.retracts == mls_original[0].message_id]
    finally:
        await plain_x.close()
        await plain_m.close()


def every_message(plain: PlainXmpp) -> list[ET.Element]:
    """Every message stanza ``plain`` receives from now on, parsed -- body-less ones
    too (slixmpp's ``message`` event, which :class:`PlainXmpp` records, fires only for
    messages with a body; XEP-0424 retractions and XEP-0444 reactions have none)."""
    seen: list[ET.Element] = []
    plain.client.register_handler(Callback(
        f"every-message-{id(seen)}", MatchXPath(f"{{{plain.client.default_ns}}}message"),
        lambda message: seen.append(ET.fromstring(str(message)))))
    return seen


def stanzas_with(stanzas: list[ET.Element], room: str, path: str) -> list[ET.Element]:
    """The groupchat stanzas from ``room`` with an element at ``path``, that element
    each."""
    return [found for s in stanzas if s.get("type") == "groupchat"
            and s.get("from", "").startswith(room + "/") and (found := s.find(path)) is not None]


async def test_the_other_directions_and_reactions_across_a_restart(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer, tmp_path: Path) -> None:
    service = bridge_service
    owner, _xmember, plain_x, plain_m, xmpp_room, matrix_room, group_id = \
        await relayed_rooms(service, people, prosody_server, synapse_server)
    ghost_x = xmpp_ghost(service, plain_x.jid)
    fresh: BridgeService | None = None
    everything = every_message(plain_x)

    def from_ghost(check: Any) -> list[dict[str, Any]]:
        return [e for e in plain_m.messages(matrix_room) if e["sender"] == ghost_x
                and check(e["content"])]

    def mls(check: Any) -> list[Any]:
        return [r.content for r in owner.member.received(group_id) if check(r.content)]

    try:
        original = f"matrix original {secrets.token_hex(4)}"
        sent, shown = await text_to_xmpp(plain_m, matrix_room, plain_x, xmpp_room, original,
                                         "the original on XMPP")
        xmpp_id = shown.get("id")
        mls_original = (await until(lambda: mls(lambda c: c.body == original),
                                    "the original in the group"))[0]

        # XMPP reply (XEP-0461) -> m.in_reply_to naming the Matrix event
        answer = f"xmpp answer {secrets.token_hex(4)}"
        send(plain_x, xmpp_room, f"reply-{secrets.token_hex(4)}", answer,
             ET.Element("{urn:xmpp:reply:0}reply", {"id": xmpp_id}))
        reply = await until(lambda: from_ghost(lambda c: c.get("body") == answer),
                            "the reply on Matrix")
        assert reply[0]["content"]["m.relates_to"] == {
            "m.in_reply_to": {"event_id": sent.event_id}}
        await until(lambda: mls(lambda c: c.body == answer
                                and c.reply_to == mls_original.message_id),
                    "the MLS member reading the reply")

        # XMPP correction (XEP-0308) of the user's own message -> m.replace
        own_id = f"own-{secrets.token_hex(4)}"
        typo = f"xmpp tpyo {secrets.token_hex(4)}"
        send(plain_x, xmpp_room, own_id, typo)
        posted = await until(lambda: from_ghost(lambda c: c.get("body") == typo), "the typo")
        fixed = f"xmpp fixed {secrets.token_hex(4)}"
        send(plain_x, xmpp_room, f"fix-{secrets.token_hex(4)}", fixed,
             ET.Element("{urn:xmpp:message-correct:0}replace", {"id": own_id}))
        edit = await until(lambda: from_ghost(lambda c: c.get("m.new_content", {}).get(
            "body") == fixed), "the m.replace")
        assert edit[0]["content"]["m.relates_to"] == {"rel_type": "m.replace",
                                                      "event_id": posted[0]["event_id"]}

        # Matrix redaction -> XEP-0424 retraction of the stanza XMPP knows it by
        doomed = f"matrix doomed {secrets.token_hex(4)}"
        gone, shown = await text_to_xmpp(plain_m, matrix_room, plain_x, xmpp_room, doomed,
                                         "the doomed message on XMPP")
        doomed_id = shown.get("id")
        redacted = await plain_m.client.room_redact(matrix_room, gone.event_id)
        assert isinstance(redacted, nio.RoomRedactResponse), redacted
        retract = "{urn:xmpp:message-retract:1}retract"
        await until(lambda: [r for r in stanzas_with(everything, xmpp_room, retract)
                             if r.get("id") == doomed_id], "the XEP-0424 retraction")

        # a Matrix reaction and its redaction -> the reactor's XEP-0444 set, then empty
        reactions = "{urn:xmpp:reactions:0}reactions"
        party = await matrix_send(plain_m, matrix_room, {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": sent.event_id, "key": "🎉"}}, "m.reaction")

        def sets() -> list[list[str]]:
            return [[r.text or "" for r in found] for found in
                    stanzas_with(everything, xmpp_room, reactions) if found.get("id") == xmpp_id]
        await until(lambda: ["🎉"] in sets(), "the reaction on XMPP")
        over = await plain_m.client.room_redact(matrix_room, party.event_id)
        assert isinstance(over, nio.RoomRedactResponse), over
        await until(lambda: sets()[-1:] == [[]], "the emptied set on XMPP")

        # an XMPP reaction, a restart, then its retraction: the m.reaction is redacted
        react(plain_x, xmpp_room, xmpp_id, "👍")
        reaction = (await events_from(plain_m, matrix_room, ghost_x, "m.reaction",
                                      "the m.reaction"))[0]
        await service.stop()
        fresh = await started_again(service, tmp_path,
                                    [RoomPair(xmpp_room, matrix_room, relay=True)])
        react(plain_x, xmpp_room, xmpp_id)  # the whole set: none now
        redactions = await events_from(plain_m, matrix_room, ghost_x, "m.room.redaction",
                                       "the m.reaction's redaction after the restart", 60)
        assert redacts(redactions[0]) == reaction["event_id"]
    finally:
        if fresh is not None:
            await fresh.stop()
        await plain_x.close()
        await plain_m.close()
