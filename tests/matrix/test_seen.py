"""The Matrix bot's memory of handled event, transaction and request ids
(:class:`transports.matrix.bot.SeenSet`) on the hub's store: it survives a restart and
stays bounded (old keys are pruned by age)."""

from __future__ import annotations

from pathlib import Path

from bridge.hub.store import SqliteStore
from transports.matrix.seen import SeenSet


async def test_seen_survives_a_restart_and_old_keys_are_pruned(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db")
    now = [1_700_000_000.0]

    def clock() -> float:
        return now[0]

    try:
        seen = SeenSet(store, "@hub:localhost", retention=100, clock=clock)
        await seen.add("ev:a")
        restarted = SeenSet(store, "@hub:localhost", retention=100, clock=clock)
        assert await restarted.contains("ev:a")  # from the store, not the LRU
        assert not await SeenSet(store, "@hub:localhost:txn", clock=clock).contains("ev:a")

        now[0] += 200  # past the retention, but the last prune was under an hour ago
        await seen.add("ev:b")
        assert await restarted.contains("ev:a")

        now[0] += SeenSet.PRUNE_EVERY  # the next add prunes everything older than 100 s
        await seen.add("ev:c")
        after = SeenSet(store, "@hub:localhost", retention=100, clock=clock)
        assert not await after.contains("ev:a")
        assert not await after.contains("ev:b")
        assert await after.contains("ev:c")
    finally:
        await store.close()
