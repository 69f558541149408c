"""The hub's SQLite connection on a thread of its own: one hand-off per transaction, and
group commit.

A transaction's body is synchronous code over a :class:`sqlite3.Connection`. The caller
queues it (:meth:`SqliteThread.run`: its one await) and the store's thread runs the whole
transaction -- BEGIN, the body's statements, COMMIT or ROLLBACK -- as one function, then
answers through the caller's event loop. Nothing of a transaction runs on the loop, so a
caller's cancellation cannot cut one in half:

- cancelled before or while its job is queued (the cancellation arrives at the one
  await, right after queueing): the job is dropped before the thread takes it (one lock
  decides between the two), nothing happened, and the caller does not wait. (A task
  that calls the store while handling an earlier cancellation of its own -- cleanup --
  is served like any other: only a cancellation arriving at the await counts.);
- cancelled once the thread took it: the caller waits (uncancellable) until the thread
  committed or rolled back, then raises :class:`asyncio.CancelledError`: the effect is
  there 0 or 1 times and settled;
- the event loop shutting down (or already closed): the thread ends the transaction all
  the same, and an answer to a closed loop is dropped. Every batch starts by rolling
  back a transaction a failed cleanup might have left, so no caller inherits one.

Group commit: when several transactions wait, the thread takes up to ``max_batch`` of
them into one ``BEGIN`` ... ``COMMIT``, each inside a ``SAVEPOINT`` of its own (one that
fails is rolled back to its savepoint alone and gets its own error), and answers each
caller only after the shared COMMIT returned: with ``synchronous=FULL`` one fsync makes
them all durable, and none is acknowledged before it is. If the shared transaction is
lost (the COMMIT, or a rollback to a savepoint, fails), nothing of the batch was
committed and every job in it gets :class:`StoreUnavailable`. A lone transaction runs
without savepoints (BEGIN, body, COMMIT: no extra statements when there is no load).

:meth:`SqliteThread.close` refuses new calls (:class:`StoreUsageError`), waits for every
job already queued or running, closes the connection on its thread and ends the thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from bridge.errors import Conflict, StoreUnavailable, StoreUsageError
from bridge.hub.store.transactions import uncancelled

T = TypeVar("T")
P = ParamSpec("P")

#: The most transactions one shared BEGIN ... COMMIT holds.
MAX_BATCH = 32


class _State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLED = "cancelled"  # dropped while queued: never runs


class _Job(Generic[T]):
    """One transaction (or, ``raw``, one call outside any transaction) and its answer."""

    __slots__ = ("answered", "body", "error", "future", "loop", "raw", "state", "value",
                 "waiter", "write")

    def __init__(self, body: Callable[[sqlite3.Connection], T], write: bool, raw: bool,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.body = body
        self.write = write
        self.raw = raw
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.state = _State.QUEUED
        self.value: T | None = None
        self.error: BaseException | None = None
        self.answered = False
        self.waiter: asyncio.Future[None] | None = None  # a cancelled caller waiting


def store_error(exc: BaseException) -> BaseException:
    """A driver error as the store's error tree has it (others unchanged)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"sqlite: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"sqlite: {exc}")
    return exc


class SqliteThread:
    """A :class:`sqlite3.Connection` (made by ``connect`` on the thread) and the thread
    that runs every transaction on it."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *,
                 max_batch: int = MAX_BATCH, name: str = "hub-store") -> None:
        if max_batch < 1:
            raise StoreUsageError("max_batch must be at least 1")
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._max_batch = max_batch
        self._cv = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Job[Any]] = collections.deque()
        self._pending: set[_Job[Any]] = set()  # submitted, not yet answered (loop side)
        self._closing: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None  # set when nothing is pending (closing)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    # -- the loop's side ---------------------------------------------------------------

    async def run(self, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``body(conn)`` as one transaction on the thread (``BEGIN IMMEDIATE`` if
        ``write``) and return its result; see the module docstring for cancellation."""
        return await self._submit(body, write=write, raw=False)

    async def call(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body(conn)`` on the thread outside any transaction (pragmas)."""
        return await self._submit(body, write=False, raw=True)

    async def _submit(self, body: Callable[[sqlite3.Connection], T], *, write: bool,
                      raw: bool) -> T:
        if self._closing is not None:
            raise StoreUsageError("the store is closed")
        job = _Job(body, write, raw, asyncio.get_running_loop())
        self._pending.add(job)
        with self._cv:
            self._queue.append(job)
            self._cv.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            if not job.answered:
                with self._cv:
                    dropped = job.state is _State.QUEUED
                    if dropped:
                        job.state = _State.CANCELLED
                if dropped:
                    self._settled(job)
                else:
                    job.waiter = job.loop.create_future()
                    with contextlib.suppress(BaseException):  # its outcome is not ours
                        await uncancelled(job.waiter)
            raise

    def _answer(self, job: _Job[Any]) -> None:
        """On the loop: hand the thread's outcome to the caller (if it still waits)."""
        job.answered = True
        self._settled(job)
        if not job.future.done():
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.value)
        if job.waiter is not None and not job.waiter.done():
            job.waiter.set_result(None)

    def _settled(self, job: _Job[Any]) -> None:
        self._pending.discard(job)
        if not self._pending and self._idle is not None:
            self._idle.set()

    async def close(self) -> None:
        """Refuse new calls, wait for those queued or running, close the connection.
        Idempotent; a cancelled ``close()`` leaves the closing running to its end."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        while self._pending:
            self._idle = asyncio.Event()
            await uncancelled(self._idle.wait())
        job: _Job[None] = _Job(self._shut, False, True, asyncio.get_running_loop())
        with self._cv:
            self._queue.append(job)
            self._cv.notify()
        await uncancelled(asyncio.wait((job.future,)))

    def _shut(self, conn: sqlite3.Connection) -> None:
        self._stop = True
        conn.close()

    # -- the thread's side --------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                jobs = self._take()
            if jobs:
                self._run(jobs)

    def _take(self) -> list[_Job[Any]]:
        """Up to ``max_batch`` queued transactions, or one raw call (under the lock)."""
        jobs: list[_Job[Any]] = []
        while self._queue and len(jobs) < self._max_batch:
            job = self._queue[0]
            if job.state is _State.CANCELLED:
                self._queue.popleft()
                continue
            if job.raw and jobs:
                break
            self._queue.popleft()
            job.state = _State.RUNNING
            jobs.append(job)
            if job.raw:
                break
        return jobs

    def _run(self, jobs: list[_Job[Any]]) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            if jobs[0].raw:
                jobs[0].value = jobs[0].body(conn)
            else:
                _settle(conn)
                _batch(conn, jobs)
        except BaseException as exc:  # noqa: BLE001 - every outcome goes to its caller
            for job in jobs:
                job.error = store_error(exc)
        for job in jobs:
            try:
                job.loop.call_soon_threadsafe(self._answer, job)
            except RuntimeError:  # the caller's loop is closed: nobody waits
                self._pending.discard(job)


def _settle(conn: sqlite3.Connection) -> None:
    """Roll back a transaction a failed cleanup left open: nobody inherits it."""
    if conn.in_transaction:
        conn.rollback()


def _batch(conn: sqlite3.Connection, jobs: list[_Job[Any]]) -> None:
    """BEGIN, each job (in a savepoint of its own when there are several), COMMIT."""
    conn.execute("BEGIN IMMEDIATE" if any(job.write for job in jobs) else "BEGIN")
    try:
        if len(jobs) == 1:
            jobs[0].value = jobs[0].body(conn)
        else:
            for job in jobs:
                _savepoint(conn, job)
        conn.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - the outcome goes to the callers
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        if len(jobs) == 1:
            jobs[0].error = store_error(exc)
            return
        lost = StoreUnavailable(f"sqlite: the shared transaction failed: {store_error(exc)}")
        for job in jobs:
            job.error = lost


def _savepoint(conn: sqlite3.Connection, job: _Job[Any]) -> None:
    """One job of a batch: its failure rolls back only its own statements (a failure
    to roll back to the savepoint raises: the shared transaction is lost)."""
    conn.execute("SAVEPOINT job")
    try:
        job.value = job.body(conn)
    except Exception as exc:  # noqa: BLE001 - the job's own error, for its caller
        job.error = store_error(exc)
        conn.execute("ROLLBACK TO job")
    conn.execute("RELEASE job")


class ThreadedStore:
    """A store whose transactions run on a :class:`SqliteThread` (``self._thread``)."""

    _thread: SqliteThread

    async def close(self) -> None:
        """Refuse new calls, wait for the transactions in flight, close the connection."""
        await self._thread.close()


S = TypeVar("S", bound=ThreadedStore)


def in_thread(
    *, write: bool
) -> Callable[
    [Callable[Concatenate[S, sqlite3.Connection, P], T]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
]:
    """Make a synchronous store method's body one transaction on the store's thread: it
    gets the connection after ``self``. ``write=False`` for reads."""

    def decorate(
        body: Callable[Concatenate[S, sqlite3.Connection, P], T],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        @functools.wraps(body)
        async def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            def bound(conn: sqlite3.Connection) -> T:
                return body(self, conn, *args, **kwargs)

            return await self._thread.run(bound, write=write)

        return method

    return decorate


__all__ = ["MAX_BATCH", "SqliteThread", "ThreadedStore", "in_thread", "store_error"]
