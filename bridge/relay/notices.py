"""What the relay tells people, on both networks, and when.

Relay mode changes who can read a group -- the bridge decrypts for the legacy users --
so everyone in a relayed room is told, MLS members included, not only the legacy users:

* when relay mode is turned on for a room pair (the first time, and again whenever it
  is turned back on) and when it is turned off: a visible notice to everyone in the
  XMPP room (:meth:`transports.xmpp.roominfo.RoomInfo.announce`, with the room subject)
  and an ``m.notice`` in the Matrix room carrying ``im.mlsbridge.relay``;
  each change is recorded in the hub store's cursors (``relay:mode:<group>`` =
  ``on:<n>`` or ``off:<n>``, the n-th change: public metadata), so a restart neither
  repeats nor misses it;
* whoever enters the relayed XMPP room later gets the subject and the notice from the
  component (:meth:`transports.xmpp.roominfo.RoomInfo.greet`); the Matrix notice stays
  in the room's timeline, and the ``m.bridge`` state says ``relay`` and
  ``end_to_end`` (published by :mod:`bridge.app.services.bridge`); the XMPP room's
  disco#info has the ``urn:mlsbridge:0#relay`` feature and says so in its name and its
  ``muc#roominfo`` form;
* a user who runs an MLS client is not puppeted: :meth:`Notices.how_to_join` tells
  them (once per group) to have a member add them.

Members' own clients also see it in the group itself: every puppet's leaf names a
``relay+`` identity (:func:`bridge.identities.is_relayed`;
:meth:`bridge.member.Member.relayed`).
"""

from __future__ import annotations

import hashlib
import logging

from bridge.hub.store import Store
from bridge.identities import display
from transports.matrix import namespace as matrix_ns
from transports.matrix.bot import MatrixHubBot
from transports.matrix.errors import MatrixTransportError
from transports.xmpp.component import MLSComponent

log = logging.getLogger(__name__)

NOTICE = ("This room is bridged in relay mode: the bridge decrypts the group's messages "
          "for people without an MLS client and encrypts theirs, so end-to-end "
          "encryption ends at the bridge.")
OFF_NOTICE = ("Relay mode is off: the bridge no longer decrypts this group's messages; "
              "its relayed members leave the group and encryption is end to end again.")
HOW_TO_JOIN = ("{user}: you run an MLS client, so the bridge does not relay for you. Ask a "
               "member of the group to add you (your client has published KeyPackages), "
               "or join with your client if the room lets you.")
MODE_CURSOR = "relay:mode:"  # + group id hex: "on" | "off", the last change announced
ON, OFF = "on", "off"


class Notices:
    """The relay's notices (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.component: MLSComponent | None = None
        self.bot: MatrixHubBot | None = None
        self._told: set[tuple[bytes, str]] = set()  # (group, identity) told how to join

    async def was_on(self, group_id: bytes) -> bool:
        """Whether relay mode was last announced as on for ``group_id``."""
        saved = await self.store.get_cursor(MODE_CURSOR + group_id.hex()) or ""
        return saved.partition(":")[0] == ON

    async def mode(self, group_id: bytes, xmpp_room: str, matrix_room: str, on: bool) -> None:
        """Relay mode is ``on`` (or off) for the pair: say so in both rooms unless it
        was announced already."""
        if self.component is not None:
            if on:
                self.component.info.relay(xmpp_room, NOTICE)
            else:
                self.component.info.end_relay(xmpp_room)
        name, state = MODE_CURSOR + group_id.hex(), ON if on else OFF
        saved, _, count = (await self.store.get_cursor(name) or "").partition(":")
        if saved == state or (saved == "" and not on):
            return  # announced already, or never on: nothing to say
        changes = int(count or 0) + 1
        text = NOTICE if on else OFF_NOTICE
        if self.component is not None:
            self.component.info.announce(xmpp_room, text)
        if self.bot is not None:
            content = {"msgtype": "m.notice", "body": text,
                       matrix_ns.RELAY_KEY: {"relay": on, "end_to_end": not on}}
            try:
                await self.bot.send_message(matrix_room, content,
                                            txn(b"notice", group_id, matrix_room, changes))
            except MatrixTransportError as exc:
                log.warning("relay notice in %s not sent: %s", matrix_room, exc)
                return  # announced again at the next start
        await self.store.set_cursor(name, f"{state}:{changes}")

    async def how_to_join(self, group_id: bytes, identity: str, room: str,
                          occupant: str = "") -> None:
        """Tell a user with an MLS client why they get no puppet (once per group):
        on XMPP to their occupant only, on Matrix in the room."""
        if (group_id, identity) in self._told:
            return
        self._told.add((group_id, identity))
        text = HOW_TO_JOIN.format(user=display(identity))
        if occupant and self.component is not None:
            self.component.info.send_plain(room, [occupant], text)
        elif not occupant and self.bot is not None:
            try:
                await self.bot.send_message(room, {"msgtype": "m.notice", "body": text},
                                            txn(b"how-to-join|" + identity.encode(),
                                                group_id, room))
            except MatrixTransportError as exc:
                log.warning("relay: could not tell a user in %s how to join: %s", room, exc)


def txn(kind: bytes, group_id: bytes, room_id: str, seq: int = 0) -> str:
    """A deterministic Matrix transaction id (a resend after a restart is deduplicated)."""
    return hashlib.sha256(b"%s|%s|%s|%d" % (kind, group_id, room_id.encode(), seq)
                          ).hexdigest()[:32]


__all__ = ["HOW_TO_JOIN", "MODE_CURSOR", "NOTICE", "OFF_NOTICE", "Notices", "txn"]
