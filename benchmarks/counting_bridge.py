"""``mls-bridge`` with store counters, for ``benchmarks/profile_bridge.py``:

    MLS_BENCH_COUNTERS=FILE python -m benchmarks.counting_bridge run --config FILE

Runs ``bridge.app.cli`` unchanged after wrapping these entry points:

* ``SqliteThread._submit`` -- every store call handed to the hub store's thread (one
  hand-off there and one answer back: ``store_calls``, the store's transactions), and
  ``SqliteThread._run`` -- every batch the thread runs (``store_batches``: group commit
  runs several calls in one SQLite transaction);
* ``aiosqlite.Connection._execute`` -- every call into an aiosqlite connection's thread
  (the relay's secrets file still uses aiosqlite: ``aiosqlite_handoffs``);
* ``sqlite3.connect`` -- sets a trace callback on every connection, counting the SQL
  statements run (``statements``) and the SQLite transactions begun (``transactions``;
  of them ``write_transactions``: ``BEGIN IMMEDIATE``), committed and rolled back.

On SIGUSR1 the counts so far are written to ``$MLS_BENCH_COUNTERS`` as JSON (replaced
atomically); the profiler reads them before and after a phase. Statement texts are only
classified by their first word, never stored or logged.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import aiosqlite

from bridge.app.cli import main
from bridge.hub.store.sqlite_thread import SqliteThread

COUNTS: Counter[str] = Counter()
_execute = aiosqlite.Connection._execute
_connect = sqlite3.connect
_submit = SqliteThread._submit
_run_batch = SqliteThread._run


async def _counted_submit(self: SqliteThread, *args: Any, **kwargs: Any) -> Any:
    COUNTS["store_calls"] += 1
    return await _submit(self, *args, **kwargs)


def _counted_run(self: SqliteThread, jobs: Any) -> None:
    COUNTS["store_batches"] += 1
    _run_batch(self, jobs)


async def _counted_execute(self: aiosqlite.Connection, fn: Any, *args: Any,
                           **kwargs: Any) -> Any:
    COUNTS["aiosqlite_handoffs"] += 1
    return await _execute(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def _trace(sql: str) -> None:
    COUNTS["statements"] += 1
    head = sql.lstrip()[:16].upper()
    if head.startswith("BEGIN"):
        COUNTS["transactions"] += 1
        COUNTS["write_transactions"] += "IMMEDIATE" in head
    elif head.startswith("COMMIT"):
        COUNTS["commits"] += 1
    elif head.startswith("ROLLBACK"):
        COUNTS["rollbacks"] += 1


def _counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    conn: sqlite3.Connection = _connect(*args, **kwargs)
    conn.set_trace_callback(_trace)
    return conn


def _dump(_signum: int, _frame: FrameType | None) -> None:
    path = Path(os.environ["MLS_BENCH_COUNTERS"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(COUNTS)), encoding="utf-8")
    tmp.replace(path)


def run(argv: list[str]) -> int:
    aiosqlite.Connection._execute = _counted_execute  # type: ignore[method-assign]
    SqliteThread._submit = _counted_submit  # type: ignore[method-assign]
    SqliteThread._run = _counted_run  # type: ignore[method-assign]
    sqlite3.connect = _counted_connect  # type: ignore[assignment]
    signal.signal(signal.SIGUSR1, _dump)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
