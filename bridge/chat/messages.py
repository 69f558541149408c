"""Sending in a room: text, replies, edits, retractions, reactions and files, as
:class:`bridge.member.content.Content` built by the member library's format; and saving
a received file on request. Each function records what it sent in the room's timeline
and history once the hub accepted it (our own messages do not come back to us).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from bridge.chat.client import ChatClient, CommandError, Room
from bridge.chat.model import Message, Record
from bridge.chat.session import SessionError
from bridge.errors import BridgeError, FileError
from bridge.member import Content, fetch_file, new_message_id, send_file
from mls.errors import MLSError
from transports.errors import LinkError


async def send(chat: ChatClient, room: Room, content: Content) -> None:
    """Encrypt and send ``content``; keep it in the timeline."""
    if not chat.member.group(room.group_id).active:
        raise CommandError(f"you are no longer a member of {room.name}")
    try:
        seq = await chat.member.send_content(room.group_id, content)
    except (BridgeError, LinkError, MLSError) as exc:
        raise CommandError(f"not sent: {exc}") from exc
    record = Record(seq, chat.me, chat.clock(), content)
    room.timeline.apply(record)
    room.read_seq = max(room.read_seq, seq)
    await chat.save_record(room, record)
    chat.on_change()


def target(room: Room, number: int, *, own: bool = False, me: str = "") -> Message:
    """Message ``number`` of the room (own: it must be ours)."""
    message = room.timeline.message(number)
    if message is None:
        raise CommandError(f"there is no message {number} in {room.name}")
    if message.retracted:
        raise CommandError(f"message {number} was retracted")
    if own and message.sender != me:
        raise CommandError(f"message {number} is not yours: you can only change your own")
    return message


async def text(chat: ChatClient, room: Room, body: str, reply_to: int = 0) -> None:
    if not body.strip():
        raise CommandError("nothing to send")
    quoted = target(room, reply_to).message_id if reply_to else None
    await send(chat, room, Content(new_message_id(), body, reply_to=quoted))


async def edit(chat: ChatClient, room: Room, number: int, body: str) -> None:
    if not body.strip():
        raise CommandError("an edit needs the new text (or /retract)")
    message = target(room, number, own=True, me=chat.me)
    await send(chat, room, Content(new_message_id(), body, replaces=message.message_id))


async def retract(chat: ChatClient, room: Room, number: int) -> None:
    message = target(room, number, own=True, me=chat.me)
    await send(chat, room, Content(new_message_id(), replaces=message.message_id))


async def react(chat: ChatClient, room: Room, number: int, emoji: str) -> None:
    """React with ``emoji``; the same reaction again takes it back."""
    message = target(room, number)
    mine = room.timeline.own_reaction(message.message_id, emoji, chat.me)
    if mine is not None:
        await send(chat, room, Content(new_message_id(), replaces=mine))
        return
    try:
        content = Content(new_message_id(), reply_to=message.message_id, reaction=emoji)
    except BridgeError as exc:
        raise CommandError(f"not a reaction: {exc}") from exc
    await send(chat, room, content)


async def send_path(chat: ChatClient, room: Room, path: str) -> None:
    """Encrypt a file, upload the ciphertext, send its key in the group (``/file``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CommandError(f"no such file: {file}")
    try:
        limit = await chat.session.upload_limit()
    except SessionError as exc:
        raise CommandError(str(exc)) from exc
    if not limit:
        raise CommandError("the server offers no file upload")
    size = file.stat().st_size
    if size + 16 > limit:
        raise CommandError(f"{file.name} is {size} bytes: over the server's limit of "
                           f"{limit} bytes")
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    try:
        part = await send_file(file.read_bytes(), name=file.name, media_type=media_type,
                               upload=chat.session.upload, limit=limit)
    except (FileError, SessionError) as exc:
        raise CommandError(f"{file.name} not sent: {exc}") from exc
    await send(chat, room, Content(new_message_id(), file=part))


async def save(chat: ChatClient, room: Room, number: int, path: str = "") -> Path:
    """Download, check and decrypt the file of message ``number`` (``/save``); where it
    was written (never over an existing file)."""
    message = target(room, number)
    part = message.file
    if part is None:
        raise CommandError(f"message {number} has no file")
    try:
        data = await fetch_file(part, download=chat.downloader(room),
                                limit=chat.receive_limit)
    except (FileError, SessionError) as exc:
        raise CommandError(f"{part.name} not saved: {exc}") from exc
    destination = Path(path).expanduser() if path else Path.cwd()
    if destination.is_dir():
        destination = destination / part.name
    destination = _free(destination)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return destination


def _free(path: Path) -> Path:
    """``path``, or ``name-1.ext``, ``name-2.ext``... if it exists."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
