"""The plain bot account's feed: :class:`SyncRunner` runs /sync for a
:class:`transports.matrix.bot.MatrixHubBot` and hands it each batch (an application
service is fed by transactions instead: :mod:`transports.matrix.appservice`).

The sync token is saved (through the bot's :class:`transports.matrix.seen.CursorStore`)
only after a whole batch was processed and every request of it answered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import nio

from transports.matrix import namespace as ns
from transports.matrix.bot import SYNC_FILTER, MatrixHubBot

log = logging.getLogger(__name__)

BACKFILL_PAGE = 100  # events per /messages page when a timeline was limited


class SyncRunner:
    """Feeds a :class:`MatrixHubBot` from /sync, resuming from the stored token."""

    def __init__(self, bot: MatrixHubBot, *, timeout_ms: int = 5000) -> None:
        self.bot = bot
        self.client = bot.client
        self.timeout_ms = timeout_ms
        self.cursor_name = f"{ns.CURSOR_SYNC}:{bot.user_id}"
        self.batches = 0
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_batch = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self.run(), name="matrix sync")

    async def stop(self) -> None:
        """Stop syncing: a batch being processed is finished first (its token saved,
        so nothing in it is handled twice); a sync waiting on the homeserver is
        cancelled (what it would have fetched stays there for the next start).
        Cancelling this call cancels the batch too."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        if not self._in_batch:
            task.cancel()
        try:
            await asyncio.gather(task, return_exceptions=True)
        finally:
            if task.done():
                self._task = None

    async def run(self) -> None:
        token = await self.bot.cursors.get_cursor(self.cursor_name)
        delay = 0.2
        while not self._stopping:
            try:
                response = await self.client.sync(timeout=self.timeout_ms,
                                                  sync_filter=SYNC_FILTER, since=token)
            except (aiohttp.ClientError, TimeoutError) as exc:
                response = nio.SyncError(f"{type(exc).__name__}: {exc}")
            if not isinstance(response, nio.SyncResponse):
                log.warning("sync failed: %s", getattr(response, "message", response))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self._in_batch = True
            try:
                await self.process(response, since=token)
                token = response.next_batch
                await self.bot.cursors.set_cursor(self.cursor_name, token)
            finally:
                self._in_batch = False
            self.batches += 1
            self.synced.set()

    async def process(self, response: nio.SyncResponse, *, since: str | None) -> None:
        """One batch: to-device requests admitted (handled concurrently by the bot's
        workers), invites, then room timelines in order; the batch is done when every
        request of it was answered (:meth:`MatrixHubBot.settle`). Only then is the
        next sync made -- the homeserver deletes to-device messages once a sync
        confirms them, so a crash before that finds them again. The first sync of a
        new bot (no ``since`` token) skips old timelines (they predate its service); a
        limited timeline is completed back to ``since`` (:meth:`_missed`)."""
        for event in response.to_device_events:
            await self.bot.on_to_device(event.source)
        for room_id in response.rooms.invite:
            await self.bot.on_invite(room_id)
        if since is not None:
            for room_id, room in response.rooms.join.items():
                missed: list[Any] = []
                if room.timeline.limited:
                    missed = await self._missed(room_id, room.timeline.prev_batch, since)
                for event in [*missed, *room.timeline.events]:
                    if isinstance(event, nio.MegolmEvent) or getattr(event, "decrypted",
                                                                     False):
                        await self.bot.on_megolm(room_id, event)
                    else:
                        await self.bot.on_room_event(room_id, event.source)
        await self.bot.after_sync()
        await self.bot.settle()

    async def _missed(self, room_id: str, prev_batch: str | None, since: str
                      ) -> list[Any]:
        """The events a limited timeline left out, oldest first: /messages backwards
        from the timeline's start to the previous batch's token, or to the bot's own
        join (a member's send event is in a room's timeline only; a gap would leave it
        unanswered)."""
        chunks: list[Any] = []
        start = prev_batch
        while start:
            page = await self.client.room_messages(room_id, start, since,
                                                   limit=BACKFILL_PAGE)
            if not isinstance(page, nio.RoomMessagesResponse):
                log.warning("events missed in %s not read: %s", room_id,
                            getattr(page, "message", page))
                break
            for event in page.chunk:
                if _own_join(event.source, self.bot.user_id):
                    return chunks[::-1]  # what came before predates our service
                chunks.append(event)
            if not page.chunk or not page.end or page.end == start:
                break
            start = page.end
        log.info("limited timeline in %s: %d missed events read", room_id, len(chunks))
        return chunks[::-1]


def _own_join(event: dict[str, object], user_id: str) -> bool:
    content = event.get("content")
    return event.get("type") == ns.MEMBER_EVENT and event.get("state_key") == user_id \
        and isinstance(content, dict) and content.get("membership") == "join"


__all__ = ["SyncRunner"]
