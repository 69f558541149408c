"""Persistent state of the delivery hub: ordered logs, KeyPackages, rooms, Welcomes.

Two backends implement one :class:`Store` interface and pass one contract test suite:
:class:`SqliteStore` (embedded default) and :class:`PostgresStore` (several hub workers
sharing one database). Open either with :func:`open_store`. Nothing here imports ``mls``:
the store keeps opaque MLS bytes and public metadata only, never group secrets.
"""

from __future__ import annotations

from bridge.errors import (
    Conflict,
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


__all__ = [
    "AFFILIATIONS",
    "Ban",
    "Conflict",
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
    "Store",
    "StoreError",
    "StoreQuota",
    "StoreUnavailable",
    "StoreUsageError",
    "UnknownGroup",
    "WrongEpoch",
    "open_store",
]
