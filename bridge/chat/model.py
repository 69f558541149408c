"""What a person sees of one room, built from decrypted messages: the timeline.

Pure logic, no I/O: :class:`Timeline` folds :class:`Record` s (one per application
message, in log order) into :class:`Message` s -- edits replace a message's text and
mark it edited, retractions blank it, reactions are aggregated per emoji, replies keep
the id of the message they quote, files keep their :class:`ExternalPart`. Only a
message's own sender may edit or retract it (and take back their own reaction).
Membership and connection notices are :class:`Notice` items in the same list.
Messages are numbered 1, 2, 3... per room: the numbers the commands take
(``/reply 3 ...``).

:class:`Record` is also what the client keeps on disk (:func:`encode_record`), so a
restart rebuilds the same timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cbor2

from bridge.chat.membership import short
from bridge.errors import ContentError
from bridge.member.content import Attachment, Content, ExternalPart


@dataclass(frozen=True, slots=True)
class Record:
    """One application message as received (or sent): where it sits in the group's
    log, who sent it (the MLS credential's identity), when we got it, its content."""

    seq: int
    sender: str
    time: float
    content: Content


def encode_record(record: Record) -> bytes:
    return cbor2.dumps({0: record.seq, 1: record.sender, 2: record.time,
                        3: record.content.encode()}, canonical=True)


def decode_record(data: bytes) -> Record:
    try:
        value: Any = cbor2.loads(data)
        return Record(int(value[0]), str(value[1]), float(value[2]),
                      Content.decode(bytes(value[3])))
    except (cbor2.CBORError, KeyError, TypeError, ValueError, ContentError) as exc:
        raise ContentError(f"unreadable history record ({type(exc).__name__})") from exc


@dataclass(eq=False)
class Message:
    """One message in the timeline (its current state after edits/retraction)."""

    number: int
    seq: int
    message_id: bytes
    sender: str
    time: float
    body: str | None = field(repr=False)
    reply_to: bytes | None = None
    file: ExternalPart | None = None
    attachment: Attachment | None = None
    edited: bool = False
    retracted: bool = False
    reactions: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notice:
    """A line from the client itself: membership changes, joins, warnings."""

    time: float
    text: str


Item = Message | Notice


class Timeline:
    """One room's messages and notices (see the module docstring)."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.messages: list[Message] = []
        self._by_id: dict[bytes, Message] = {}
        self._reactions: dict[bytes, tuple[bytes, str, str]] = {}  # id -> target, emoji, who
        self.last_seq = 0

    def message(self, number: int) -> Message | None:
        """Message number ``number`` (1-based), or None."""
        if 1 <= number <= len(self.messages):
            return self.messages[number - 1]
        return None

    def by_id(self, message_id: bytes) -> Message | None:
        return self._by_id.get(message_id)

    def notice(self, time: float, text: str) -> Notice:
        item = Notice(time, text)
        self.items.append(item)
        return item

    def apply(self, record: Record) -> Message | None:
        """Fold one record in; the new message it created, if any."""
        self.last_seq = max(self.last_seq, record.seq)
        content = record.content
        if content.reaction is not None:
            self._react(record, content)
            return None
        retracted = content.retracts
        if retracted is not None:
            self._retract(record.sender, retracted)
            return None
        if content.replaces is not None:
            target = self._by_id.get(content.replaces)
            if target is not None and target.sender == record.sender and not target.retracted:
                target.body, target.edited = content.body, True
            return None
        if content.message_id in self._by_id:
            return None  # a duplicate
        message = Message(len(self.messages) + 1, record.seq, content.message_id,
                          record.sender, record.time, content.body, content.reply_to,
                          content.file, content.attachment)
        self.messages.append(message)
        self.items.append(message)
        self._by_id[content.message_id] = message
        return message

    def _react(self, record: Record, content: Content) -> None:
        assert content.reply_to is not None and content.reaction is not None
        target = self._by_id.get(content.reply_to)
        if target is None or target.retracted:
            return
        target.reactions.setdefault(content.reaction, set()).add(record.sender)
        self._reactions[content.message_id] = (content.reply_to, content.reaction,
                                               record.sender)

    def _retract(self, sender: str, message_id: bytes) -> None:
        reaction = self._reactions.get(message_id)
        if reaction is not None:
            target_id, emoji, who = reaction
            target = self._by_id.get(target_id)
            if who == sender and target is not None:
                senders = target.reactions.get(emoji, set())
                senders.discard(sender)
                if not senders:
                    target.reactions.pop(emoji, None)
                del self._reactions[message_id]
            return
        target = self._by_id.get(message_id)
        if target is not None and target.sender == sender:
            target.retracted, target.body, target.file = True, None, None
            target.attachment = None
            target.reactions.clear()

    def own_reaction(self, target_id: bytes, emoji: str, me: str) -> bytes | None:
        """The id of our reaction ``emoji`` to ``target_id``, if we reacted so."""
        return next((rid for rid, (t, e, who) in self._reactions.items()
                     if (t, e, who) == (target_id, emoji, me)), None)

    def unread(self, read_seq: int, me: str) -> int:
        """Messages from others after ``read_seq``."""
        return sum(1 for m in self.messages if m.seq > read_seq and m.sender != me)


def render(item: Message | Notice, timeline: Timeline, me: str) -> list[str]:
    """The lines of one timeline item, as plain text."""
    when = time.strftime("%H:%M", time.localtime(item.time))
    if isinstance(item, Notice):
        return [f"-- {when} {item.text}"]
    who = "you" if item.sender == me else short(item.sender)
    lines = []
    if item.reply_to is not None:
        quoted = timeline.by_id(item.reply_to)
        if quoted is not None:
            text = "(retracted)" if quoted.retracted else (quoted.body or _file(quoted))
            lines.append(f"     ↱ [{quoted.number}] {short(quoted.sender)}: {text[:60]}")
    if item.retracted:
        body = "(retracted)"
    elif item.file is not None or item.attachment is not None:
        body = f"{_file(item)}  (/save {item.number})"
    else:
        body = item.body or ""
    edited = " (edited)" if item.edited else ""
    lines.append(f"[{item.number}] {when} {who}: {body}{edited}")
    if item.reactions:
        lines.append("     " + "  ".join(f"{emoji} {len(people)}" for emoji, people
                                          in sorted(item.reactions.items())))
    return lines


def _file(message: Message) -> str:
    if message.file is not None:
        return (f"[file] {message.file.name} ({message.file.size} bytes, "
                f"{message.file.media_type}, end-to-end encrypted)")
    if message.attachment is not None:
        return f"[file] {message.attachment.media_type}, {message.attachment.size} bytes"
    return ""
