"""The SQLite store's thread (``bridge.hub.store.sqlite_thread``): group commit, and the
cancellation cases its one await has beyond ``test_store_cancellation`` -- while queued
behind a batch, and the event loop shutting down or closing under a transaction.

The thread is held with a transaction whose body waits on a :class:`threading.Event`, so
the calls made meanwhile queue up and the next batch takes them together.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.hub.store import Conflict, SqliteStore, StoreUnavailable, UnknownGroup
from tests.store.faults import Fault, FaultInjector, Target, assert_nothing_inherited

SUITE = 1


class Gate:
    """A transaction that holds the store's thread until :meth:`open`."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()

    def body(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        self.go.wait()

    async def hold(self, store: SqliteStore) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(store._thread.run(self.body, write=True))
        await asyncio.to_thread(self.entered.wait)
        return task

    def open(self) -> None:
        self.go.set()


class Statements:
    """The statements the store's connection runs (its trace callback, on the thread)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def watch(self, store: SqliteStore) -> None:
        await store._call(lambda conn: conn.set_trace_callback(self.seen.append))

    def heads(self) -> list[str]:
        return [sql.split()[0].upper() for sql in self.seen]

    def count(self, head: str) -> int:
        return self.heads().count(head)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()  # a failed test must not leave the thread held


async def queued(n: int = 20) -> None:
    """Let the tasks just created reach their await (queued behind the gate)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def cursors_behind(gate: Gate, store: SqliteStore, prefix: str, n: int
                         ) -> tuple[asyncio.Task[None], list[asyncio.Task[None]]]:
    """The gate's transaction holding the thread, and ``n`` cursor writes queued behind."""
    held = await gate.hold(store)
    loop = asyncio.get_running_loop()
    calls = [loop.create_task(store.set_cursor(f"{prefix}{i}", "v")) for i in range(n)]
    await queued()
    return held, calls


async def test_waiting_transactions_share_one_commit_and_fail_alone(
    tmp_path: Path, gate: Gate
) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db")
    statements = Statements()
    try:
        await store.create_group(b"g", SUITE)
        await statements.watch(store)
        held = await gate.hold(store)
        loop = asyncio.get_running_loop()
        calls = [loop.create_task(store.set_cursor(f"c{i}", "v")) for i in range(5)]
        calls.append(loop.create_task(store.create_group(b"g", SUITE)))  # exists: Conflict
        calls.append(loop.create_task(store.append_message(b"g", 0, "application", b"m", "a")))
        calls.append(loop.create_task(store.append_message(b"none", 0, "application", b"m", "a")))
        calls.append(loop.create_task(store.get_cursor("c0")))  # a read in the same batch
        await queued()
        assert not any(call.done() for call in calls)
        gate.open()
        await held
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert results[:5] == [None] * 5
        assert isinstance(results[5], Conflict)
        assert results[6] == 1
        assert isinstance(results[7], UnknownGroup)
        assert results[8] == "v"  # it saw the batch's earlier writes, answered after COMMIT
        # the gate's transaction, then ONE transaction for the nine calls, each in a savepoint
        assert statements.count("BEGIN") == 2 and statements.count("COMMIT") == 2
        assert statements.count("SAVEPOINT") == 9 and statements.count("RELEASE") == 9
        assert statements.count("ROLLBACK") == 2  # to the two failed calls' savepoints
        assert [await store.get_cursor(f"c{i}") for i in range(5)] == ["v"] * 5
        assert [entry.payload for entry in await store.log_since(b"g")] == [b"m"]
        await assert_nothing_inherited(store)
    finally:
        await store.close()


async def test_a_batch_holds_at_most_max_batch_transactions(
    tmp_path: Path, gate: Gate
) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db", max_batch=3)
    statements = Statements()
    try:
        await statements.watch(store)
        held, calls = await cursors_behind(gate, store, "c", 7)
        gate.open()
        await held
        await asyncio.gather(*calls)
        assert statements.count("BEGIN") == 1 + 3  # the gate, then 3 + 3 + 1
        assert statements.count("SAVEPOINT") == 6  # a batch of one needs none
        assert [await store.get_cursor(f"c{i}") for i in range(7)] == ["v"] * 7
    finally:
        await store.close()


async def test_no_caller_is_answered_before_the_shared_commit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gate: Gate
) -> None:
    """The COMMIT held: nobody has an answer. The COMMIT failing: everybody gets
    StoreUnavailable and nothing of the batch is in the database."""
    faults = FaultInjector()
    faults.install(monkeypatch)
    store = await SqliteStore.open(tmp_path / "hub.db")
    try:
        held, calls = await cursors_behind(gate, store, "c", 3)
        # from here: the gate's COMMIT, BEGIN, 3 x (SAVEPOINT, INSERT, RELEASE), COMMIT
        hold = faults.hold(at=12)
        gate.open()
        await held
        await hold.reached.wait()
        await queued()
        assert not any(call.done() for call in calls), "answered before the COMMIT"
        hold.release()
        await asyncio.gather(*calls)
        # the same with the COMMIT failing
        gate = Gate()
        held, calls = await cursors_behind(gate, store, "d", 3)

        async def batch() -> object:
            gate.open()
            await held
            return await asyncio.gather(*calls, return_exceptions=True)

        outcome = await faults.run(Fault(12, Target.AWAITER), batch)
        assert outcome.fired
        assert isinstance(outcome.value, list)
        assert all(isinstance(result, StoreUnavailable) for result in outcome.value)
        assert [await store.get_cursor(f"d{i}") for i in range(3)] == [None] * 3
        assert [await store.get_cursor(f"c{i}") for i in range(3)] == ["v"] * 3
        await assert_nothing_inherited(store)
    finally:
        gate.open()
        faults.release_holds()
        await store.close()


async def test_a_call_cancelled_while_queued_is_dropped_and_the_batch_goes_on(
    tmp_path: Path, gate: Gate
) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db")
    try:
        held, calls = await cursors_behind(gate, store, "c", 3)
        calls[1].cancel()
        await queued(2)
        assert calls[1].cancelled(), "a queued call waits for the thread after its cancel"
        gate.open()
        await held
        await calls[0]
        await calls[2]
        assert [await store.get_cursor(f"c{i}") for i in range(3)] == ["v", None, "v"]
        await assert_nothing_inherited(store)
    finally:
        await store.close()


def _shut_down_under_a_transaction(path: Path, close_abruptly: bool) -> SqliteStore:
    """In an event loop of its own: open the store, start a write that the thread runs
    until released, then end the loop under it -- ``asyncio.run``'s shutdown (the caller
    is cancelled and must wait for the thread) or a loop closed without waiting."""
    gate = Gate()

    def body(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO cursors (name, value) VALUES ('cursor', 'written')")
        gate.body(conn)

    async def start() -> tuple[SqliteStore, asyncio.Task[None]]:
        store = await SqliteStore.open(path)
        task = asyncio.get_running_loop().create_task(store._thread.run(body, write=True))
        await asyncio.to_thread(gate.entered.wait)
        return store, task

    if not close_abruptly:
        async def main() -> SqliteStore:
            store, _ = await start()
            threading.Timer(0.2, gate.open).start()  # after asyncio.run cancelled it
            return store

        return asyncio.run(main())
    loop = asyncio.new_event_loop()
    store, _ = loop.run_until_complete(start())
    loop.close()  # the task never ends; the thread finds the loop closed
    gate.open()
    return store


@pytest.mark.parametrize("close_abruptly", [False, True], ids=["shutdown", "closed"])
async def test_the_loop_ending_under_a_transaction_leaves_it_committed_once(
    tmp_path: Path, close_abruptly: bool
) -> None:
    path = tmp_path / "hub.db"
    store = await asyncio.to_thread(_shut_down_under_a_transaction, path, close_abruptly)
    reopened = await SqliteStore.open(path)
    try:
        for _ in range(100):  # closed abruptly: the thread may still be committing
            if await reopened.get_cursor("cursor") is not None:
                break
            await asyncio.sleep(0.02)
        assert await reopened.get_cursor("cursor") == "written"
        await reopened.set_cursor("after", "yes")  # nobody holds the write lock
        # the old store's thread serves a new loop: no transaction was inherited
        await assert_nothing_inherited(store)
        assert await store.get_cursor("after") == "yes"
        await store.set_cursor("old", "works")
    finally:
        await store.close()
        await reopened.close()
    assert not store._thread._thread.is_alive()
