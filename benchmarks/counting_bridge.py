"""``mls-bridge`` with store counters, for ``benchmarks/profile_bridge.py``:

    MLS_BENCH_COUNTERS=FILE python -m benchmarks.counting_bridge run --config FILE

Runs ``bridge.app.cli`` unchanged after wrapping two library entry points:

* ``aiosqlite.Connection._execute`` -- every call into the connection's executor thread
  (each is one hand-off to that thread and one future back: ``aiosqlite_handoffs``);
* ``sqlite3.connect`` -- sets a trace callback on every connection, counting the SQL
  statements run (``statements``) and the transactions begun (``transactions``; of
  them ``write_transactions``: ``BEGIN IMMEDIATE``), committed and rolled back.

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

COUNTS: Counter[str] = Counter()
_execute = aiosqlite.Connection._execute
_connect = sqlite3.connect


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
    sqlite3.connect = _counted_connect  # type: ignore[assignment]
    signal.signal(signal.SIGUSR1, _dump)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
