"""Counted, deterministic cancellation of store calls at their database await points.

:class:`FaultInjector` wraps, for the duration of one test, the driver methods every store
statement goes through: aiosqlite's ``Connection.execute``, ``execute_fetchall``,
``executemany``, ``commit`` and ``rollback``; asyncpg's ``Connection.execute``,
``executemany``, ``fetch``, ``fetchrow`` and ``fetchval`` (asyncpg's own BEGIN, COMMIT,
ROLLBACK and the pool's reset on release go through ``execute`` too). Unarmed, the
wrappers only pass the call on. Armed with a :class:`Fault`, they count the calls entered
and, on entering the N-th, cancel a task before the real call starts:

- ``Target.CALLER``: the task that called the store method (a ``wait_for`` timeout, a
  client that went away);
- ``Target.AWAITER``: the task about to await that very call, so the
  :class:`asyncio.CancelledError` arrives at this await point, with the driver's real
  behaviour (aiosqlite has already queued the statement for its worker thread; asyncpg
  has sent the query or is preparing it).

With ``again=True`` every later call entered while the store method runs is cancelled the
same way (cleanup that is itself cancelled). The schedule depends only on the count,
never on time, so a run is repeatable: N = 1, 2, ... reaches every await point in turn,
until the method completes without reaching N.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
import pytest

from bridge.hub.store import PostgresStore, SqliteStore, Store

SQLITE_CALLS = ("execute", "execute_fetchall", "executemany", "commit", "rollback")
POSTGRES_CALLS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


class Target(enum.Enum):
    """Whom the fault cancels."""

    CALLER = "caller"
    AWAITER = "awaiter"


@dataclass(frozen=True)
class Fault:
    """Cancel ``target`` on entering the ``at``-th database call (and each later one if
    ``again``)."""

    at: int
    target: Target
    again: bool = False

    def __str__(self) -> str:
        return f"{self.target.value}{'-again' if self.again else ''}@{self.at}"


@dataclass(frozen=True)
class Outcome:
    """How one store call ended for its caller."""

    fired: bool  # the fault was reached before the call ended
    cancelled: bool  # the caller saw CancelledError
    error: BaseException | None
    value: object


@dataclass
class _Armed:
    fault: Fault
    caller: asyncio.Task[Any]
    entered: int = 0
    fired: bool = False


class Hold:
    """A database call held at its entry until :meth:`release`."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def wait_released(self) -> None:
        self.reached.set()
        await self._released.wait()


class FaultInjector:
    """Counts and cancels database calls; install it with :meth:`install`."""

    def __init__(self) -> None:
        self._armed: _Armed | None = None
        self._hold: Hold | None = None
        self._held_entered = 0
        self.last_entered = 0  # database calls the last :meth:`run` entered

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for cls, names in (
            (aiosqlite.Connection, SQLITE_CALLS),
            (asyncpg.connection.Connection, POSTGRES_CALLS),
        ):
            for name in names:
                monkeypatch.setattr(cls, name, self._wrap(getattr(cls, name)))

    def _wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        injector = self

        @functools.wraps(call)
        async def entered(conn: object, *args: Any, **kwargs: Any) -> Any:
            await injector._entered()
            return await call(conn, *args, **kwargs)

        return entered

    async def _entered(self) -> None:
        if self._hold is not None:
            self._held_entered += 1
            if self._held_entered == self._hold.at:
                await self._hold.wait_released()
        armed = self._armed
        if armed is None:
            return
        armed.entered += 1
        fault = armed.fault
        if armed.entered == fault.at or (fault.again and armed.entered > fault.at):
            armed.fired = True
            victim = armed.caller if fault.target is Target.CALLER else asyncio.current_task()
            assert victim is not None
            victim.cancel()

    async def run(self, fault: Fault, call: Callable[[], Awaitable[object]]) -> Outcome:
        """Run ``call()`` in a task of its own under ``fault``; report how it ended."""
        assert self._armed is None, "one armed call at a time"

        async def caller() -> object:
            return await call()

        task = asyncio.get_running_loop().create_task(caller())
        armed = self._armed = _Armed(fault, task)
        try:
            await asyncio.wait((task,))
        finally:
            self._armed = None
        self.last_entered = armed.entered
        if task.cancelled():
            return Outcome(armed.fired, True, None, None)
        error = task.exception()
        return Outcome(armed.fired, False, error, None if error else task.result())

    def release_holds(self) -> None:
        if self._hold is not None:
            self._hold.release()

    def hold(self, at: int) -> Hold:
        """Hold the ``at``-th database call entered from now on until released."""
        self._hold = Hold(at)
        self._held_entered = 0
        return self._hold


async def quiesce() -> None:
    """Wait until every other task of the loop is done (a driver's background release,
    a transaction still rolling back), so that what follows sees settled state."""
    me = asyncio.current_task()
    while others := {task for task in asyncio.all_tasks() if task is not me}:
        await asyncio.wait(others)


async def assert_nothing_inherited(store: Store) -> None:
    """The backend holds no transaction open and no connection checked out."""
    if isinstance(store, SqliteStore):
        assert not store._lock.locked(), "the connection is still held"
        # The worker thread runs statements in order: once this one is back, every
        # statement sent before it (a ROLLBACK whose await was cancelled) has run too.
        await store._conn.execute_fetchall("SELECT 1")
        assert not store._conn.in_transaction, "the connection was left inside a transaction"
    elif isinstance(store, PostgresStore):
        pool = store._pool
        assert pool.get_idle_size() == pool.get_size(), "a pooled connection was not released"
    else:  # pragma: no cover - only the two backends exist
        raise AssertionError(type(store))
