"""The aiosqlite form of a store transaction, for the relay's secrets file
(:mod:`bridge.relay.secrets_file`); the hub's own SQLite store runs its transactions on
a thread of its own instead (:mod:`bridge.hub.store.sqlite_thread`).

A caller's cancellation cannot cut such a transaction in half: it runs as a task of its
own (:mod:`bridge.hub.store.transactions`), and its ROLLBACK is queued behind whatever
the transaction already sent. Driver errors become the store's (:func:`store_error`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiosqlite

from bridge.hub.store.sqlite_thread import store_error
from bridge.hub.store.transactions import Flight, T, uncancelled


async def sqlite_transaction(
    conn: aiosqlite.Connection, lock: asyncio.Lock,
    body: Callable[[aiosqlite.Connection], Awaitable[T]], write: bool, flight: Flight,
) -> T:
    """One transaction on a shared connection (``lock`` serializes its users): BEGIN
    IMMEDIATE for writes, a deferred BEGIN for reads. Runs as its own task (see
    ``transactions``)."""
    async with lock:
        flight.began = True
        try:
            await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            result = await body(conn)
            await conn.execute("COMMIT")
        except BaseException as exc:
            # The worker thread runs statements in the order they were sent, even
            # those whose await was cancelled, so this ROLLBACK comes after the
            # BEGIN, the body and any COMMIT already sent (and before any later
            # transaction's BEGIN); sqlite3's rollback() does nothing if no
            # transaction is open by then (the COMMIT went through).
            await uncancelled(conn.rollback())
            error = store_error(exc)
            if error is exc:
                raise
            raise error from exc
        return result


__all__ = ["sqlite_transaction"]
