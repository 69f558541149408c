"""Two OS processes, each with its own asyncpg pool, race on one PostgreSQL database.

Ordering must come from the database (row locks), never from process memory: with two
hub workers submitting a commit for every epoch, exactly one commit per epoch is
accepted and sequence numbers stay contiguous; KeyPackages claimed from both processes
are never handed out twice.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from bridge.hub.store import LogKind, PostgresStore
from bridge.hub.store.base import load_migrations
from tests.store.conftest import create_database
from tests.store.pg_race_worker import GROUP_ID
from tests.store.pg_server import PgServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 200


def run_racers(dsn: str, mode: str, count: int) -> list[dict[str, object]]:
    """Start two workers, release them together, return their JSON results."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.pg_race_worker", dsn, mode, name, str(count)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("worker-a", "worker-b")
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline().strip()
            assert line == "ready", f"worker did not start: {line!r} {worker.stderr.read()}"  # type: ignore[union-attr]
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, f"worker failed:\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


async def test_two_processes_never_accept_two_commits_for_one_epoch(pg_server: PgServer) -> None:
    dsn = await create_database(pg_server)
    store = await PostgresStore.open(dsn)
    try:
        await store.create_group(GROUP_ID, 1, hub_state=b"")
        results = run_racers(dsn, "commit", ATTEMPTS)

        won = [set(result["won"]) for result in results]  # type: ignore[call-overload]
        assert won[0].isdisjoint(won[1])
        assert won[0] | won[1] == set(range(ATTEMPTS))
        assert won[0] and won[1], "the workers did not race: one of them won every epoch"
        assert sum(result["lost"] for result in results) == ATTEMPTS  # type: ignore[misc]

        log = await store.log_since(GROUP_ID, 0, 10 * ATTEMPTS)
        assert [entry.seq for entry in log] == list(range(1, ATTEMPTS + 1))
        assert [entry.epoch for entry in log] == list(range(ATTEMPTS))
        assert {entry.kind for entry in log} == {LogKind.COMMIT}
        for entry in log:  # the accepted bytes are the winner's, for that epoch
            assert entry.payload == f"{entry.sender}:{entry.epoch}".encode()
            assert entry.epoch in won[0 if entry.sender == "worker-a" else 1]
        record = await store.get_group(GROUP_ID)
        assert (record.epoch, record.next_seq) == (ATTEMPTS, ATTEMPTS + 1)
        last = log[-1]
        assert record.hub_state == f"{last.sender}:{ATTEMPTS - 1}".encode()
    finally:
        await store.close()


async def test_two_processes_never_claim_the_same_key_package(pg_server: PgServer) -> None:
    dsn = await create_database(pg_server)
    store = await PostgresStore.open(dsn)
    try:
        published = {bytes([i]) * 8 for i in range(150)}
        for i, key_package in enumerate(sorted(published)):
            await store.publish_key_package("bob", f"d{i % 5}", 1, b"r%d" % i, key_package, 10)
        results = run_racers(dsn, "claim", 0)
        claimed = [bytes.fromhex(kp) for result in results for kp in result["claimed"]]  # type: ignore[attr-defined]
        assert len(claimed) == len(set(claimed))
        assert set(claimed) == published
        assert await store.list_key_packages("bob") == []
    finally:
        await store.close()


async def test_workers_starting_together_migrate_once(pg_server: PgServer) -> None:
    dsn = await create_database(pg_server)
    stores = await asyncio.gather(*(PostgresStore.open(dsn, max_size=2) for _ in range(4)))
    try:
        versions = [await store.schema_version() for store in stores]
        assert versions == [len(load_migrations("postgres"))] * 4
        conn = await asyncpg.connect(dsn)
        try:
            applied = await conn.fetchval("SELECT count(*) FROM schema_version")
        finally:
            await conn.close()
        assert applied == len(load_migrations("postgres"))
    finally:
        for store in stores:
            await store.close()
