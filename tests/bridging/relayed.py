"""Steps of the relayed-pair tests (``test_relay_mapping``, ``test_relay_files``): what a
plain user sends on one network, and what the other network's plain user receives."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from typing import Any

import nio

from benchmarks.bridge_run import PlainXmpp
from bridge.app.services.bridge import BridgeService
from tests.bridging.conftest import TIMEOUT, PlainMatrix, until

JC = "{jabber:client}"
NS_REACTIONS = "urn:xmpp:reactions:0"


def xmpp_ghost(service: BridgeService, jid: str) -> str:
    """The Matrix user the application service posts as for the XMPP user ``jid``."""
    assert service.matrix is not None and service.matrix.ghosts is not None
    return service.matrix.ghosts.user_id("xmpp", jid)


# -- XMPP -------------------------------------------------------------------------------


def received(plain: PlainXmpp, room: str) -> list[ET.Element]:
    """Every groupchat stanza ``plain`` got from ``room``, parsed."""
    stanzas = [ET.fromstring(s) for s in plain.stanzas]
    return [s for s in stanzas if s.get("type") == "groupchat"
            and s.get("from", "").startswith(room + "/")]


def with_body(plain: PlainXmpp, room: str, body: str) -> list[ET.Element]:
    """The stanzas from ``room`` with this body (serialized without the default
    namespace, so ``<body/>`` is unqualified)."""
    return [s for s in received(plain, room)
            if (s.findtext("body") or s.findtext(f"{JC}body")) == body]


def send(plain: PlainXmpp, room: str, stanza_id: str, body: str = "",
         child: ET.Element | None = None) -> None:
    message = plain.client.make_message(mto=room, mtype="groupchat", mbody=body or None)
    message["id"] = stanza_id
    if child is not None:
        message.xml.append(child)
    message.send()


def react(plain: PlainXmpp, room: str, stanza_id: str, *emoji: str) -> None:
    """``plain``'s XEP-0444 reactions to the message ``stanza_id``: the whole set (none
    takes them all back)."""
    reactions = ET.Element(f"{{{NS_REACTIONS}}}reactions", {"id": stanza_id})
    for one in emoji:
        ET.SubElement(reactions, f"{{{NS_REACTIONS}}}reaction").text = one
    send(plain, room, f"react-{secrets.token_hex(4)}", child=reactions)


# -- Matrix -----------------------------------------------------------------------------


async def matrix_send(plain: PlainMatrix, room: str, content: dict[str, Any],
                      event_type: str = "m.room.message") -> nio.RoomSendResponse:
    """``plain`` sends an event into ``room``; the server took it."""
    sent = await plain.client.room_send(room, event_type, content)
    assert isinstance(sent, nio.RoomSendResponse), sent
    return sent


async def text_to_xmpp(plain_m: PlainMatrix, matrix_room: str, plain_x: PlainXmpp,
                       xmpp_room: str, body: str, what: str,
                       ) -> tuple[nio.RoomSendResponse, ET.Element]:
    """A plain Matrix text message, and the stanza the plain XMPP user receives it as."""
    sent = await matrix_send(plain_m, matrix_room, {"msgtype": "m.text", "body": body})
    shown = await until(lambda: with_body(plain_x, xmpp_room, body), what)
    return sent, shown[0]


def matrix_events(plain: PlainMatrix, room: str, event_type: str) -> list[dict[str, Any]]:
    return [e for r, e in plain.events if r == room and e.get("type") == event_type]


async def events_from(plain: PlainMatrix, room: str, sender: str, event_type: str,
                      what: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Wait until ``plain`` has events of ``event_type`` by ``sender`` in ``room``."""
    return await until(lambda: [e for e in matrix_events(plain, room, event_type)
                                if e["sender"] == sender], what, timeout)


def redacts(redaction: dict[str, Any]) -> str | None:
    """The event an ``m.room.redaction`` takes away (top level, or in its content from
    room version 11 on)."""
    return redaction.get("redacts") or redaction["content"].get("redacts")
