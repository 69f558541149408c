"""The KeyPackage directory and the XMPP room affiliations of :class:`PostgresStore`
(a mixin: the same transactions, kept apart so each module stays one concern).

Quotas and outstanding claims are checked inside the transaction that writes, under a
transaction-level advisory lock on the user (``pg_advisory_xact_lock``), so concurrent
requests on several hub workers cannot overshoot them; each method is one transaction
of the store (``transactions``).
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bridge.errors import (
    Conflict,
    KeyPackageUnavailable,
    StoreQuota,
    UnknownGroup,
)
from bridge.hub.store.base import KeyPackageInfo, StoredPair, check_affiliation
from bridge.hub.store.transactions import TransactionalStore, transaction

# The advisory lock key space of per-user directory locks (the second key is the
# user's hashtext): "mlskp" read as a big-endian integer.
DIRECTORY_LOCK_KEY = int.from_bytes(b"mlskp", "big") & 0x7FFFFFFF


class PostgresDirectory(TransactionalStore[asyncpg.Connection]):
    """KeyPackages, claims and affiliations on the store's pool."""

    # -- KeyPackage directory --------------------------------------------------------

    @transaction(write=True)
    async def publish_key_package(
        self,
        conn: asyncpg.Connection,
        user: str,
        device: str,
        cipher_suite: int,
        ref: bytes,
        key_package: bytes,
        expires_at: int,
        last_resort: bool = False,
        *,
        now: int = 0,
        max_per_device: int = 0,
        max_devices: int = 0,
    ) -> None:
        await _lock_user(conn, user)
        if last_resort:
            await conn.execute(
                "DELETE FROM key_packages WHERE user_id = $1 AND device = $2"
                " AND cipher_suite = $3 AND last_resort",
                user,
                device,
                cipher_suite,
            )
        await _check_quota(conn, user, device, now, max_per_device, max_devices)
        inserted = await conn.fetchval(
            "INSERT INTO key_packages (ref, user_id, device, cipher_suite, key_package,"
            " expires_at, last_resort) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (ref) DO NOTHING RETURNING true",
            ref,
            user,
            device,
            cipher_suite,
            key_package,
            expires_at,
            last_resort,
        )
        if not inserted:
            raise Conflict(f"KeyPackage {ref.hex()} already published")
        await conn.execute(
            "INSERT INTO key_package_refs (ref, user_id, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (ref) DO NOTHING",
            ref,
            user,
            expires_at,
        )

    @transaction(write=True)
    async def claim_key_package(
        self, conn: asyncpg.Connection, user: str, cipher_suite: int, now: int,
        device: str | None = None, *, group_id: bytes | None = None, claimer: str = "",
        max_outstanding: int = 0, outstanding_since: int = 0,
    ) -> bytes:
        where = (
            "user_id = $1 AND cipher_suite = $2 AND expires_at >= $3"
            " AND ($4::text IS NULL OR device = $4)"
        )
        if group_id is not None:
            await _lock_user(conn, user)
            await _check_claims(conn, group_id, user, claimer, max_outstanding,
                                outstanding_since)
        claimed = await conn.fetchval(
            "DELETE FROM key_packages WHERE ref = (SELECT ref FROM key_packages"
            f" WHERE {where} AND NOT last_resort ORDER BY expires_at, ref LIMIT 1"
            " FOR UPDATE SKIP LOCKED) RETURNING key_package",
            user,
            cipher_suite,
            now,
            device,
        )
        if claimed is None:
            claimed = await conn.fetchval(
                f"SELECT key_package FROM key_packages WHERE {where} AND last_resort"
                " ORDER BY expires_at DESC, ref LIMIT 1",
                user,
                cipher_suite,
                now,
                device,
            )
        if claimed is None:
            raise KeyPackageUnavailable(user, cipher_suite, device)
        if group_id is not None:
            await conn.execute(
                "INSERT INTO key_package_claims (group_id, target, claimer, claimed_at)"
                " VALUES ($1, $2, $3, $4)", group_id, user, claimer, now)
        return bytes(claimed)

    @transaction(write=False)
    async def list_key_packages(
        self, conn: asyncpg.Connection, user: str, device: str | None = None
    ) -> list[KeyPackageInfo]:
        rows = await conn.fetch(
            "SELECT ref, user_id, device, cipher_suite, expires_at, last_resort"
            " FROM key_packages WHERE user_id = $1 AND ($2::text IS NULL OR device = $2)"
            " ORDER BY device, cipher_suite, expires_at, ref",
            user,
            device,
        )
        return [KeyPackageInfo(*row) for row in rows]

    @transaction(write=True)
    async def purge_expired(self, conn: asyncpg.Connection, now: int) -> int:
        await conn.execute("DELETE FROM key_package_refs WHERE expires_at < $1", now)
        status = await conn.execute("DELETE FROM key_packages WHERE expires_at < $1", now)
        return int(status.split()[-1])

    @transaction(write=False)
    async def key_package_publisher(self, conn: asyncpg.Connection, ref: bytes
                                    ) -> str | None:
        user = await conn.fetchval("SELECT user_id FROM key_package_refs WHERE ref = $1", ref)
        return None if user is None else str(user)

    # -- XMPP room affiliations --------------------------------------------------------

    @transaction(write=True)
    async def set_affiliation(
        self, conn: asyncpg.Connection, room: str, identity: str, affiliation: str
    ) -> None:
        check_affiliation(affiliation)
        if affiliation == "none":
            await conn.execute("DELETE FROM room_affiliations WHERE room = $1"
                               " AND identity = $2", room, identity)
            return
        await conn.execute(
            "INSERT INTO room_affiliations (room, identity, affiliation)"
            " VALUES ($1, $2, $3) ON CONFLICT (room, identity)"
            " DO UPDATE SET affiliation = excluded.affiliation", room, identity, affiliation)

    @transaction(write=False)
    async def room_affiliations(self, conn: asyncpg.Connection) -> dict[str, dict[str, str]]:
        rows = await conn.fetch("SELECT room, identity, affiliation FROM room_affiliations")
        found: dict[str, dict[str, str]] = {}
        for row in rows:
            found.setdefault(str(row[0]), {})[str(row[1])] = str(row[2])
        return found

    # -- room pairs bridged at run time -----------------------------------------------

    @transaction(write=True)
    async def save_room_pair(self, conn: asyncpg.Connection, pair: StoredPair) -> None:
        taken = await conn.fetchval(
            "SELECT xmpp_room FROM room_pairs WHERE matrix_room = $1 AND xmpp_room != $2",
            pair.matrix_room, pair.xmpp_room)
        if taken is not None:
            raise Conflict(f"{pair.matrix_room} is paired with another XMPP room")
        await conn.execute(
            "INSERT INTO room_pairs (xmpp_room, matrix_room, relay, changed_by, changed_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (xmpp_room) DO UPDATE SET"
            " relay = excluded.relay, changed_by = excluded.changed_by,"
            " changed_at = excluded.changed_at"
            " WHERE room_pairs.matrix_room = excluded.matrix_room",
            pair.xmpp_room, pair.matrix_room, pair.relay, pair.changed_by, pair.changed_at)
        held = await conn.fetchval("SELECT matrix_room FROM room_pairs WHERE xmpp_room = $1",
                                   pair.xmpp_room)
        if held != pair.matrix_room:
            raise Conflict(f"{pair.xmpp_room} is paired with another Matrix room")

    @transaction(write=True)
    async def delete_room_pair(self, conn: asyncpg.Connection, xmpp_room: str) -> bool:
        status = await conn.execute("DELETE FROM room_pairs WHERE xmpp_room = $1", xmpp_room)
        return str(status) != "DELETE 0"

    @transaction(write=False)
    async def room_pairs(self, conn: asyncpg.Connection) -> list[StoredPair]:
        rows = await conn.fetch(
            "SELECT xmpp_room, matrix_room, relay, changed_by, changed_at FROM room_pairs"
            " ORDER BY xmpp_room")
        return [StoredPair(str(r[0]), str(r[1]), bool(r[2]), str(r[3]), int(r[4]))
                for r in rows]


async def _lock_user(conn: Any, user: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", DIRECTORY_LOCK_KEY,
                       user)


async def _check_quota(conn: Any, user: str, device: str, now: int, max_per_device: int,
                       max_devices: int) -> None:
    if max_per_device and int(await conn.fetchval(
            "SELECT count(*) FROM key_packages WHERE user_id = $1 AND device = $2"
            " AND expires_at >= $3", user, device, now)) >= max_per_device:
        raise StoreQuota(f"device {device!r} already holds {max_per_device} KeyPackages")
    if max_devices:
        rows = await conn.fetch(
            "SELECT DISTINCT device FROM key_packages WHERE user_id = $1 AND expires_at >= $2",
            user, now)
        devices = {str(row[0]) for row in rows}
        if device not in devices and len(devices) >= max_devices:
            raise StoreQuota(f"the user already has {max_devices} devices")


async def _check_claims(conn: Any, group_id: bytes, target: str, claimer: str, limit: int,
                        since: int) -> None:
    if not await conn.fetchval("SELECT true FROM groups WHERE group_id = $1", group_id):
        raise UnknownGroup(group_id)
    await conn.execute("DELETE FROM key_package_claims WHERE claimed_at < $1", since)
    if not limit:
        return
    by_group = int(await conn.fetchval(
        "SELECT count(*) FROM key_package_claims WHERE group_id = $1 AND target = $2",
        group_id, target))
    by_claimer = int(await conn.fetchval(
        "SELECT count(*) FROM key_package_claims WHERE claimer = $1 AND target = $2",
        claimer, target))
    if max(by_group, by_claimer) >= limit:
        raise StoreQuota(f"{limit} claims of this user's KeyPackages are outstanding")


__all__ = ["DIRECTORY_LOCK_KEY", "PostgresDirectory"]
