"""The KeyPackage directory and the XMPP room affiliations of :class:`SqliteStore`
(a mixin: the same transactions, kept apart so each module stays one concern).

Quotas and outstanding claims are checked inside the transaction that writes, so
concurrent requests cannot overshoot them (``BEGIN IMMEDIATE`` serialises writers);
each method is one transaction on the store's thread (``sqlite_thread``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bridge.errors import (
    Conflict,
    KeyPackageUnavailable,
    StoreQuota,
    UnknownGroup,
)
from bridge.hub.store.base import KeyPackageInfo, StoredPair, check_affiliation
from bridge.hub.store.sqlite_thread import ThreadedStore, in_thread


class SqliteDirectory(ThreadedStore):
    """KeyPackages, claims and affiliations on the store's one connection."""

    # -- KeyPackage directory --------------------------------------------------------

    @in_thread(write=True)
    def publish_key_package(
        self, conn: sqlite3.Connection,
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
        if last_resort:
            conn.execute(
                "DELETE FROM key_packages WHERE user_id = ? AND device = ?"
                " AND cipher_suite = ? AND last_resort = 1",
                (user, device, cipher_suite),
            )
        if conn.execute("SELECT 1 FROM key_packages WHERE ref = ?", (ref,)).fetchall():
            raise Conflict(f"KeyPackage {ref.hex()} already published")
        _check_quota(conn, user, device, now, max_per_device, max_devices)
        conn.execute(
            "INSERT INTO key_packages (ref, user_id, device, cipher_suite, key_package,"
            " expires_at, last_resort) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ref, user, device, cipher_suite, key_package, expires_at, int(last_resort)),
        )
        conn.execute(
            "INSERT INTO key_package_refs (ref, user_id, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (ref) DO NOTHING",
            (ref, user, expires_at),
        )

    @in_thread(write=True)
    def claim_key_package(
        self, conn: sqlite3.Connection, user: str, cipher_suite: int, now: int,
        device: str | None = None, *, group_id: bytes | None = None, claimer: str = "",
        max_outstanding: int = 0, outstanding_since: int = 0,
    ) -> bytes:
        where = "user_id = ? AND cipher_suite = ? AND expires_at >= ? AND last_resort = ?"
        params: tuple[Any, ...] = (user, cipher_suite, now)
        if device is not None:
            where += " AND device = ?"
        if group_id is not None:
            _check_claims(conn, group_id, user, claimer, max_outstanding, outstanding_since)
        rows = conn.execute(
            "DELETE FROM key_packages WHERE ref = (SELECT ref FROM key_packages"
            f" WHERE {where} ORDER BY expires_at, ref LIMIT 1) RETURNING key_package",
            (*params, 0, *((device,) if device is not None else ())),
        ).fetchall()
        if not rows:
            rows = conn.execute(
                f"SELECT key_package FROM key_packages WHERE {where}"
                " ORDER BY expires_at DESC, ref LIMIT 1",
                (*params, 1, *((device,) if device is not None else ())),
            ).fetchall()
        if not rows:
            raise KeyPackageUnavailable(user, cipher_suite, device)
        if group_id is not None:
            conn.execute(
                "INSERT INTO key_package_claims (group_id, target, claimer, claimed_at)"
                " VALUES (?, ?, ?, ?)", (group_id, user, claimer, now))
        return bytes(next(iter(rows))[0])

    @in_thread(write=False)
    def list_key_packages(
        self, conn: sqlite3.Connection, user: str, device: str | None = None
    ) -> list[KeyPackageInfo]:
        query = (
            "SELECT ref, user_id, device, cipher_suite, expires_at, last_resort"
            " FROM key_packages WHERE user_id = ?"
        )
        params: tuple[str, ...] = (user,)
        if device is not None:
            query += " AND device = ?"
            params = (user, device)
        rows = conn.execute(
            query + " ORDER BY device, cipher_suite, expires_at, ref", params
        ).fetchall()
        return [
            KeyPackageInfo(bytes(ref), user_id, dev, suite, expires_at, bool(last_resort))
            for ref, user_id, dev, suite, expires_at, last_resort in rows
        ]

    @in_thread(write=True)
    def purge_expired(self, conn: sqlite3.Connection, now: int) -> int:
        conn.execute("DELETE FROM key_package_refs WHERE expires_at < ?", (now,))
        cursor = conn.execute("DELETE FROM key_packages WHERE expires_at < ?", (now,))
        return cursor.rowcount

    @in_thread(write=False)
    def key_package_publisher(
        self, conn: sqlite3.Connection, ref: bytes
                                    ) -> str | None:
        rows = conn.execute(
            "SELECT user_id FROM key_package_refs WHERE ref = ?", (ref,)).fetchall()
        return str(next(iter(rows))[0]) if rows else None

    # -- XMPP room affiliations --------------------------------------------------------

    @in_thread(write=True)
    def set_affiliation(
        self, conn: sqlite3.Connection, room: str, identity: str, affiliation: str
    ) -> None:
        check_affiliation(affiliation)
        if affiliation == "none":
            conn.execute("DELETE FROM room_affiliations WHERE room = ?"
                               " AND identity = ?", (room, identity))
            return
        conn.execute(
            "INSERT INTO room_affiliations (room, identity, affiliation) VALUES (?, ?, ?)"
            " ON CONFLICT (room, identity) DO UPDATE SET affiliation = excluded.affiliation",
            (room, identity, affiliation))

    @in_thread(write=False)
    def room_affiliations(self, conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
        rows = conn.execute(
            "SELECT room, identity, affiliation FROM room_affiliations").fetchall()
        found: dict[str, dict[str, str]] = {}
        for room, identity, affiliation in rows:
            found.setdefault(str(room), {})[str(identity)] = str(affiliation)
        return found

    # -- room pairs bridged at run time -----------------------------------------------

    @in_thread(write=True)
    def save_room_pair(self, conn: sqlite3.Connection, pair: StoredPair) -> None:
        rows = conn.execute(
            "SELECT xmpp_room FROM room_pairs WHERE matrix_room = ? AND xmpp_room != ?",
            (pair.matrix_room, pair.xmpp_room)).fetchall()
        if list(rows):
            raise Conflict(f"{pair.matrix_room} is paired with another XMPP room")
        conn.execute(
            "INSERT INTO room_pairs (xmpp_room, matrix_room, relay, changed_by, changed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (xmpp_room) DO UPDATE SET"
            " relay = excluded.relay, changed_by = excluded.changed_by,"
            " changed_at = excluded.changed_at WHERE matrix_room = excluded.matrix_room",
            (pair.xmpp_room, pair.matrix_room, int(pair.relay), pair.changed_by,
             pair.changed_at))
        rows = conn.execute(
            "SELECT matrix_room FROM room_pairs WHERE xmpp_room = ?", (pair.xmpp_room,)).fetchall()
        if [str(row[0]) for row in rows] != [pair.matrix_room]:
            raise Conflict(f"{pair.xmpp_room} is paired with another Matrix room")

    @in_thread(write=True)
    def delete_room_pair(self, conn: sqlite3.Connection, xmpp_room: str) -> bool:
        cursor = conn.execute("DELETE FROM room_pairs WHERE xmpp_room = ?",
                                    (xmpp_room,))
        return cursor.rowcount > 0

    @in_thread(write=False)
    def room_pairs(self, conn: sqlite3.Connection) -> list[StoredPair]:
        rows = conn.execute(
            "SELECT xmpp_room, matrix_room, relay, changed_by, changed_at FROM room_pairs"
            " ORDER BY xmpp_room").fetchall()
        return [StoredPair(str(r[0]), str(r[1]), bool(r[2]), str(r[3]), int(r[4]))
                for r in rows]

def _count(conn: sqlite3.Connection, query: str, params: tuple[Any, ...]) -> int:
    rows = list(conn.execute(query, params).fetchall())
    return int(rows[0][0])


def _check_quota(conn: sqlite3.Connection, user: str, device: str, now: int,
                       max_per_device: int, max_devices: int) -> None:
    if max_per_device and _count(
            conn, "SELECT count(*) FROM key_packages WHERE user_id = ? AND device = ?"
                  " AND expires_at >= ?", (user, device, now)) >= max_per_device:
        raise StoreQuota(f"device {device!r} already holds {max_per_device} KeyPackages")
    if max_devices:
        rows = conn.execute(
            "SELECT DISTINCT device FROM key_packages WHERE user_id = ? AND expires_at >= ?",
            (user, now)).fetchall()
        devices = {str(row[0]) for row in rows}
        if device not in devices and len(devices) >= max_devices:
            raise StoreQuota(f"the user already has {max_devices} devices")


def _check_claims(conn: sqlite3.Connection, group_id: bytes, target: str,
                        claimer: str, limit: int, since: int) -> None:
    if not conn.execute("SELECT 1 FROM groups WHERE group_id = ?", (group_id,)).fetchall():
        raise UnknownGroup(group_id)
    conn.execute("DELETE FROM key_package_claims WHERE claimed_at < ?", (since,))
    if not limit:
        return
    by_group = _count(conn, "SELECT count(*) FROM key_package_claims WHERE group_id = ?"
                                  " AND target = ?", (group_id, target))
    by_claimer = _count(conn, "SELECT count(*) FROM key_package_claims WHERE claimer = ?"
                                    " AND target = ?", (claimer, target))
    if max(by_group, by_claimer) >= limit:
        raise StoreQuota(f"{limit} claims of this user's KeyPackages are outstanding")


__all__ = ["SqliteDirectory"]
