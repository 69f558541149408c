"""Store transactions that a caller's cancellation cannot cut in half.

Any store call may be cancelled: a ``wait_for`` timeout, a client that went away, a task
stopped at shutdown. If the cancellation landed inside the transaction (while its BEGIN,
a statement, COMMIT or ROLLBACK is in flight) the connection could be left inside a
transaction, and every later call would inherit it. aiosqlite makes this easy to hit: a
cancelled ``await conn.execute(...)`` still runs on the connection's worker thread.

So both backends run each transaction -- wait for the connection, BEGIN, body,
COMMIT or ROLLBACK, hand the connection back -- as one task of its own
(:meth:`Transactions.run`), which the caller only awaits. A caller cancelled before its
transaction began (still waiting for the connection) cancels that task: nothing
happened. A caller cancelled after it began waits for the task to end, committed or
rolled back, and then raises :class:`asyncio.CancelledError`: the call took effect 0 or
1 times and is settled either way, so a following call sees its outcome. The task itself
is cancelled only when the whole event loop shuts down; each backend's cleanup holds
under that too (:func:`uncancelled`).

:meth:`Transactions.close` refuses new calls at once (:class:`StoreUsageError`), waits for
every transaction in flight, and only then releases the connections.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from bridge.errors import StoreUnavailable, StoreUsageError

T = TypeVar("T")
C = TypeVar("C")
P = ParamSpec("P")


class Flight:
    """One transaction's progress, shared by its task and its caller."""

    __slots__ = ("began",)

    def __init__(self) -> None:
        self.began = False  # set once the transaction holds its connection


async def uncancelled(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to its end even if this task is cancelled meanwhile.

    The cancellation is not lost: it is raised once the awaitable is done (its own
    result or error is then dropped: the caller asked to stop).
    """
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation takes its place
        raise asyncio.CancelledError
    return future.result()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Transactions:
    """The transactions in flight on one store, and its closing."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Task[None] | None = None

    async def run(self, transaction: Callable[[Flight], Coroutine[Any, Any, T]]) -> T:
        """Run ``transaction(flight)`` as a task of its own and return its result.

        The backend's coroutine sets ``flight.began`` once it holds its connection.
        """
        if self._closing is not None:
            raise StoreUsageError("the store is closed")
        flight = Flight()
        task = asyncio.get_running_loop().create_task(transaction(flight))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # this caller was cancelled
                if not flight.began:
                    task.cancel()
                with contextlib.suppress(BaseException):  # its outcome is not ours to see
                    await uncancelled(task)
                raise
            if task.cancelled() and not _being_cancelled():
                # Only an event loop shutting down cancels the task itself.
                raise StoreUnavailable("the store transaction was cancelled") from None
            raise

    async def close(self, release: Callable[[], Awaitable[None]]) -> None:
        """Refuse new transactions, wait for those in flight, then ``release()``.

        Idempotent; a cancelled ``close()`` leaves the closing running to its end.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(release))
        await asyncio.shield(self._closing)

    async def _close(self, release: Callable[[], Awaitable[None]]) -> None:
        try:
            while self._running:
                await uncancelled(asyncio.wait(set(self._running)))
        finally:
            await uncancelled(release())


class TransactionalStore(abc.ABC, Generic[C]):
    """What both backends share: each call's transaction runs in a task of its own on the
    driver connection type ``C``, and :meth:`close` waits for those in flight."""

    def __init__(self) -> None:
        self._transactions = Transactions()

    async def close(self) -> None:
        """Refuse new calls, wait for the transactions in flight, release connections."""
        await self._transactions.close(self._release)

    async def _run(self, body: Callable[[C], Awaitable[T]], *, write: bool) -> T:
        return await self._transactions.run(functools.partial(self._transaction, body, write))

    @abc.abstractmethod
    async def _transaction(
        self, body: Callable[[C], Awaitable[T]], write: bool, flight: Flight
    ) -> T:
        """Get a connection (then set ``flight.began``), BEGIN, ``body(conn)``, COMMIT;
        on any exception roll back and leave the connection fit for the next caller."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Close the connections (every transaction has ended)."""


S = TypeVar("S", bound=TransactionalStore[Any])


def transaction(
    *, write: bool
) -> Callable[
    [Callable[Concatenate[S, C, P], Awaitable[T]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
]:
    """Make a store method's body one transaction: it gets the connection after ``self``.

    The decorated method is called without the connection; its body runs in the
    transaction's own task (see the module docstring). ``write=False`` for reads.
    """

    def decorate(
        body: Callable[Concatenate[S, C, P], Awaitable[T]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        @functools.wraps(body)
        async def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            async def bound(conn: C) -> T:
                return await body(self, conn, *args, **kwargs)

            return await self._run(bound, write=write)

        return method

    return decorate


__all__ = ["Flight", "TransactionalStore", "Transactions", "transaction", "uncancelled"]
