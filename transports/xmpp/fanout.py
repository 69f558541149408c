"""The component's fan-out: the hub's deliveries as stanzas (its
:class:`transports.interface.Deliverer` half, behind :meth:`MLSComponent.deliver`).

* A log entry of a group with a room on this component goes to each of the room's
  occupants that is a recipient, as ``groupchat`` from ``room/nick`` of its sender, with
  a stanza id (XEP-0359, ``origin-id`` the request's) and a store hint (XEP-0334).
* A group with no room here (a group living in a Matrix room, say): each XMPP
  recipient gets the entry at its bare JID, as a ``normal`` message from the component.
* A Welcome goes to the joiner's bare JID (``normal``, store hint) and is remembered by
  :class:`transports.xmpp.welcomes.HeldWelcomes` in case it bounces.

Payloads over the stanza limit go through XEP-0363 (:func:`transports.xmpp.upload.placements`).
Welcomes name no rooms (the hub leaves them out), so the rooms of each group are kept from
its fan-out, in the component's state store, across restarts: a Welcome then tells the
joiner its room.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree as ET

from slixmpp import JID

from transports.interface import Kind, Outbound
from transports.xmpp import namespace as ns
from transports.xmpp.errors import XmppLinkError
from transports.xmpp.stanzas import blobs_of, encode_delivery
from transports.xmpp.upload import Uploader, placements
from transports.xmpp.welcomes import HeldWelcomes, StateStore

log = logging.getLogger(__name__)

GROUP_ROOMS_KEY = "xmpp-group-rooms"

Rooms = tuple[tuple[str, str], ...]  # (transport, room) pairs, as Outbound.rooms has them


class FanOut:
    """Deliveries to occupants, recipients and joiners (see the module docstring)."""

    def __init__(
        self, xmpp: Any, jid: str, uploader: Uploader, stanza_limit: int,
        occupants: Callable[[str], dict[str, str]], welcomes: HeldWelcomes,
        state: StateStore | None,
    ) -> None:
        self._xmpp = xmpp  # the slixmpp ComponentXMPP
        self._jid = jid
        self._uploader = uploader
        self._stanza_limit = stanza_limit
        self._occupants = occupants  # room JID -> occupant full JID -> nick
        self._welcomes = welcomes
        self._state = state
        self._group_rooms: dict[bytes, Rooms] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read the groups' rooms saved before a restart."""
        if self._state is None:
            return
        saved = await self._state.load(GROUP_ROOMS_KEY)
        if saved:
            self._group_rooms = {
                base64.b64decode(group): tuple((t, r) for t, r in rooms)
                for group, rooms in json.loads(saved).items()
            }

    def rooms(self) -> set[str]:
        """The rooms of this component that some group's fan-out named."""
        return {room for rooms in self._group_rooms.values()
                for transport, room in rooms if transport == ns.TRANSPORT_NAME}

    async def deliver(self, message: Outbound) -> None:
        """Send a delivery to its recipients (groupchat per occupant, or a Welcome)."""
        async with self._lock:
            if message.rooms:
                if self._group_rooms.get(message.group_id) != message.rooms:
                    self._group_rooms[message.group_id] = message.rooms
                    await self._save()
            elif message.group_id in self._group_rooms:  # Welcomes carry no rooms
                message = dataclasses.replace(message, rooms=self._group_rooms[message.group_id])
            try:
                place = await placements(self._uploader, list(blobs_of(message)),
                                         self._stanza_limit)
            except XmppLinkError as exc:
                log.error("cannot deliver seq %d: %s (members will see a gap)", message.seq, exc)
                return
            if message.kind == Kind.WELCOME:
                self._send_welcome(message, encode_delivery(message, place))
            else:
                self._fan_out(message, encode_delivery(message, place))

    async def _save(self) -> None:
        if self._state is not None:
            data = {base64.b64encode(group).decode("ascii"): [list(room) for room in rooms]
                    for group, rooms in self._group_rooms.items()}
            await self._state.save(GROUP_ROOMS_KEY, json.dumps(data, sort_keys=True))

    def _send_welcome(self, message: Outbound, payload: ET.Element) -> None:
        rooms = [room for transport, room in message.rooms if transport == ns.TRANSPORT_NAME]
        sender = rooms[0] if rooms else self._jid
        for recipient in message.recipients:
            if not recipient.startswith(ns.URI_SCHEME):
                continue
            bare = recipient.removeprefix(ns.URI_SCHEME)
            stanza = self._xmpp.make_message(mto=bare, mfrom=sender, mtype="normal")
            stanza["id"] = f"welcome-{_short(message.group_id)}-{message.seq}-{bare}"
            stanza.xml.append(_copy(payload))
            ET.SubElement(stanza.xml, f"{{{ns.NS_HINTS}}}store")
            self._welcomes.sent(stanza["id"], bare, str(stanza))
            stanza.send()

    def _fan_out(self, message: Outbound, payload: ET.Element) -> None:
        recipients = {r.removeprefix(ns.URI_SCHEME) for r in message.recipients
                      if r.startswith(ns.URI_SCHEME)}
        sender_bare = message.sender.removeprefix(ns.URI_SCHEME)
        stanza_id = f"{_short(message.group_id)}-{message.seq}"
        if not any(transport == ns.TRANSPORT_NAME for transport, _ in message.rooms):
            self._send_direct(payload, sorted(recipients), stanza_id)
            return
        for transport, room in message.rooms:
            if transport != ns.TRANSPORT_NAME:
                continue
            members = self._occupants(room)
            nick = next((n for o, n in members.items() if JID(o).bare == sender_bare), "")
            sent_from = f"{room}/{nick}" if nick else room
            for occupant in list(members):
                if JID(occupant).bare not in recipients:
                    continue
                stanza = self._xmpp.make_message(mto=occupant, mfrom=sent_from,
                                                 mtype="groupchat")
                stanza["id"] = stanza_id
                stanza.xml.append(_copy(payload))
                ET.SubElement(stanza.xml, f"{{{ns.NS_SID}}}stanza-id",
                              {"id": stanza_id, "by": room})
                if message.request_id:
                    ET.SubElement(stanza.xml, f"{{{ns.NS_SID}}}origin-id",
                                  {"id": message.request_id})
                ET.SubElement(stanza.xml, f"{{{ns.NS_HINTS}}}store")
                stanza.send()

    def _send_direct(self, payload: ET.Element, recipients: list[str], stanza_id: str) -> None:
        """A group with no room here (it lives in another network's room): each XMPP
        recipient gets the entry at its bare JID."""
        for bare in recipients:
            stanza = self._xmpp.make_message(mto=bare, mfrom=self._jid, mtype="normal")
            stanza["id"] = stanza_id
            stanza.xml.append(_copy(payload))
            ET.SubElement(stanza.xml, f"{{{ns.NS_HINTS}}}store")
            stanza.send()


def _copy(element: ET.Element) -> ET.Element:
    return ET.fromstring(ET.tostring(element))


def _short(group_id: bytes) -> str:
    return base64.urlsafe_b64encode(group_id[:12]).decode("ascii").rstrip("=")


__all__ = ["GROUP_ROOMS_KEY", "FanOut"]
