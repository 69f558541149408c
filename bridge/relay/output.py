"""What the relay shows in the rooms: one group message (decrypted by a puppet, or a
legacy user's own) re-emitted into the legacy side of each network.

* Matrix. With an application service, an XMPP sender (an MLS member or a relayed
  legacy user) appears as its own *ghost* in the registration's user namespace
  (:class:`transports.matrix.appservice.Ghosts`: "alice@example.org (relayed)",
  "xa@example.org (MLS)") and posts as itself; a Matrix MLS member's message (its own
  account cannot post for it) comes from the bot as ``<@bob:example.org> text``. As a
  plain bot account (no application service), every message comes from the bot so
  prefixed. A Matrix legacy user's own message is already in the room.
* XMPP: a plain ``groupchat`` message to each legacy occupant (the author excepted)
  under a name no occupant can take (``xa@example.org (MLS)``,
  ``@bob:example.org (relayed)``: :meth:`bridge.relay.relay.Relay.reserved`).

Edits, replies, retractions and reactions are mapped on the way
(:mod:`bridge.relay.mapping`); the ids each room knows a message by are remembered.
Plain messages (a body, not an edit, reaction or retraction) re-emitted into an XMPP
room are also archived for XEP-0313 (:meth:`Output.record`, :mod:`bridge.relay.archive`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.identities import display, is_relayed, relayed_user
from bridge.member import Content
from bridge.relay.archive import RelayArchive, stanza_id
from bridge.relay.mapping import Mapper, Reaction
from bridge.relay.notices import txn
from bridge.relay.observers import MATRIX, XMPP
from transports.interface import network_of
from transports.matrix import events as matrix_events
from transports.matrix import namespace as matrix_ns
from transports.matrix.appservice import Ghosts
from transports.matrix.bot import MatrixHubBot
from transports.xmpp.component import MLSComponent
from transports.xmpp.markup import elements

MLS_MARK = " (MLS)"  # how MLS members' re-emitted messages are marked on XMPP and Matrix


@dataclass(frozen=True, slots=True)
class Rooms:
    xmpp_room: str
    matrix_room: str


@dataclass(frozen=True, slots=True)
class Emission:
    """A group message to re-emit into a group's relayed rooms (never logged)."""

    group_id: bytes
    seq: int
    sender: str
    content: Content = field(repr=False)
    origin: str = ""  # the network the content was written on, if a legacy user wrote it
    author_occupant: str = ""  # the XMPP occupant who wrote it (not echoed to them)


class Output:
    """Re-emits :class:`Emission` s (see the module docstring). ``legacy(occupant)``
    says whether an XMPP occupant is a relayed legacy user (who may read)."""

    def __init__(self, mapper: Mapper, legacy: Callable[[str], bool],
                 archive: RelayArchive | None = None) -> None:
        self.mapper = mapper
        self.legacy = legacy
        self.archive = archive  # XEP-0313: what was re-emitted into the XMPP rooms
        self.component: MLSComponent | None = None
        self.bot: MatrixHubBot | None = None
        self.ghosts: Ghosts | None = None

    async def emit(self, rooms: Rooms, emission: Emission) -> None:
        """Matrix first: a resend after a restart has the same transaction id and is
        dropped by the homeserver. XMPP has no acknowledgement; the stanzas are flushed
        before the caller persists the re-emit cursor, and a resend carries the same
        XEP-0359 stanza-id (clients drop the repeat)."""
        retracted = await self.mapper.note(emission.group_id, emission.content,
                                           emission.sender)
        if self.bot is not None and emission.origin != MATRIX:
            await self._matrix(rooms.matrix_room, emission)
        if self.component is not None and await self._xmpp(rooms.xmpp_room, emission,
                                                           retracted):
            await self.component.flush()

    # -- Matrix ---------------------------------------------------------------------------

    def ghost(self, sender: str) -> tuple[str, str] | None:
        """(ghost user id, display name) of an XMPP sender, with an application
        service; None: the bot posts."""
        person = relayed_user(sender) or sender
        if self.ghosts is None or network_of(person) != XMPP:
            return None
        name = display(sender) if is_relayed(sender) else display(sender) + MLS_MARK
        return self.ghosts.user_id(XMPP, display(person)), name

    async def _matrix(self, room: str, emission: Emission) -> None:
        ghost = self.ghost(emission.sender)
        content, txn_id = emission.content, txn(b"relay", emission.group_id, room,
                                                emission.seq)
        if content.retracts is not None:
            target = await self.mapper.net_id(emission.group_id, content.retracts, MATRIX,
                                              room)
            if target:
                await self._redact(ghost, room, target, txn_id)
            return
        made = await self._matrix_event(room, emission, ghost is None)
        if made is None:
            return
        event_type, body = made
        if ghost is not None and self.ghosts is not None:
            await self.ghosts.ensure(ghost[0], ghost[1], room)
            event_id = await self.ghosts.send(ghost[0], room, event_type, body, txn_id)
        else:
            assert self.bot is not None
            event_id = await self.bot.send_message(room, body, txn_id, event_type)
        await self.mapper.remember(MATRIX, room, event_id, emission.group_id, content,
                                   emission.sender)

    async def _redact(self, ghost: tuple[str, str] | None, room: str, event_id: str,
                      txn_id: str) -> None:
        if ghost is not None and self.ghosts is not None:
            await self.ghosts.redact(ghost[0], room, event_id, txn_id)
        elif self.bot is not None:
            await self.bot.redact(room, event_id, txn_id)

    async def _matrix_event(self, room: str, emission: Emission, prefixed: bool
                            ) -> tuple[str, dict[str, Any]] | None:
        """The Matrix event of a message, edit, reply or reaction (None: nothing)."""
        content = emission.content

        async def target(message_id: bytes | None) -> str:
            return await self.mapper.net_id(emission.group_id, message_id, MATRIX, room)

        if content.reaction is not None:
            reacted = await target(content.reply_to)
            return ("m.reaction", {"m.relates_to": {
                "rel_type": "m.annotation", "event_id": reacted, "key": content.reaction}}) \
                if reacted else None
        if content.file is not None:
            name = content.file.name
            shown = await self.mapper.files.matrix_event(
                room, content.file, f"<{display(emission.sender)}> {name}" if prefixed
                else name)
            if shown is None:
                return None
            replied = await target(content.reply_to)
            return matrix_ns.MESSAGE_EVENT, shown | {matrix_ns.RELAY_KEY: {
                "sender": emission.sender, "seq": emission.seq,
                "group_id": matrix_events.b64encode(emission.group_id)}} | (
                {"m.relates_to": {"m.in_reply_to": {"event_id": replied}}} if replied else {})
        if content.body is None:
            return None
        text = f"<{display(emission.sender)}> {content.body}" if prefixed else content.body
        event: dict[str, Any] = {"msgtype": "m.text", "body": text, matrix_ns.RELAY_KEY: {
            "sender": emission.sender, "seq": emission.seq,
            "group_id": matrix_events.b64encode(emission.group_id)}}
        edited = await target(content.replaces)
        replied = await target(content.reply_to)
        if edited:
            event |= {"body": "* " + text, "m.new_content": {"msgtype": "m.text", "body": text},
                      "m.relates_to": {"rel_type": "m.replace", "event_id": edited}}
        elif replied:
            event["m.relates_to"] = {"m.in_reply_to": {"event_id": replied}}
        return matrix_ns.MESSAGE_EVENT, event

    # -- XMPP -------------------------------------------------------------------------------

    async def _xmpp(self, room: str, emission: Emission, retracted: Reaction | None) -> bool:
        """Send to the room's legacy occupants; whether anything was sent."""
        assert self.component is not None
        sid = stanza_id(emission.group_id, emission.seq)
        await self.mapper.remember(XMPP, room, sid, emission.group_id,
                                   emission.content, emission.sender)
        occupants = self.component.occupants.get(room, {})
        readers = [occupant for occupant in occupants
                   if self.legacy(occupant) and occupant != emission.author_occupant]
        if not readers:
            return False
        made = await self._markup(room, emission, retracted)
        if made is None:
            return False
        self.component.info.send_plain(room, readers, made[0], self.nick(room, emission),
                                       sid, made[1])
        return True

    def nick(self, room: str, emission: Emission) -> str:
        """The nick ``emission`` is shown under in the XMPP ``room``."""
        occupants = self.component.occupants.get(room, {}) if self.component else {}
        return occupants.get(emission.author_occupant) or relayed_nick(emission.sender)

    async def record(self, rooms: Rooms, emission: Emission) -> None:
        """Archive a plain message re-emitted into the XMPP room (XEP-0313); edits,
        reactions and retractions are not archived (the archive keeps messages as first
        sent)."""
        content = emission.content
        if self.archive is None or content.body is None or content.replaces is not None \
                or content.reaction is not None or content.retracts is not None:
            return
        await self.archive.record(emission.group_id, emission.seq,
                                  self.nick(rooms.xmpp_room, emission), emission.sender,
                                  content.body)

    async def _markup(self, room: str, emission: Emission, retracted: Reaction | None
                      ) -> tuple[str, list[ET.Element]] | None:
        """(body, XEP elements) of a message, edit, reply, retraction or reaction."""
        content, group_id = emission.content, emission.group_id

        async def target(message_id: bytes | None) -> str:
            return await self.mapper.net_id(group_id, message_id, XMPP, room)

        async def reactions(reacted: str, message_id: bytes
                            ) -> tuple[str, list[ET.Element]]:
            now = await self.mapper.emoji_of(group_id, message_id, emission.sender)
            return "", elements(reacts_to=reacted, reactions=now)

        if retracted is not None:  # a reaction taken back: the reactor's set now
            reacted = await target(retracted.target)
            return await reactions(reacted, retracted.target) if reacted else None
        if content.retracts is not None:
            gone = await target(content.retracts)
            return ("", elements(retracts=gone)) if gone else None
        if content.reaction is not None and content.reply_to is not None:
            reacted = await target(content.reply_to)
            return await reactions(reacted, content.reply_to) if reacted else None
        if content.file is not None:
            shown = await self.mapper.files.xmpp_url(content.message_id, content.file)
            if shown is None:
                return None
            url, is_file = shown
            return url, elements(reply_to=await target(content.reply_to),
                                 url=url if is_file else "")
        if content.body is None:
            return None
        return content.body, elements(replaces=await target(content.replaces),
                                      reply_to=await target(content.reply_to))


def relayed_nick(sender: str) -> str:
    """The XMPP nickname a re-emitted sender appears under: marked, so no occupant can
    hold it (:meth:`bridge.relay.relay.Relay.reserved`)."""
    return display(sender) if is_relayed(sender) else display(sender) + MLS_MARK


__all__ = ["MLS_MARK", "Emission", "Output", "Rooms", "relayed_nick"]
