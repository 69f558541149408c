"""One poezio account's MLS: a :class:`bridge.chat.client.ChatClient` driven by poezio.

What poezio does, the plugin tells :class:`PoezioMLS`: the person entered a room of the
bridge (:meth:`entered`: the chat client joins its group by external commit where the
room's policy allows, else waits for a Welcome and says so), typed a line in one
(:meth:`say`: encrypted and sent by the member library; poezio sends nothing), or ran
``/mls ...`` (:meth:`command`: the chat client's own commands -- ``add``, ``remove``,
``info``, ``file``, ``save``, ... -- on the room of the current tab). What the chat
client shows -- decrypted messages, membership notices, the relay banner -- is written
into the room's tab through ``write(room_id, lines)``; notices that belong to no room
through ``inform(text)``. The device's state is a 0600 SQLite file
(:class:`bridge.member.SqliteMemberStore`) under poezio's data directory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from slixmpp import JID, ClientXMPP

from bridge.chat import commands, messages
from bridge.chat.client import RELAY_BANNER, ChatClient, CommandError, Room
from bridge.chat.model import render
from bridge.chat.session import SessionError
from bridge.errors import StoreError
from bridge.member import SqliteMemberStore
from bridge.member.sqlite_store import create_private
from bridge.poezio.session import PoezioSession

log = logging.getLogger(__name__)

Write = Callable[[str, list[str]], None]  # (room id, lines)
Inform = Callable[[str], None]


def store_path(data_dir: Path, jid: str) -> Path:
    """The device store of ``jid`` under poezio's data directory."""
    return data_dir / "mls" / f"{JID(jid).bare}.sqlite3"


class PoezioMLS:
    """See the module docstring."""

    def __init__(self, client: ClientXMPP, *, store: Path, write: Write, inform: Inform,
                 hub: str = "", upload_hosts: frozenset[str] = frozenset()) -> None:
        self.session = PoezioSession(client, hub=hub, upload_hosts=upload_hosts)
        self.store_file = store
        self.write = write
        self.inform = inform
        self.chat: ChatClient | None = None
        self._store: SqliteMemberStore | None = None
        self._shown: dict[bytes, int] = {}  # group -> timeline items written
        self._bannered: set[bytes] = set()
        self._console = 0
        self._entering: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def hub(self) -> str:
        return self.session.hub

    def is_mls_room(self, room: str) -> bool:
        return JID(room).domain == self.hub

    async def start(self) -> None:
        """Open the device store, wait for poezio's session, resume every group."""
        self.store_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.store_file.exists():
            create_private(self.store_file)
        try:
            self._store = await SqliteMemberStore.open(self.store_file)
        except StoreError as exc:
            self.inform(f"MLS: cannot open the device store {self.store_file}: {exc}")
            raise
        device = await self._store.load("chat:device")
        if device is None:
            device = secrets.token_hex(8).encode("ascii")
            await self._store.save("chat:device", device)
        self.chat = ChatClient(self.session, self._store, device=device.decode(),
                               on_change=self._changed)
        await self.chat.start()
        self.inform(f"MLS: ready as {self.chat.me} (bridge {self.hub})")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.chat is not None:
            await self.chat.stop()
        if self._store is not None:
            await self._store.close()

    def _client(self) -> ChatClient:
        if self.chat is None:
            raise CommandError("MLS is still starting")
        return self.chat

    def room_of(self, room_id: str) -> Room | None:
        """The joined group of a room of the bridge, if any."""
        chat = self._client()
        return next((r for r in chat.rooms.values() if r.room_id == JID(room_id).bare
                     and chat.member.group(r.group_id).active), None)

    # -- what poezio tells us ------------------------------------------------------------

    async def entered(self, room_id: str, nick: str) -> None:
        """The person entered ``room_id`` in poezio: join its group (once)."""
        chat = self._client()
        if self.room_of(room_id) is not None or room_id in self._entering:
            return
        self.session.plugin.nick = nick  # the same occupant as poezio's tab
        self._entering.add(room_id)
        try:
            room = await chat.join(room_id)
        except CommandError as exc:
            self.write(room_id, [f"MLS: {exc}"])
            return
        finally:
            self._entering.discard(room_id)
        if room is None:
            self.write(room_id, [f"MLS: waiting for an invitation (Welcome): a member "
                                 f"must /add {JID(self.session.identity[5:]).bare}"])

    async def say(self, room_id: str, body: str) -> None:
        """A line typed in a room of the bridge: encrypted and sent, or refused."""
        try:
            room = self.room_of(room_id)
            if room is None:
                raise CommandError("not sent: you are not (yet) in this room's MLS group")
            await messages.text(self._client(), room, body)
        except CommandError as exc:
            self.write(room_id, [f"MLS: {exc}"])

    async def command(self, room_id: str, line: str) -> None:
        """``/mls LINE`` in the tab of ``room_id`` ("" if not a room of the bridge)."""
        chat = self._client()
        room = self.room_of(room_id) if room_id else None
        say: Callable[[str], None] = (lambda text: self.write(room_id, [text])) if room_id \
            else self.inform
        context = commands.Context(chat, room, say, lambda _: None, lambda: None)
        name = line.strip().partition(" ")[0]
        if name in ("", "help"):
            for text in HELP.splitlines():
                say(text)
            return
        try:
            await commands.run(context, "/" + line.strip())
        except (CommandError, SessionError) as exc:
            say(f"MLS: {exc}")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.inform(f"MLS: {task.exception()}")

    # -- what the chat client shows -------------------------------------------------------

    def _changed(self) -> None:
        chat = self.chat
        if chat is None:
            return
        for room in chat.rooms.values():
            if not room.room_id:
                continue
            lines = []
            if room.relayed and room.group_id not in self._bannered:
                self._bannered.add(room.group_id)
                lines.append(RELAY_BANNER)
            items = room.timeline.items
            for item in items[self._shown.get(room.group_id, 0):]:
                lines.extend(render(item, room.timeline, chat.me))
            self._shown[room.group_id] = len(items)
            if lines:
                self.write(room.room_id, lines)
        for notice in chat.console.items[self._console:]:
            self.inform(f"MLS: {render(notice, chat.console, chat.me)[0].removeprefix('-- ')}")
        self._console = len(chat.console.items)


HELP = """/mls add USER       add a user to this room's MLS group (alice@example.org)
/mls remove USER    remove every device of a user
/mls info           members (identity, key fingerprint), safety number, relay state, credential mode
/mls file PATH      send a file, end-to-end encrypted (XEP-0363 upload of the ciphertext)
/mls save N [PATH]  decrypt and save the file of message N
/mls leave          leave this room's MLS group
also: /mls members, /mls safety, /mls reply N TEXT, /mls edit N TEXT, /mls retract N,
/mls react N EMOJI. Lines typed in a room of the bridge are encrypted with MLS."""
