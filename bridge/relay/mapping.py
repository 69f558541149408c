"""Edits, replies, retractions, reactions and files between the networks and the group,
through the content format (:mod:`bridge.member.content`).

=======================  =================================  =================================
content                  XMPP (``transports.xmpp.markup``)  Matrix
=======================  =================================  =================================
``replaces`` + body      XEP-0308 ``<replace id/>``         ``m.replace``, ``m.new_content``
``reply_to`` + body      XEP-0461 ``<reply id/>``           ``m.in_reply_to``
retraction               XEP-0424 ``<retract id/>``         ``m.room.redaction``
``reaction``             XEP-0444 ``<reactions/>`` (set)    ``m.reaction`` annotation
``file`` (ExternalPart)  in: XEP-0066 OOB URL as the        ``m.image``, ``m.file``,
                         body, or XEP-0447 ``<url-data/>``  ``m.video``, ``m.audio``: ``url``
                         out: OOB URL of an XEP-0363        or ``file`` (an EncryptedFile)
                         upload of the plaintext
=======================  =================================  =================================

Files are carried by :mod:`bridge.relay.files` (downloads, limits, uploads; a file over
the limit becomes a text notice). Both directions of every row between the two networks
are tested over the real servers (``tests/bridging/test_relay_mapping.py``,
``test_relay_files.py``, ``test_relay_files_megolm.py``), and an MLS member's file
reaching both.

Content names messages by their content message id; the networks by theirs (an XMPP
stanza id, a Matrix event id). :class:`Mapper` keeps the map between them in the
relay's secrets file (:meth:`bridge.relay.secrets_file.PuppetSecrets.add_message_id`,
bounded), and the reactions it has seen (there too, bounded, so they survive a
restart: :meth:`~bridge.relay.secrets_file.PuppetSecrets.add_reaction`): XEP-0444
sends a user's whole set of reactions to a message, the content format one reaction
per message.

A legacy user may correct or retract only their own messages (a target written by
someone else is ignored); anyone may reply or react. An XMPP user's own message ids are
scoped to that user (``owner``): another occupant cannot take over an id the relay
assigned, nor one someone else used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.member import Content, new_message_id
from bridge.relay.files import FILE_MSGTYPES, Files, LegacyFile, legacy_file
from bridge.relay.secrets_file import PuppetSecrets


@dataclass(frozen=True, slots=True)
class Legacy:
    """What a legacy user sent, in its network's terms (see the module docstring)."""

    net_id: str
    body: str = field(default="", repr=False)
    replaces: str = ""
    reply_to: str = ""
    retracts: str = ""
    reacts_to: str = ""
    reactions: tuple[str, ...] = ()
    whole_set: bool = False  # XEP-0444: ``reactions`` is the sender's whole set
    file: LegacyFile | None = None  # a shared file (:mod:`bridge.relay.files`)


def from_matrix(event_id: str, event_type: str, content: Mapping[str, Any]) -> Legacy | None:
    """A plain Matrix event as :class:`Legacy` (None: nothing the group carries)."""
    relates = content.get("m.relates_to")
    relates = relates if isinstance(relates, Mapping) else {}
    target = relates.get("event_id") if isinstance(relates.get("event_id"), str) else ""
    if event_type == "m.room.redaction":
        redacts = content.get("redacts")
        return Legacy(event_id, retracts=redacts) if isinstance(redacts, str) else None
    if event_type == "m.reaction":
        key = relates.get("key")
        if relates.get("rel_type") != "m.annotation" or not target \
                or not isinstance(key, str):
            return None
        return Legacy(event_id, reacts_to=target, reactions=(key,))
    body = content.get("body")
    if content.get("msgtype") in FILE_MSGTYPES and relates.get("rel_type") != "m.replace":
        return _matrix_file(event_id, content)
    if relates.get("rel_type") == "m.replace":
        new = content.get("m.new_content")
        body = new.get("body") if isinstance(new, Mapping) else None
        return Legacy(event_id, body, replaces=target) if isinstance(body, str) \
            and target else None
    if not isinstance(body, str) or not body:
        return None
    reply = relates.get("m.in_reply_to")
    reply_to = reply.get("event_id") if isinstance(reply, Mapping) else None
    if isinstance(reply_to, str) and reply_to:
        return Legacy(event_id, _strip_fallback(body), reply_to=reply_to)
    return Legacy(event_id, body)


def _matrix_file(event_id: str, content: Mapping[str, Any]) -> Legacy | None:
    """An ``m.image``/``m.file``/``m.video``/``m.audio``: ``url`` (``mxc://``) in a
    plain room, ``file`` (an ``EncryptedFile``) in an encrypted one; ``filename`` (else
    ``body``) names it, ``info`` gives its media type and size (client-server API,
    "m.room.message msgtypes", "Sending encrypted attachments")."""
    encrypted = content.get("file")
    encrypted = encrypted if isinstance(encrypted, Mapping) else None
    url = (encrypted or content).get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    name = content.get("filename") or content.get("body")
    kind, size = info.get("mimetype"), info.get("size")
    return Legacy(event_id, file=legacy_file(
        url, name if isinstance(name, str) else "", kind if isinstance(kind, str) else "",
        size if type(size) is int else 0, encrypted=encrypted))


def _strip_fallback(body: str) -> str:
    """A Matrix reply's body without its quoted fallback (``> `` lines and a blank)."""
    lines = body.split("\n")
    if not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines).lstrip("\n") or body


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction the relay saw: to which message, by whom, which emoji."""

    group_id: bytes
    target: bytes
    author: str
    emoji: str


class Mapper:
    """The id map and the reactions seen (see the module docstring)."""

    def __init__(self, files: Files | None = None) -> None:
        self.secrets: PuppetSecrets | None = None
        self.files = files or Files()

    # -- the map -------------------------------------------------------------------------

    async def remember(self, network: str, room: str, net_id: str, group_id: bytes,
                       content: Content, author: str, owner: str = "") -> None:
        if self.secrets is not None and net_id:
            await self.secrets.add_message_id(network, room, owner, net_id, group_id,
                                              content.message_id, author)

    async def net_id(self, group_id: bytes, message_id: bytes | None, network: str,
                     room: str) -> str:
        """The id the room knows the group's message by ("" if unknown)."""
        if self.secrets is None or message_id is None:
            return ""
        return await self.secrets.net_id_for(group_id, message_id, network, room) or ""

    async def _target(self, network: str, room: str, owner: str, net_id: str,
                      group_id: bytes) -> tuple[bytes, str] | None:
        if self.secrets is None or not net_id:
            return None
        for scope in (owner, "") if owner else ("",):
            found = await self.secrets.message_for(network, room, scope, net_id)
            if found is not None and found[0] == group_id:
                return found[1], found[2]
        return None

    # -- legacy input into content ----------------------------------------------------------

    async def contents(self, network: str, room: str, owner: str, author: str,
                       group_id: bytes, event: Legacy) -> list[Content]:
        """What the legacy user ``author`` (its puppet's identity) sent, as the contents
        to encrypt into the group (none: nothing mappable or not theirs to change)."""
        async def target(net_id: str) -> tuple[bytes, str] | None:
            return await self._target(network, room, owner, net_id, group_id)

        if event.file is not None:
            carried = await self.files.content(network, event.file)
            return [] if carried is None else [carried]
        if event.reacts_to:
            found = await target(event.reacts_to)
            return [] if found is None \
                else await self._reacted(group_id, found[0], author, event)
        if event.replaces or event.retracts:
            found = await target(event.replaces or event.retracts)
            if found is None or found[1] != author:
                return []
            if event.retracts:
                return [Content(new_message_id(), replaces=found[0])]
            return [Content(new_message_id(), event.body, replaces=found[0])] \
                if event.body else []
        if not event.body:
            return []
        replied = await target(event.reply_to) if event.reply_to else None
        return [Content(new_message_id(), event.body,
                        reply_to=None if replied is None else replied[0])]

    async def _reacted(self, group_id: bytes, target: bytes, author: str,
                       event: Legacy) -> list[Content]:
        """Reactions as contents: each new emoji a reaction; with XEP-0444's whole set,
        each emoji no longer in it a retraction of that reaction."""
        had = {emoji: mid for mid, emoji in await self._reactions_to(group_id, target,
                                                                      author)}
        out = [Content(new_message_id(), reply_to=target, reaction=emoji)
               for emoji in event.reactions if emoji not in had]
        if event.whole_set:
            out += [Content(new_message_id(), replaces=mid) for emoji, mid in had.items()
                    if emoji not in event.reactions]
        return out

    # -- reactions seen ----------------------------------------------------------------------

    async def note(self, group_id: bytes, content: Content, author: str) -> Reaction | None:
        """Follow a reaction or its retraction; the reaction retracted, if any."""
        if self.secrets is None:
            return None
        if content.reaction is not None and content.reply_to is not None:
            await self.secrets.add_reaction(content.message_id, group_id, content.reply_to,
                                            author, content.reaction)
            return None
        retracted = content.retracts
        if retracted is not None:
            taken = await self.secrets.take_reaction(retracted, author)
            if taken is not None:
                return Reaction(taken[0], taken[1], author, taken[2])
        return None

    async def _reactions_to(self, group_id: bytes, target: bytes, author: str
                            ) -> list[tuple[bytes, str]]:
        if self.secrets is None:
            return []
        return await self.secrets.reactions_to(group_id, target, author)

    async def emoji_of(self, group_id: bytes, target: bytes, author: str) -> list[str]:
        """``author``'s reactions to ``target`` now (XEP-0444's whole set)."""
        return [emoji for _, emoji in await self._reactions_to(group_id, target, author)]


__all__ = ["Legacy", "Mapper", "Reaction", "from_matrix"]
