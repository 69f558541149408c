"""Persistent state of the delivery hub: ordered logs, KeyPackages, rooms, Welcomes.

Two backends implement one :class:`Store` interface and pass one contract test suite:
:class:`SqliteStore` (embedded default) and :class:`PostgresStore` (several hub workers
sharing one database). Open either with :func:`open_store`. Nothing here imports ``mls``:
the store keeps opaque MLS bytes and public metadata only, never group secrets.
"""

from __future__ import annotations

import contextlib
import sqlite3

import asyncpg  # type: ignore[import-untyped]

from bridge.errors import (
    Conflict,
    EpochMoved,
    KeyPackageUnavailable,
    ProposalsNotCovered,
    StoreError,
    StoreQuota,
    StoreUnavailable,
    StoreUsageError,
    UnknownGroup,
    WrongEpoch,
)
from bridge.hub.store.base import (
    AFFILIATIONS,
    Ban,
    GroupRecord,
    KeyPackageInfo,
    LogEntry,
    LogKind,
    Member,
    PendingWelcome,
    QueuedProposal,
    RoomRef,
    Store,
    StoredPair,
)
from bridge.hub.store.postgres import PostgresStore
from bridge.hub.store.sqlite import SqliteStore


async def open_store(url: str) -> Store:
    """Open a store by URL: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``sqlite:///:memory:`` or ``postgresql://user@host:port/db`` (``postgres://`` too)."""
    if url.startswith("sqlite:///"):
        return await SqliteStore.open(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresStore.open(url)
    raise StoreUsageError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")


_PAIRS_QUERY = ("SELECT xmpp_room, matrix_room, relay, changed_by, changed_at FROM room_pairs"
                " ORDER BY xmpp_room")


async def peek_room_pairs(url: str, timeout: float = 5.0) -> list[StoredPair]:
    """The run-time room pairs of the store at ``url``, read without writing anything
    (no migration; SQLite opened read-only, PostgreSQL in a read-only transaction), for
    ``mls-bridge check-config``. :class:`StoreError` if the store cannot be read (absent,
    unreachable, or older than the room pairs)."""
    try:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                    timeout=timeout)) as conn:
                rows = conn.execute(_PAIRS_QUERY).fetchall()
        elif url.startswith(("postgresql://", "postgres://")):
            conn = await asyncpg.connect(url, timeout=timeout)
            try:
                async with conn.transaction(readonly=True):
                    rows = await conn.fetch(_PAIRS_QUERY)
            finally:
                await conn.close()
        else:
            raise StoreUsageError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")
    except (sqlite3.Error, OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot read the store: {exc}") from exc
    return [StoredPair(str(r[0]), str(r[1]), bool(r[2]), str(r[3]), int(r[4])) for r in rows]


__all__ = [
    "AFFILIATIONS",
    "Ban",
    "Conflict",
    "EpochMoved",
    "GroupRecord",
    "KeyPackageInfo",
    "KeyPackageUnavailable",
    "LogEntry",
    "LogKind",
    "Member",
    "PendingWelcome",
    "PostgresStore",
    "ProposalsNotCovered",
    "QueuedProposal",
    "RoomRef",
    "SqliteStore",
    "StoredPair",
    "Store",
    "StoreError",
    "StoreQuota",
    "StoreUnavailable",
    "StoreUsageError",
    "UnknownGroup",
    "WrongEpoch",
    "open_store",
    "peek_room_pairs",
]
