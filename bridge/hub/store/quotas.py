"""Per-user quotas of the hub store besides the KeyPackage directory's
(``docs/SECURITY.md``, "Limits"): the groups one identity created that still exist, and
the Welcomes waiting for one recipient. Each is counted inside the transaction that
would add one more and raises :class:`StoreQuota` (nothing written) at the limit; on
PostgreSQL under a transaction-level advisory lock per identity, so concurrent
requests on several hub workers cannot overshoot (locks taken in sorted order: no
deadlock between two commits naming the same recipients)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from bridge.errors import StoreQuota

#: The advisory lock key space of these quotas ("mlsqt" read as a big-endian integer;
#: the second key is the identity's hashtext).
QUOTA_LOCK_KEY = int.from_bytes(b"mlsqt", "big") & 0x7FFFFFFF


def _refuse_groups(count: int, limit: int) -> None:
    if count >= limit:
        raise StoreQuota(f"this identity already created {limit} groups")


def _refuse_welcomes(counts: Sequence[tuple[str, int]], limit: int) -> None:
    full = sorted(recipient for recipient, count in counts if count >= limit)
    if full:
        raise StoreQuota(f"{limit} Welcomes already wait for {', '.join(full)}")


def sqlite_groups(conn: sqlite3.Connection, creator: str, limit: int) -> None:
    """:class:`StoreQuota` if ``creator`` already has ``limit`` groups (0: no limit)."""
    if limit and creator:
        rows = conn.execute("SELECT count(*) FROM groups WHERE creator = ?",
                            (creator,)).fetchall()
        _refuse_groups(int(next(iter(rows))[0]), limit)


def sqlite_welcomes(conn: sqlite3.Connection, recipients: Sequence[str], limit: int) -> None:
    """:class:`StoreQuota` if a recipient already has ``limit`` Welcomes waiting."""
    if limit and recipients:
        marks = ", ".join("?" * len(recipients))
        rows = conn.execute(
            f"SELECT recipient, count(*) FROM welcome_deliveries WHERE recipient IN ({marks})"
            " GROUP BY recipient", tuple(recipients)).fetchall()
        _refuse_welcomes([(str(row[0]), int(row[1])) for row in rows], limit)


async def _lock(conn: Any, identities: Sequence[str]) -> None:
    for identity in sorted(set(identities)):
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", QUOTA_LOCK_KEY,
                           identity)


async def postgres_groups(conn: Any, creator: str, limit: int) -> None:
    """As :func:`sqlite_groups`, under the creator's advisory lock."""
    if limit and creator:
        await _lock(conn, [creator])
        _refuse_groups(int(await conn.fetchval(
            "SELECT count(*) FROM groups WHERE creator = $1", creator)), limit)


async def postgres_welcomes(conn: Any, recipients: Sequence[str], limit: int) -> None:
    """As :func:`sqlite_welcomes`, under each recipient's advisory lock."""
    if limit and recipients:
        await _lock(conn, recipients)
        rows = await conn.fetch(
            "SELECT recipient, count(*) FROM welcome_deliveries"
            " WHERE recipient = ANY($1::text[]) GROUP BY recipient", list(recipients))
        _refuse_welcomes([(str(row[0]), int(row[1])) for row in rows], limit)


__all__ = ["QUOTA_LOCK_KEY", "postgres_groups", "postgres_welcomes", "sqlite_groups",
           "sqlite_welcomes"]
