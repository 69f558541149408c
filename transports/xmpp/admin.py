"""Room administration at the component: the muc#admin IQ (XEP-0045 §8.2 kicking an
occupant, §9.1 banning, §9.3-9.5 granting, revoking and listing membership, §10.3-10.7
owners and admins) and keeping outcasts out.

Owners and admins act (:func:`transports.xmpp.rooms.check_change` says who may do
what). A kick, a ban, or a membership taken away ends the target's occupancy (status
307, 301, 321) and is reported to the hub as a
:class:`transports.interface.NetworkEvent` by an actor with the moderator role; the
hub decides whether the MLS group follows (``docs/SECURITY.md``, A20). Granting an
affiliation reports nothing: it only makes the identity a room member (the ``room``
join policy counts it).
"""

from __future__ import annotations

from typing import Any, Protocol, cast
from xml.etree import ElementTree as ET

from slixmpp import JID
from slixmpp.stanza import Iq, Presence
from slixmpp.xmlstream import StanzaBase

from transports.interface import Membership, Network, NetworkEvent, Role
from transports.xmpp import namespace as ns
from transports.xmpp.occupants import OccupantPresence
from transports.xmpp.rooms import (
    NONE,
    OUTCAST,
    AdminItem,
    Affiliations,
    check_change,
    parse_admin_items,
)


class RoomHost(Protocol):
    """What room administration needs of the component."""

    config: Any  # ComponentConfig: its ``jid``
    xmpp: Any  # the slixmpp ComponentXMPP
    occupants: dict[str, dict[str, str]]
    rooms: Affiliations
    presence: OccupantPresence

    def iq_error(self, iq: Iq, condition: str, error_type: str, text: str) -> None: ...

    async def report(self, event: NetworkEvent) -> None: ...

    def occupancy_changed(self) -> None: ...


class RoomAdmin:
    """The muc#admin service of the component's rooms (see the module docstring)."""

    def __init__(self, host: RoomHost) -> None:
        self.host = host

    async def on_admin(self, stanza: StanzaBase) -> None:
        """One muc#admin IQ to a room: a list (get) or changes (set, all or nothing)."""
        host, iq = self.host, cast(Iq, stanza)
        room_jid = iq["to"]
        if iq["type"] not in ("get", "set"):
            return
        if not room_jid.user or room_jid.domain != host.config.jid:
            host.iq_error(iq, "item-not-found", "cancel", "no such room")
            return
        room, actor = room_jid.bare, ns.URI_SCHEME + iq["from"].bare
        query = iq.xml.find(f"{{{ns.NS_MUC_ADMIN}}}query")
        assert query is not None  # the handler's XPath matched it
        if iq["type"] == "get":
            self._list(iq, room, actor, query)
            return
        try:
            items = parse_admin_items(query)
        except ValueError as exc:
            host.iq_error(iq, "bad-request", "modify", str(exc))
            return
        targets = [item.identity or self._occupant(room, item.nick) for item in items]
        for item, target in zip(items, targets, strict=True):
            if not target:
                host.iq_error(iq, "item-not-found", "cancel", f"no occupant {item.nick!r}")
                return
            refusal = check_change(host.rooms, room, actor, item, target)
            if refusal:
                host.iq_error(iq, refusal, "cancel" if refusal == "conflict" else "auth",
                              f"{actor} may not change {target} in this room")
                return
        events = [await self._apply(room, actor, item, target)
                  for item, target in zip(items, targets, strict=True)]
        iq.reply(clear=True).send()  # type: ignore[no-untyped-call]
        for event in events:
            if event is not None:
                await host.report(event)

    def _list(self, iq: Iq, room: str, actor: str, query: ET.Element) -> None:
        """The identities holding one affiliation (XEP-0045 §9.5), for owners and admins."""
        if self.host.rooms.role(room, actor) < Role.MODERATOR:
            self.host.iq_error(iq, "forbidden", "auth", "only owners and admins see the lists")
            return
        item = query.find(f"{{{ns.NS_MUC_ADMIN}}}item")
        wanted = item.get("affiliation", "") if item is not None else ""
        result = iq.reply(clear=True)  # type: ignore[no-untyped-call]
        answer = ET.SubElement(result.xml, f"{{{ns.NS_MUC_ADMIN}}}query")
        for identity in self.host.rooms.listed(room, wanted):
            ET.SubElement(answer, f"{{{ns.NS_MUC_ADMIN}}}item", {
                "affiliation": wanted, "jid": identity.removeprefix(ns.URI_SCHEME)})
        result.send()

    def _occupant(self, room: str, nick: str) -> str:
        occupant = next((o for o, n in self.host.occupants.get(room, {}).items()
                         if n == nick), "")
        return ns.URI_SCHEME + JID(occupant).bare if occupant else ""

    async def _apply(self, room: str, actor: str, item: AdminItem, target: str
                     ) -> NetworkEvent | None:
        """Apply one allowed change; the network event it is, if any (a kick, a ban,
        or a membership taken away from someone who was in the room)."""
        rooms = self.host.rooms
        bare = target.removeprefix(ns.URI_SCHEME)
        present = any(JID(o).bare == bare for o in self.host.occupants.get(room, {}))
        before = Membership.JOINED if present or rooms.role(room, target) else Membership.NONE
        if item.kick:
            self.end_occupancy(room, target, "307")
            after = Membership.NONE
        else:
            held = rooms.of(room, target)
            await rooms.set(room, target, item.affiliation)
            if item.affiliation not in (OUTCAST, NONE) or (held == NONE and not present):
                return None  # a grant, or nothing taken away
            self.end_occupancy(room, target, "301" if item.affiliation == OUTCAST else "321")
            after = Membership.BANNED if item.affiliation == OUTCAST else Membership.NONE
        return NetworkEvent(Network.XMPP, room, target, actor, before, after,
                            actor_moderator=True, event_id=f"admin:{room}:{bare}")

    def end_occupancy(self, room: str, identity: str, status: str) -> None:
        """Drop ``identity``'s occupancies of ``room``, telling each of its resources
        why (status 307 kicked, 301 banned, 321 affiliation lost), and everyone else."""
        host = self.host
        bare = identity.removeprefix(ns.URI_SCHEME)
        members = host.occupants.get(room, {})
        for occupant in [o for o in members if JID(o).bare == bare]:
            nick = members.pop(occupant)
            host.presence.left(room, occupant, nick, (status,))
        host.occupancy_changed()

    def refuse_entry(self, presence: Presence, condition: str = "forbidden",
                     error_type: str = "auth", text: str = "") -> None:
        """A presence error for an entry refused: an outcast's (XEP-0045 §9.1,
        ``forbidden``), one beyond the component's limits (:mod:`transports.xmpp.limits`,
        ``resource-constraint``), a nickname in use or reserved (§7.2.9, ``conflict``)."""
        error = self.host.xmpp.make_presence(pto=presence["from"], pfrom=presence["to"],
                                             ptype="error")
        ET.SubElement(error.xml, f"{{{ns.NS_MUC}}}x")
        error["error"]["type"] = error_type
        error["error"]["condition"] = condition
        error["error"]["by"] = presence["to"].bare
        if text:
            error["error"]["text"] = text
        error.send()
