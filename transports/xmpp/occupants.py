"""Occupant presence in the component's rooms, as XEP-0045 §7.2 has a room send it.

The component's rooms are *non-anonymous*: every occupant's real JID is in the
``muc#user`` item of its presence to everyone (§7.2.3, status 100 in the entering
occupant's own presence). That only says what the group shows anyway: an MLS
member's credential names its identity, and every delivery carries its sender.

On entry (§7.2.3), the new occupant receives the presence of every occupant already
in the room -- the XMPP occupants and the *guests* (below) -- then its own presence with
status 110 (self), 100 (non-anonymous), 170 (the room is archived: relay mode, where
the component serves XEP-0313) and 201 when its entry created the room (§10.1); every
other occupant receives the new occupant's presence. The history notice and the
subject follow (:class:`transports.xmpp.roominfo.RoomInfo.greet`, the subject last:
§7.2.15). A departure (§7.14), a kick (§8.2, 307), a ban (§9.1, 301) or a membership
taken away (§9.4, 321) is an ``unavailable`` presence to the occupant (with 110) and to
everyone else; a nickname change (§7.6) is the ``unavailable`` presence with 303 and
the new nick, then the presence under the new nick.

*Guests* are people in the room who are not XMPP occupants: in a relayed room the
users of the other network whom the bridge relays (:mod:`bridge.relay`), shown under
the name the relay re-emits their messages with (``@bob:example.org (relayed)``, a name
no occupant can take: :mod:`transports.xmpp.nicks`). They have no XMPP JID, so their
item has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from xml.etree import ElementTree as ET

from slixmpp import JID

from transports.xmpp import namespace as ns
from transports.xmpp.rooms import ADMIN, NONE, OWNER, Affiliations

SELF, NON_ANONYMOUS, ARCHIVED, CREATED, NEW_NICK = "110", "100", "170", "201", "303"


class OccupantPresence:
    """Sends the presences of the component's rooms (see the module docstring)."""

    def __init__(self, xmpp: Any, rooms: Affiliations,
                 occupants: Callable[[str], Mapping[str, str]],
                 archived: Callable[[str], bool]) -> None:
        self.xmpp = xmpp
        self.rooms = rooms
        self.occupants = occupants  # room -> {full JID: nick}
        self.archived = archived  # room -> whether it is archived (XEP-0313 served)
        self.guests: dict[str, dict[str, str]] = {}  # room -> nick -> identity URI

    def _send(self, room: str, nick: str, to: str, *, jid: str, ptype: str = "",
              codes: Iterable[str] = (), new_nick: str = "") -> None:
        affiliation = self.rooms.of(room, ns.URI_SCHEME + JID(jid).bare) if jid else NONE
        presence = self.xmpp.make_presence(pto=to, pfrom=f"{room}/{nick}",
                                           ptype=ptype or None)
        muc_user = ET.SubElement(presence.xml, f"{{{ns.NS_MUC_USER}}}x")
        role = "none" if ptype == "unavailable" else \
            "moderator" if affiliation in (OWNER, ADMIN) else "participant"
        item = {"affiliation": affiliation, "role": role}
        if jid:
            item["jid"] = jid
        if new_nick:
            item["nick"] = new_nick
        ET.SubElement(muc_user, f"{{{ns.NS_MUC_USER}}}item", item)
        for code in codes:
            ET.SubElement(muc_user, f"{{{ns.NS_MUC_USER}}}status", {"code": code})
        presence.send()

    def _others(self, room: str, occupant: str) -> list[str]:
        return [other for other in self.occupants(room) if other != occupant]

    def entered(self, room: str, occupant: str, nick: str, created: bool) -> None:
        """A new occupant: everyone present to it, its own presence, it to everyone."""
        members = self.occupants(room)
        for other in self._others(room, occupant):
            self._send(room, members[other], occupant, jid=other)
        for guest in sorted(self.guests.get(room, {})):
            self._send(room, guest, occupant, jid="")
        self.again(room, occupant, nick, created=created)

    def again(self, room: str, occupant: str, nick: str, created: bool = False) -> None:
        """An occupant's presence to itself (with its status codes) and to the others
        (on entry, and when it sends presence again)."""
        codes = [SELF, NON_ANONYMOUS]
        if self.archived(room):
            codes.append(ARCHIVED)
        if created:
            codes.append(CREATED)
        self._send(room, nick, occupant, jid=occupant, codes=codes)
        for other in self._others(room, occupant):
            self._send(room, nick, other, jid=occupant)

    def renamed(self, room: str, occupant: str, old: str, new: str) -> None:
        """§7.6: the old nick leaves with 303 and the new one; the new one enters."""
        self._send(room, old, occupant, jid=occupant, ptype="unavailable",
                   codes=(SELF, NEW_NICK), new_nick=new)
        for other in self._others(room, occupant):
            self._send(room, old, other, jid=occupant, ptype="unavailable",
                       codes=(NEW_NICK,), new_nick=new)
        self.again(room, occupant, new)

    def left(self, room: str, occupant: str, nick: str, codes: Iterable[str] = ()) -> None:
        """``occupant`` (already out of the room's occupants) is gone: it hears so with
        110, everyone else without; ``codes`` say why (307, 301, 321)."""
        codes = tuple(codes)
        self._send(room, nick, occupant, jid=occupant, ptype="unavailable",
                   codes=(SELF, *codes))
        for other in self.occupants(room):
            self._send(room, nick, other, jid=occupant, ptype="unavailable", codes=codes)

    def set_guests(self, room: str, guests: Mapping[str, str]) -> None:
        """The room's guests are now ``guests`` (nick -> identity URI): the occupants see
        those who came and those who went."""
        room = JID(room).bare
        before = self.guests.get(room, {})
        if guests:
            self.guests[room] = dict(guests)
        else:
            self.guests.pop(room, None)
        for occupant in list(self.occupants(room)):
            for gone in sorted(set(before) - set(guests)):
                self._send(room, gone, occupant, jid="", ptype="unavailable")
            for came in sorted(set(guests) - set(before)):
                self._send(room, came, occupant, jid="")


__all__ = ["ARCHIVED", "CREATED", "NEW_NICK", "NON_ANONYMOUS", "SELF", "OccupantPresence"]
