"""The relay's re-emit queue (bridge.relay.reemits) keeps the log's order across a
restart: what a puppet decrypts while its group's re-emit cursor is being read (the
rooms just attached) is queued after what it decrypted before, never ahead of it, and
is checked against the cursor like the rest. (Found by the crash loop, seed 5006: the
plain client was shown "#11" before "#10" after a restart.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.hub.store import SqliteStore
from bridge.member import Content, Received
from bridge.relay.output import Emission, Rooms
from bridge.relay.reemits import EMITTED_CURSOR, ReEmits

GROUP = b"\x07" * 32
SENDER = "xmpp:m@example.org"


class SlowCursorStore:
    """The hub store's cursors, the first read held until :attr:`release` is set."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def get_cursor(self, name: str) -> str | None:
        self.reading.set()
        await self.release.wait()
        return await self.store.get_cursor(name)


def decrypted(seq: int) -> Received:
    return Received(GROUP, SENDER, Content(bytes(16), f"#{seq}"), seq, 0)


def queued(reemits: ReEmits) -> list[int]:
    out: list[Emission] = []
    while not reemits._outbound.empty():
        out.append(reemits._outbound.get_nowait())
    return [emission.seq for emission in out]


async def test_decrypted_while_the_cursor_is_read_is_queued_in_log_order(
        tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db")
    try:
        await store.set_cursor(EMITTED_CURSOR + GROUP.hex(), "9")  # re-emitted up to 9
        slow = SlowCursorStore(store)
        groups: dict[bytes, Rooms] = {}
        reemits = ReEmits(slow, None, groups, {})  # type: ignore[arg-type]
        reemits.on_decrypted(decrypted(10))  # a puppet catching up after a restart
        groups[GROUP] = Rooms("room@mls.example.org", "!room:example.org")  # enable()
        attaching = asyncio.ensure_future(reemits.attached(GROUP))
        await asyncio.wait_for(slow.reading.wait(), 5)
        for seq in (9, 11):  # decrypted while the cursor is read (9: re-emitted before)
            reemits.on_decrypted(decrypted(seq))
        slow.release.set()
        await asyncio.wait_for(attaching, 5)
        reemits.on_decrypted(decrypted(12))
        assert queued(reemits) == [10, 11, 12]  # 9 was re-emitted before the restart
        assert reemits.emitted_through(GROUP, 9) and not reemits.emitted_through(GROUP, 10)
    finally:
        await store.close()
