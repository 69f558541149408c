"""``kill -9`` of the bridge process (hub + relay) during a conversation with concurrent
commits, with real Prosody and Synapse, in an MLS-only room pair and a relay-mode pair
with a plain XMPP client: nothing accepted is lost, nothing is delivered twice, every
member ends at one epoch and epoch authenticator (the scenario and what is checked:
:mod:`benchmarks.crash`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from benchmarks.crash import CrashPlan, print_report, run_crash
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.hub.store import SqliteStore


async def test_kill9_mid_conversation_loses_and_duplicates_nothing(
        prosody_server: ProsodyServer, synapse_server: SynapseServer,
        tmp_path: Path) -> None:
    report = await run_crash(prosody_server, synapse_server, tmp_path,
                             CrashPlan(seed=20240611, kills=3, ops_per_person=12,
                                       relay=True))
    print_report(report)
    assert len(report.kills) == 3
    assert report.epoch >= 1 and report.acked > 0


async def test_store_is_wal_with_full_fsync(tmp_path: Path) -> None:
    """What makes an accepted commit durable: WAL (persistent in the file) and
    synchronous=FULL (per connection, set by SqliteStore.open) -- every COMMIT of
    accept_commit is fsynced before the hub fans the commit out or replies."""
    store = await SqliteStore.open(tmp_path / "hub.db")
    try:
        # the store's own connection, on its thread: synchronous is per connection
        assert await store._call(
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()) == (2,)  # 2 = FULL
        assert await store._call(
            lambda conn: conn.execute("PRAGMA journal_mode").fetchone()) == ("wal",)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "hub.db") as other:  # WAL is recorded in the file
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
