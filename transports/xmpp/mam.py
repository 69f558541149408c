"""XEP-0313 Message Archive Management for the component's relayed rooms, with
XEP-0059 Result Set Management paging.

Only a relayed room has an archive: what the bridge's relay re-emitted into it as
plain text (the bridge could read it anyway; MLS members keep reading the hub's log
with their own client). The archive is the bridge's (:class:`RoomArchive`); this
module speaks the protocol:

* a query (``<query xmlns='urn:xmpp:mam:2'/>``, IQ set, to the room's JID, §4) from an
  occupant of the room or an identity affiliated with it -- anyone else is refused
  ``forbidden``; a room that is not relayed answers ``feature-not-implemented``;
* the form's ``start``, ``end`` (XEP-0082 date-times) and ``with`` (the room JID with an
  occupant's nick: that nick's messages) filters (§4.1.1);
* RSM ``max`` (at most :data:`MAX_PAGE`, default :data:`DEFAULT_PAGE`), ``after`` and
  ``before`` (empty: the last page), ids being the messages' stanza-ids (XEP-0359,
  the same as when they were sent live);
* each result is a message to the requester carrying ``<result queryid id>`` with the
  forwarded groupchat message and its ``<delay/>`` (§4.2), then the IQ result with
  ``<fin complete>`` and the page's ``first``/``last`` (§4.3);
* an IQ get is answered with the query form (§5.1.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from xml.etree import ElementTree as ET

from slixmpp import JID
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Iq
from slixmpp.xmlstream import StanzaBase

from transports.xmpp import namespace as ns
from transports.xmpp.rooms import NONE, OUTCAST, Affiliations

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_DATA = "jabber:x:data"
NS_CLIENT = "jabber:client"  # a forwarded stanza (XEP-0297)
DEFAULT_PAGE = 50
MAX_PAGE = 250


@dataclass(frozen=True, slots=True)
class MamQuery:
    """What a query asks: RSM ``after`` / ``before`` (None: not given; "": the last
    page), ``start``/``end`` (seconds since the epoch), ``nick`` (from ``with``)."""

    after: str = ""
    before: str | None = None
    start: int = 0
    end: int | None = None
    nick: str | None = None
    limit: int = DEFAULT_PAGE


@dataclass(frozen=True, slots=True)
class MamItem:
    """One archived message: its stanza-id, the nick it was sent under, when."""

    id: str
    nick: str
    body: str = field(repr=False)
    at: int = 0


class RoomArchive(Protocol):
    """A relayed room's archive (the bridge's relay)."""

    async def query(self, room: str, query: MamQuery) -> tuple[list[MamItem], bool]:
        """The page ``query`` asks for, in log order, and whether it reaches the end
        of the results in its direction; ValueError for an id it does not know."""
        ...


class MamHost(Protocol):
    """What the archive service needs of the component."""

    xmpp: Any
    rooms: Affiliations
    occupants: dict[str, dict[str, str]]

    def iq_error(self, iq: Iq, condition: str, error_type: str, text: str) -> None: ...

    def archived(self, room: str) -> bool: ...


class ArchiveService:
    """The XEP-0313 service of the component's rooms (see the module docstring)."""

    def __init__(self, host: MamHost) -> None:
        self.host = host
        self.archive: RoomArchive | None = None

    async def on_query(self, stanza: StanzaBase) -> None:
        host, iq = self.host, cast(Iq, stanza)
        room, requester = iq["to"].bare, iq["from"]
        if iq["type"] not in ("get", "set"):
            return
        if self.archive is None or not iq["to"].user or not host.archived(room):
            host.iq_error(iq, "feature-not-implemented", "cancel",
                          "this room keeps no archive (only relayed rooms do)")
            return
        inside = any(JID(o).bare == requester.bare for o in host.occupants.get(room, {}))
        if not inside and host.rooms.of(room, ns.URI_SCHEME + requester.bare) in (
                NONE, OUTCAST):
            host.iq_error(iq, "forbidden", "auth", "only the room's occupants and "
                          "members read its archive")
            return
        query_element = iq.xml.find(f"{{{NS_MAM}}}query")
        assert query_element is not None  # the handler's XPath matched it
        if iq["type"] == "get":
            self._form(iq)
            return
        try:
            query = parse_query(query_element, room)
            items, complete = await self.archive.query(room, query)
        except ValueError as exc:
            host.iq_error(iq, "item-not-found" if "unknown" in str(exc) else "bad-request",
                          "cancel", str(exc))
            return
        self._send(iq, room, query_element.get("queryid", ""), items, complete)

    def _send(self, iq: Iq, room: str, query_id: str, items: list[MamItem],
              complete: bool) -> None:
        requester = iq["from"]
        for item in items:
            message = self.host.xmpp.make_message(mto=requester, mfrom=room)
            result = ET.SubElement(message.xml, f"{{{NS_MAM}}}result",
                                   {"queryid": query_id, "id": item.id} if query_id
                                   else {"id": item.id})
            forwarded = ET.SubElement(result, f"{{{NS_FORWARD}}}forwarded")
            ET.SubElement(forwarded, f"{{{NS_DELAY}}}delay", {"stamp": _stamp(item.at)})
            inner = ET.SubElement(forwarded, f"{{{NS_CLIENT}}}message", {
                "from": f"{room}/{item.nick}", "type": "groupchat", "id": item.id})
            ET.SubElement(inner, f"{{{NS_CLIENT}}}body").text = item.body
            ET.SubElement(inner, f"{{{ns.NS_SID}}}stanza-id", {"id": item.id, "by": room})
            message.send()
        reply = iq.reply(clear=True)  # type: ignore[no-untyped-call]
        fin = ET.SubElement(reply.xml, f"{{{NS_MAM}}}fin",
                            {"complete": "true" if complete else "false"})
        page = ET.SubElement(fin, f"{{{NS_RSM}}}set")
        if items:
            ET.SubElement(page, f"{{{NS_RSM}}}first").text = items[0].id
            ET.SubElement(page, f"{{{NS_RSM}}}last").text = items[-1].id
        reply.send()

    def _form(self, iq: Iq) -> None:
        reply = iq.reply(clear=True)  # type: ignore[no-untyped-call]
        query = ET.SubElement(reply.xml, f"{{{NS_MAM}}}query")
        form = ET.SubElement(query, f"{{{NS_DATA}}}x", {"type": "form"})
        hidden = ET.SubElement(form, f"{{{NS_DATA}}}field",
                               {"var": "FORM_TYPE", "type": "hidden"})
        ET.SubElement(hidden, f"{{{NS_DATA}}}value").text = NS_MAM
        for var, kind in (("with", "jid-single"), ("start", "text-single"),
                          ("end", "text-single")):
            ET.SubElement(form, f"{{{NS_DATA}}}field", {"var": var, "type": kind})
        reply.send()


def parse_query(query: ET.Element, room: str) -> MamQuery:
    """A ``<query/>``'s form and RSM set; ValueError for what cannot be served."""
    fields: dict[str, str] = {}
    for element in query.findall(f"{{{NS_DATA}}}x/{{{NS_DATA}}}field"):
        fields[element.get("var", "")] = element.findtext(f"{{{NS_DATA}}}value") or ""
    nick = None
    if fields.get("with"):
        try:
            target = JID(fields["with"])
        except InvalidJID:
            raise ValueError(f"not a JID: {fields['with']!r}") from None
        if target.bare != room or not target.resource:
            raise ValueError("'with' names an occupant of this room (room/nick)")
        nick = target.resource
    rsm = query.find(f"{{{NS_RSM}}}set")
    page = _rsm(rsm) if rsm is not None else {}
    try:
        limit = int(page.get("max") or DEFAULT_PAGE)
    except ValueError:
        raise ValueError("max is not a number") from None
    if limit < 0:
        raise ValueError("a negative max")
    return MamQuery(after=page.get("after") or "", before=page.get("before"),
                    start=_seconds(fields.get("start")) or 0,
                    end=_seconds(fields.get("end")), nick=nick,
                    limit=min(limit, MAX_PAGE))


def _rsm(rsm: ET.Element) -> Mapping[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("max", "after", "before"):
        element = rsm.find(f"{{{NS_RSM}}}{name}")
        if element is not None:
            found[name] = (element.text or "").strip()
    return found


def _seconds(text: str | None) -> int | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date-time (XEP-0082): {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _stamp(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "NS_MAM", "NS_RSM", "ArchiveService", "MamItem",
           "MamQuery", "RoomArchive", "parse_query"]
