"""The chat screen (Textual): the room list with unread counts, the current room's
timeline, a banner, the connection's state and the input line.

Everything it shows comes from :class:`bridge.chat.client.ChatClient`; it redraws
when the client says something changed. Text from the network is shown as plain text
(never as markup). It runs in a real terminal (``mls-bridge chat``) and headless under
Textual's pilot (the tests).
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, ListItem, ListView, RichLog, Static

from bridge.chat import commands
from bridge.chat.client import RELAY_BANNER, WAITING, ChatClient, CommandError, Room
from bridge.chat.membership import short
from bridge.chat.model import render
from bridge.chat.session import SessionError

CONSOLE = "(console)"


class ChatApp(App[None]):
    """``mls-bridge chat`` (see the module docstring)."""

    TITLE = "mls-bridge chat"
    CSS = """
    #status { height: 1; background: $boost; padding: 0 1; }
    #rooms { width: 30; border-right: solid $primary; }
    #banner { height: auto; background: $error; color: $text; padding: 0 1; display: none; }
    #banner.shown { display: block; }
    #timeline { height: 1fr; }
    #input { dock: bottom; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "next_room", "next room", priority=True),
        Binding("ctrl+p", "previous_room", "previous room", priority=True),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(self, chat: ChatClient) -> None:
        super().__init__()
        self.chat = chat
        self.current: Room | None = None
        self.failure = ""
        self._order: list[Room | None] = [None]
        self._drawable = False
        self._labels: list[str] = []
        self._lines: asyncio.Queue[tuple[str, Room | None]] = asyncio.Queue()
        self._started = asyncio.Event()
        chat.on_change = self.redraw

    def compose(self) -> ComposeResult:
        yield Static("starting", id="status")
        with Horizontal():
            yield ListView(id="rooms")
            with Vertical():
                yield Static("", id="banner")
                yield RichLog(id="timeline", wrap=True, markup=False, auto_scroll=True,
                              min_width=20)
        yield Input(placeholder="message, or /help", id="input")

    async def on_mount(self) -> None:
        self._drawable = True
        self.query_one("#input", Input).focus()
        self.run_worker(self._start(), exclusive=True, group="start")
        self.run_worker(self._run_lines(), group="commands")

    async def _start(self) -> None:
        try:
            await self.chat.start()
        except (SessionError, CommandError) as exc:
            self.failure = str(exc)
            self.chat.console.notice(time.time(), f"cannot start: {exc}")
            self.exit(return_code=1, message=f"mls-bridge chat: {exc}")
            return
        if self.chat.rooms and self.current is None:
            self.select(next(iter(self.chat.rooms.values())))
        self._started.set()
        self.redraw()

    async def on_unmount(self) -> None:
        await self.chat.stop()

    # -- input -------------------------------------------------------------------------

    @on(Input.Submitted, "#input")
    def submitted(self, event: Input.Submitted) -> None:
        """Queue the line: commands run one after the other, off the screen's loop, so
        typing and redrawing go on while one waits for the network."""
        self._lines.put_nowait((event.value, self.current))
        event.input.value = ""

    async def _run_lines(self) -> None:
        await self._started.wait()  # what is typed while logging in waits for it
        while True:
            line, room = await self._lines.get()
            ctx = commands.Context(self.chat, room, self.say, self.select, self.exit)
            try:
                await commands.run(ctx, line)
            except CommandError as exc:
                self.say(f"! {exc}")
            self.redraw()

    def say(self, text: str) -> None:
        timeline = self.current.timeline if self.current is not None else self.chat.console
        timeline.notice(time.time(), text)
        self.redraw()

    def select(self, room: Room | None) -> None:
        self.current = room
        if room is not None:
            self.chat.mark_read(room)
        self.redraw()

    @on(ListView.Selected, "#rooms")
    def picked(self, event: ListView.Selected) -> None:
        index = event.list_view.index or 0
        if index < len(self._order):
            self.select(self._order[index])
        self.query_one("#input", Input).focus()

    def action_next_room(self) -> None:
        self._cycle(1)

    def action_previous_room(self) -> None:
        self._cycle(-1)

    def _cycle(self, step: int) -> None:
        index = self._order.index(self.current) if self.current in self._order else 0
        self.select(self._order[(index + step) % len(self._order)])

    # -- drawing -----------------------------------------------------------------------

    def redraw(self) -> None:
        if not self._drawable:
            return
        if self.current is not None:
            self.chat.mark_read(self.current)
        self._draw_status()
        self._draw_rooms()
        self._draw_banner()
        self._draw_timeline()

    def _draw_status(self) -> None:
        status = self.chat.status
        dot = "●" if status.online else "○"
        self.query_one("#status", Static).update(Text(
            f"{short(self.chat.me)} [{self.chat.session.network}]  {dot} {status.text}"))

    def _draw_rooms(self) -> None:
        rooms = self.query_one("#rooms", ListView)
        order: list[Room | None] = [None, *self.chat.rooms.values()]
        labels = [CONSOLE] + [self._room_label(room) for room in order[1:] if room]
        labels += [f"… {address} (waiting)" for address in self.chat.waiting.values()]
        if self._labels != labels:
            self._labels = labels
            rooms.clear()
            rooms.extend(ListItem(Label(Text(label))) for label in labels)
        self._order = order
        selected = order.index(self.current) if self.current in order else 0
        if rooms.index != selected:
            rooms.index = selected

    def _room_label(self, room: Room) -> str:
        unread = self.chat.unread(room)
        gone = "" if self.chat.member.group(room.group_id).active else " (left)"
        marker = "> " if room is self.current else "  "
        return f"{marker}{room.name}{gone}" + (f" ({unread})" if unread else "")

    def _draw_banner(self) -> None:
        banner = self.query_one("#banner", Static)
        lines = []
        if self.current is not None and self.current.relayed:
            lines.append(RELAY_BANNER)
        if self.current is None and self.chat.waiting:
            lines.append(f"{WAITING}: {', '.join(self.chat.waiting.values())}")
        banner.update(Text("\n".join(lines)))
        banner.set_class(bool(lines), "shown")

    def _draw_timeline(self) -> None:
        log = self.query_one("#timeline", RichLog)
        log.clear()
        timeline = self.current.timeline if self.current else self.chat.console
        for item in timeline.items:
            for line in render(item, timeline, self.chat.me):
                log.write(Text(line), expand=True)

