"""Counted, deterministic cancellation of store calls at their database await points.

:class:`FaultInjector` wraps, for the duration of one test, every point where a store call
meets its database. PostgreSQL (asyncpg, one await per statement): ``Connection.execute``,
``executemany``, ``fetch``, ``fetchrow`` and ``fetchval`` (asyncpg's own BEGIN, COMMIT,
ROLLBACK and the pool's reset on release go through ``execute`` too). SQLite (a whole
transaction runs on the store's thread, ``bridge.hub.store.sqlite_thread``): the caller's
one await, ``SqliteThread._submit`` (entered before the job is queued), then every
statement the thread runs on the connection (``execute``/``executemany`` of a
``sqlite3.Connection`` subclass the injector has ``sqlite3.connect`` make: BEGIN, the
body's statements, SAVEPOINT/RELEASE, COMMIT). Unarmed, the wrappers only pass the call
on. Armed with a :class:`Fault`, they count the calls entered and, on entering the N-th,
act before the real call starts:

- ``Target.CALLER``: cancel the task that called the store method (a ``wait_for``
  timeout, a client that went away) -- on SQLite's thread, the thread waits until the
  loop delivered the cancellation, so the caller is cancelled while its transaction runs;
- ``Target.AWAITER``: the call itself is cut off. asyncpg: the task about to await that
  very call is cancelled, so the :class:`asyncio.CancelledError` arrives at this await
  point with the driver's real behaviour (the query is sent or being prepared). SQLite's
  thread: the statement fails (``sqlite3.OperationalError``). SQLite's submit point: the
  awaiter is the caller itself, cancelled once its job is queued (``Outcome.own_await``).

With ``again=True`` every later call entered while the store method runs is hit the
same way (cleanup that is itself cancelled or failing). The schedule depends only on the
count, never on time, so a run is repeatable: N = 1, 2, ... reaches every point in turn,
until the method completes without reaching N.

A connection the store terminates (asyncpg: a statement cut off) may have sent its
COMMIT already; the server then commits on its own time, after the client has moved on.
:meth:`FaultInjector.settle` waits for the server to end such sessions too.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from bridge.hub.store import PostgresStore, SqliteStore, Store
from bridge.hub.store.sqlite_thread import SqliteThread

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
    own_await: bool = False  # an AWAITER fault hit the caller's own await (SQLite)


@dataclass
class _Armed:
    fault: Fault
    caller: asyncio.Task[Any]
    entered: int = 0
    fired: bool = False
    own_await: bool = False


class Hold:
    """A database call held at its entry until :meth:`release` (on the event loop, or
    on SQLite's thread, which then blocks)."""

    def __init__(self, at: int, loop: asyncio.AbstractEventLoop) -> None:
        self.at = at
        self.reached = asyncio.Event()
        self._loop = loop
        self._released = asyncio.Event()
        self._released_thread = threading.Event()

    def release(self) -> None:
        self._released.set()
        self._released_thread.set()

    async def wait_released(self) -> None:
        self.reached.set()
        await self._released.wait()

    def wait_released_in_thread(self) -> None:
        self._loop.call_soon_threadsafe(self.reached.set)
        self._released_thread.wait()


class FaultInjector:
    """Counts and cancels database calls; install it with :meth:`install`."""

    def __init__(self) -> None:
        self._armed: _Armed | None = None
        self._hold: Hold | None = None
        self._held_entered = 0
        self._count = threading.Lock()  # the loop and SQLite's thread both count
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_entered = 0  # database calls the last :meth:`run` entered
        self._cut_off: set[int] = set()  # server pids of the connections terminated

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in POSTGRES_CALLS:
            cls = asyncpg.connection.Connection
            monkeypatch.setattr(cls, name, self._wrap(getattr(cls, name)))
        monkeypatch.setattr(asyncpg.connection.Connection, "terminate",
                            self._wrap_terminate(asyncpg.connection.Connection.terminate))
        monkeypatch.setattr(SqliteThread, "_submit", self._wrap_submit(SqliteThread._submit))
        monkeypatch.setattr(sqlite3, "connect", functools.partial(
            sqlite3.connect, factory=self._connection_class()))

    def _wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        injector = self

        @functools.wraps(call)
        async def entered(conn: object, *args: Any, **kwargs: Any) -> Any:
            await injector._entered()
            return await call(conn, *args, **kwargs)

        return entered

    def _wrap_submit(self, submit: Callable[..., Awaitable[Any]]
                     ) -> Callable[..., Awaitable[Any]]:
        injector = self

        @functools.wraps(submit)
        async def entered(thread: SqliteThread, *args: Any, **kwargs: Any) -> Any:
            await injector._entered(own_await=True)
            return await submit(thread, *args, **kwargs)

        return entered

    def _wrap_terminate(self, terminate: Callable[..., None]) -> Callable[..., None]:
        injector = self

        @functools.wraps(terminate)
        def terminated(conn: Any) -> None:
            if not conn.is_closed():  # (an aborted one has no server pid to ask)
                injector._cut_off.add(conn.get_server_pid())
            terminate(conn)

        return terminated

    def _connection_class(self) -> type[sqlite3.Connection]:
        injector = self

        class FaultConnection(sqlite3.Connection):
            """The store's connection, counting the statements its thread runs."""

            def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
                injector._entered_in_thread()
                return super().execute(*args, **kwargs)

            def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
                injector._entered_in_thread()
                return super().executemany(*args, **kwargs)

        return FaultConnection

    def _count_entry(self) -> tuple[Hold | None, Fault | None, _Armed | None]:
        """Count one call entered: the hold it reaches and the fault it fires, if any."""
        with self._count:
            held = None
            if self._hold is not None:
                self._held_entered += 1
                if self._held_entered == self._hold.at:
                    held = self._hold
            armed = self._armed
            if armed is None:
                return held, None, None
            armed.entered += 1
            fault = armed.fault
            if armed.entered == fault.at or (fault.again and armed.entered > fault.at):
                armed.fired = True
                return held, fault, armed
            return held, None, armed

    async def _entered(self, *, own_await: bool = False) -> None:
        held, fault, armed = self._count_entry()
        if held is not None:
            await held.wait_released()
        if fault is None or armed is None:
            return
        if fault.target is Target.CALLER:
            armed.caller.cancel()
        elif own_await:  # the caller is the awaiter: cancelled once its job is queued
            armed.own_await = True
            asyncio.get_running_loop().call_soon(armed.caller.cancel)
        else:
            victim = asyncio.current_task()
            assert victim is not None
            victim.cancel()

    def _entered_in_thread(self) -> None:
        held, fault, armed = self._count_entry()
        if held is not None:
            held.wait_released_in_thread()
        if fault is None or armed is None:
            return
        if fault.target is Target.AWAITER:
            raise sqlite3.OperationalError(f"injected fault at call {armed.entered}")
        loop = self._loop
        assert loop is not None
        delivered = threading.Event()

        def cancel() -> None:
            armed.caller.cancel()
            loop.call_soon(delivered.set)  # after the caller's step that sees it

        loop.call_soon_threadsafe(cancel)
        delivered.wait()

    async def run(self, fault: Fault, call: Callable[[], Awaitable[object]]) -> Outcome:
        """Run ``call()`` in a task of its own under ``fault``; report how it ended."""
        assert self._armed is None, "one armed call at a time"
        self._loop = asyncio.get_running_loop()

        async def caller() -> object:
            return await call()

        task = self._loop.create_task(caller())
        armed = _Armed(fault, task)
        with self._count:
            self._armed = armed
        try:
            await asyncio.wait((task,))
        finally:
            with self._count:
                self._armed = None
        self.last_entered = armed.entered
        if task.cancelled():
            return Outcome(armed.fired, True, None, None, armed.own_await)
        error = task.exception()
        return Outcome(armed.fired, False, error, None if error else task.result(),
                       armed.own_await)

    async def settle(self, store: Store, timeout: float = 30.0) -> None:
        """:func:`quiesce`, then wait until the server has ended every session whose
        connection was terminated: its transaction has committed or rolled back there
        (a backend leaves ``pg_stat_activity`` after its transaction ended), so what
        follows sees a state that no longer changes."""
        await quiesce()
        if not isinstance(store, PostgresStore) or not self._cut_off:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await store._pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = any($1::int[])",
            list(self._cut_off),
        ):
            assert loop.time() < deadline, f"sessions {self._cut_off} still on the server"
            await asyncio.sleep(0.005)  # the server's progress, not ours: polled
        self._cut_off.clear()

    def release_holds(self) -> None:
        if self._hold is not None:
            self._hold.release()

    def hold(self, at: int) -> Hold:
        """Hold the ``at``-th database call entered from now on until released."""
        self._loop = asyncio.get_running_loop()
        with self._count:
            self._hold = Hold(at, self._loop)
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
        assert not store._thread._pending, "a transaction is still queued or running"
        # The thread runs its jobs in order: this one comes after every earlier one.
        in_transaction = await store._call(lambda conn: conn.in_transaction)
        assert not in_transaction, "the connection was left inside a transaction"
    elif isinstance(store, PostgresStore):
        pool = store._pool
        assert pool.get_idle_size() == pool.get_size(), "a pooled connection was not released"
    else:  # pragma: no cover - only the two backends exist
        raise AssertionError(type(store))
