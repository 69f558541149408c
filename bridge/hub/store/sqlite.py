"""The embedded hub store on SQLite (aiosqlite).

Durability of accepted commits matters more than speed here: once the hub has told a
client "accepted, seq N" and fanned the commit out, losing it would fork the group. So the
database runs with ``synchronous=FULL`` in WAL mode (every commit fsyncs the WAL), foreign
keys on, and a busy timeout. Each state transition is one ``BEGIN IMMEDIATE``
transaction: SQLite's single writer lock orders commits even between processes sharing
the file, and an in-process :class:`asyncio.Lock` serialises coroutines on the one
connection. Migrations are numbered SQL files applied in order and recorded in
``schema_version``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from os import PathLike
from typing import Any

import aiosqlite

from bridge.errors import (
    Conflict,
    KeyPackageUnavailable,
    ProposalsNotCovered,
    StoreUnavailable,
    StoreUsageError,
    UnknownGroup,
    WrongEpoch,
)
from bridge.hub.store.base import (
    GroupRecord,
    KeyPackageInfo,
    LogEntry,
    LogKind,
    Member,
    PendingWelcome,
    QueuedProposal,
    RoomRef,
    Store,
    check_kind,
    check_limit,
    check_members,
    check_welcome,
    load_migrations,
    missing_proposals,
)

_GROUP_COLUMNS = "group_id, cipher_suite, epoch, next_seq, group_info, ratchet_tree, hub_state"


def split_statements(script: str) -> list[str]:
    """Split a migration into statements (``sqlite3.complete_statement`` decides where)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    leftover = "\n".join(
        line for line in pending.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if leftover:
        raise StoreUsageError(f"unterminated SQL statement in migration: {leftover[:80]!r}")
    return statements


class SqliteStore(Store):
    """A :class:`Store` in one SQLite file. Open with :meth:`SqliteStore.open`."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._path = path
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: str | PathLike[str], *, busy_timeout_ms: int = 10_000) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and apply migrations."""
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc}") from exc
        store = cls(conn, str(path))
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await store._migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        async with self._lock:
            if not self._closed:
                self._closed = True
                await self._conn.close()

    @asynccontextmanager
    async def _tx(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction: BEGIN IMMEDIATE for writes, a deferred BEGIN for reads."""
        async with self._lock:
            if self._closed:
                raise StoreUsageError("the store is closed")
            conn = self._conn
            try:
                await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:  # False if COMMIT went through before a cancel
                    await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise Conflict(f"sqlite: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailable(f"sqlite: {exc}") from exc
                raise

    async def _migrate(self) -> None:
        migrations = load_migrations("sqlite")
        async with self._tx() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )
            current = await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version")
            if current > len(migrations):
                raise StoreUsageError(f"database schema {current} is newer than this code")
            for version, script in migrations[current:]:
                for statement in split_statements(script):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    async def schema_version(self) -> int:
        async with self._tx(write=False) as conn:
            return await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version")

    # -- groups --------------------------------------------------------------------

    async def create_group(
        self,
        group_id: bytes,
        cipher_suite: int,
        *,
        epoch: int = 0,
        group_info: bytes | None = None,
        ratchet_tree: bytes | None = None,
        hub_state: bytes = b"",
        members: Sequence[Member] | None = None,
    ) -> GroupRecord:
        if epoch < 0:
            raise StoreUsageError("epoch must be non-negative")
        record = GroupRecord(group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state)
        async with self._tx() as conn:
            if await _group_row(conn, group_id) is not None:
                raise Conflict(f"group {group_id.hex()} exists")
            await conn.execute(
                f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state),
            )
            if members is not None:
                await _replace_members(conn, group_id, members)
        return record

    async def get_group(self, group_id: bytes) -> GroupRecord:
        async with self._tx(write=False) as conn:
            row = await _group_row(conn, group_id)
        if row is None:
            raise UnknownGroup(group_id)
        return GroupRecord(*row)

    async def delete_group(self, group_id: bytes) -> bool:
        async with self._tx() as conn:
            cursor = await conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
            return cursor.rowcount > 0

    async def accept_commit(
        self,
        group_id: bytes,
        expected_epoch: int,
        commit: bytes,
        *,
        hub_state: bytes,
        group_info: bytes | None = None,
        ratchet_tree: bytes | None = None,
        welcome: bytes | None = None,
        welcome_recipients: Collection[str] = (),
        sender: str = "",
        covered_proposals: Collection[bytes] | None = None,
        members: Sequence[Member] | None = None,
    ) -> int:
        recipients = check_welcome(welcome, welcome_recipients)
        async with self._tx() as conn:
            epoch, seq = await _epoch_and_next_seq(conn, group_id)
            if epoch != expected_epoch:
                raise WrongEpoch(epoch)
            queued = await conn.execute_fetchall(
                "SELECT proposal_ref FROM queued_proposals WHERE group_id = ? AND epoch = ?"
                " ORDER BY seq",
                (group_id, epoch),
            )
            missing = missing_proposals([bytes(row[0]) for row in queued], covered_proposals)
            if missing:
                raise ProposalsNotCovered(missing)
            await conn.execute(
                "INSERT INTO log (group_id, seq, epoch, kind, payload, sender)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (group_id, seq, epoch, LogKind.COMMIT.value, commit, sender),
            )
            await conn.execute(
                "UPDATE groups SET epoch = ?, next_seq = ?, group_info = ?, ratchet_tree = ?,"
                " hub_state = ? WHERE group_id = ?",
                (epoch + 1, seq + 1, group_info, ratchet_tree, hub_state, group_id),
            )
            await conn.execute(
                "DELETE FROM queued_proposals WHERE group_id = ? AND epoch <= ?", (group_id, epoch)
            )
            if welcome is not None:
                cursor = await conn.execute(
                    "INSERT INTO welcomes (group_id, epoch, commit_seq, welcome)"
                    " VALUES (?, ?, ?, ?)",
                    (group_id, epoch + 1, seq, welcome),
                )
                await conn.executemany(
                    "INSERT INTO welcome_deliveries (welcome_id, recipient) VALUES (?, ?)",
                    [(cursor.lastrowid, recipient) for recipient in recipients],
                )
            if members is not None:
                await _replace_members(conn, group_id, members)
        return seq

    # -- the log -------------------------------------------------------------------

    async def append_message(
        self, group_id: bytes, epoch: int, kind: LogKind | str, payload: bytes, sender: str
    ) -> int:
        parsed = check_kind(kind)
        async with self._tx() as conn:
            return await _append(conn, group_id, epoch, parsed, payload, sender)

    async def log_since(
        self, group_id: bytes, after_seq: int = 0, limit: int = 100
    ) -> list[LogEntry]:
        check_limit(after_seq, limit)
        async with self._tx(write=False) as conn:
            await _epoch_and_next_seq(conn, group_id)
            rows = await conn.execute_fetchall(
                "SELECT seq, epoch, kind, payload, sender FROM log"
                " WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (group_id, after_seq, limit),
            )
        return [
            LogEntry(seq, epoch, LogKind(kind), bytes(payload), sender)
            for seq, epoch, kind, payload, sender in rows
        ]

    # -- proposals -----------------------------------------------------------------

    async def queue_proposal(
        self, group_id: bytes, epoch: int, proposal_ref: bytes, payload: bytes, sender: str = ""
    ) -> int:
        async with self._tx() as conn:
            current, _ = await _epoch_and_next_seq(conn, group_id)
            if epoch != current:
                raise WrongEpoch(current)
            duplicate = await conn.execute_fetchall(
                "SELECT 1 FROM queued_proposals WHERE group_id = ? AND epoch = ?"
                " AND proposal_ref = ?",
                (group_id, epoch, proposal_ref),
            )
            if duplicate:
                raise Conflict(f"proposal {proposal_ref.hex()} already queued")
            seq = await _append(conn, group_id, epoch, LogKind.PROPOSAL, payload, sender)
            await conn.execute(
                "INSERT INTO queued_proposals (group_id, epoch, proposal_ref, seq)"
                " VALUES (?, ?, ?, ?)",
                (group_id, epoch, proposal_ref, seq),
            )
        return seq

    async def queued_proposals(self, group_id: bytes, epoch: int) -> list[QueuedProposal]:
        async with self._tx(write=False) as conn:
            await _epoch_and_next_seq(conn, group_id)
            rows = await conn.execute_fetchall(
                "SELECT q.proposal_ref, q.seq, q.epoch, l.payload, l.sender"
                " FROM queued_proposals q JOIN log l ON l.group_id = q.group_id AND l.seq = q.seq"
                " WHERE q.group_id = ? AND q.epoch = ? ORDER BY q.seq",
                (group_id, epoch),
            )
        return [
            QueuedProposal(bytes(ref), seq, ep, bytes(payload), sender)
            for ref, seq, ep, payload, sender in rows
        ]

    # -- members -------------------------------------------------------------------

    async def set_members(self, group_id: bytes, members: Sequence[Member]) -> None:
        async with self._tx() as conn:
            await _epoch_and_next_seq(conn, group_id)
            await _replace_members(conn, group_id, members)

    async def get_members(self, group_id: bytes) -> list[Member]:
        async with self._tx(write=False) as conn:
            await _epoch_and_next_seq(conn, group_id)
            rows = await conn.execute_fetchall(
                "SELECT leaf_index, identity FROM members WHERE group_id = ? ORDER BY leaf_index",
                (group_id,),
            )
        return [Member(leaf, identity) for leaf, identity in rows]

    # -- KeyPackage directory --------------------------------------------------------

    async def publish_key_package(
        self,
        user: str,
        device: str,
        cipher_suite: int,
        ref: bytes,
        key_package: bytes,
        expires_at: int,
        last_resort: bool = False,
    ) -> None:
        async with self._tx() as conn:
            if last_resort:
                await conn.execute(
                    "DELETE FROM key_packages WHERE user_id = ? AND device = ?"
                    " AND cipher_suite = ? AND last_resort = 1",
                    (user, device, cipher_suite),
                )
            if await conn.execute_fetchall("SELECT 1 FROM key_packages WHERE ref = ?", (ref,)):
                raise Conflict(f"KeyPackage {ref.hex()} already published")
            await conn.execute(
                "INSERT INTO key_packages (ref, user_id, device, cipher_suite, key_package,"
                " expires_at, last_resort) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ref, user, device, cipher_suite, key_package, expires_at, int(last_resort)),
            )
            await conn.execute(
                "INSERT INTO key_package_refs (ref, user_id, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (ref) DO NOTHING",
                (ref, user, expires_at),
            )

    async def claim_key_package(
        self, user: str, cipher_suite: int, now: int, device: str | None = None
    ) -> bytes:
        where = "user_id = ? AND cipher_suite = ? AND expires_at >= ? AND last_resort = ?"
        params: tuple[Any, ...] = (user, cipher_suite, now)
        if device is not None:
            where += " AND device = ?"
        async with self._tx() as conn:
            rows = await conn.execute_fetchall(
                "DELETE FROM key_packages WHERE ref = (SELECT ref FROM key_packages"
                f" WHERE {where} ORDER BY expires_at, ref LIMIT 1) RETURNING key_package",
                (*params, 0, *((device,) if device is not None else ())),
            )
            if not rows:
                rows = await conn.execute_fetchall(
                    f"SELECT key_package FROM key_packages WHERE {where}"
                    " ORDER BY expires_at DESC, ref LIMIT 1",
                    (*params, 1, *((device,) if device is not None else ())),
                )
        if not rows:
            raise KeyPackageUnavailable(user, cipher_suite, device)
        return bytes(next(iter(rows))[0])

    async def list_key_packages(self, user: str, device: str | None = None) -> list[KeyPackageInfo]:
        query = (
            "SELECT ref, user_id, device, cipher_suite, expires_at, last_resort"
            " FROM key_packages WHERE user_id = ?"
        )
        params: tuple[str, ...] = (user,)
        if device is not None:
            query += " AND device = ?"
            params = (user, device)
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall(
                query + " ORDER BY device, cipher_suite, expires_at, ref", params
            )
        return [
            KeyPackageInfo(bytes(ref), user_id, dev, suite, expires_at, bool(last_resort))
            for ref, user_id, dev, suite, expires_at, last_resort in rows
        ]

    async def purge_expired(self, now: int) -> int:
        async with self._tx() as conn:
            await conn.execute("DELETE FROM key_package_refs WHERE expires_at < ?", (now,))
            cursor = await conn.execute("DELETE FROM key_packages WHERE expires_at < ?", (now,))
            return cursor.rowcount

    async def key_package_publisher(self, ref: bytes) -> str | None:
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT user_id FROM key_package_refs WHERE ref = ?", (ref,))
        return str(next(iter(rows))[0]) if rows else None

    # -- rooms ---------------------------------------------------------------------

    async def attach_room(self, transport: str, room_id: str, group_id: bytes) -> None:
        async with self._tx() as conn:
            await _epoch_and_next_seq(conn, group_id)
            rows = await conn.execute_fetchall(
                "SELECT group_id FROM rooms WHERE transport = ? AND room_id = ?",
                (transport, room_id),
            )
            for (attached,) in rows:
                if bytes(attached) == group_id:
                    return
                raise Conflict(f"room {transport}:{room_id} is attached to another group")
            await conn.execute(
                "INSERT INTO rooms (transport, room_id, group_id) VALUES (?, ?, ?)",
                (transport, room_id, group_id),
            )

    async def room_group(self, transport: str, room_id: str) -> bytes | None:
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT group_id FROM rooms WHERE transport = ? AND room_id = ?",
                (transport, room_id),
            )
        return next((bytes(row[0]) for row in rows), None)

    async def group_rooms(self, group_id: bytes) -> list[RoomRef]:
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT transport, room_id FROM rooms WHERE group_id = ?"
                " ORDER BY transport, room_id",
                (group_id,),
            )
        return [RoomRef(transport, room_id) for transport, room_id in rows]

    async def detach_room(self, transport: str, room_id: str) -> bool:
        async with self._tx() as conn:
            cursor = await conn.execute(
                "DELETE FROM rooms WHERE transport = ? AND room_id = ?", (transport, room_id)
            )
            return cursor.rowcount > 0

    # -- Welcome delivery ------------------------------------------------------------

    async def pending_welcomes(self, recipient: str) -> list[PendingWelcome]:
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT w.welcome_id, d.recipient, w.group_id, w.epoch, w.commit_seq, w.welcome"
                " FROM welcome_deliveries d JOIN welcomes w ON w.welcome_id = d.welcome_id"
                " WHERE d.recipient = ? ORDER BY w.welcome_id",
                (recipient,),
            )
        return [
            PendingWelcome(wid, rcpt, bytes(gid), epoch, seq, bytes(welcome))
            for wid, rcpt, gid, epoch, seq, welcome in rows
        ]

    async def mark_delivered(self, welcome_id: int, recipient: str) -> bool:
        async with self._tx() as conn:
            cursor = await conn.execute(
                "DELETE FROM welcome_deliveries WHERE welcome_id = ? AND recipient = ?",
                (welcome_id, recipient),
            )
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                "DELETE FROM welcomes WHERE welcome_id = ? AND NOT EXISTS"
                " (SELECT 1 FROM welcome_deliveries WHERE welcome_id = ?)",
                (welcome_id, welcome_id),
            )
            return True

    # -- transport cursors -------------------------------------------------------------

    async def get_cursor(self, name: str) -> str | None:
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall("SELECT value FROM cursors WHERE name = ?", (name,))
        return next((str(row[0]) for row in rows), None)

    async def set_cursor(self, name: str, value: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO cursors (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    async def mark_seen(self, scope: str, key: str, at: int) -> bool:
        async with self._tx() as conn:
            cursor = await conn.execute(
                "INSERT INTO seen (scope, key, seen_at) VALUES (?, ?, ?)"
                " ON CONFLICT (scope, key) DO NOTHING", (scope, key, at))
            return cursor.rowcount == 1

    async def is_seen(self, scope: str, key: str) -> bool:
        async with self._tx(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT 1 FROM seen WHERE scope = ? AND key = ?", (scope, key))
        return bool(rows)

    async def prune_seen(self, before: int) -> int:
        async with self._tx() as conn:
            cursor = await conn.execute("DELETE FROM seen WHERE seen_at < ?", (before,))
            return cursor.rowcount


# -- statements shared by several operations (run inside an open transaction) -------


async def _scalar(conn: aiosqlite.Connection, query: str, params: tuple[Any, ...] = ()) -> int:
    rows = list(await conn.execute_fetchall(query, params))
    return int(rows[0][0])


async def _group_row(conn: aiosqlite.Connection, group_id: bytes) -> tuple[Any, ...] | None:
    rows = await conn.execute_fetchall(
        f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = ?", (group_id,)
    )
    for row in rows:
        gid, suite, epoch, next_seq, info, tree, state = row
        return (bytes(gid), suite, epoch, next_seq, _opt(info), _opt(tree), bytes(state))
    return None


def _opt(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


async def _epoch_and_next_seq(conn: aiosqlite.Connection, group_id: bytes) -> tuple[int, int]:
    """The group's epoch and next sequence number; :class:`UnknownGroup` if absent."""
    rows = await conn.execute_fetchall(
        "SELECT epoch, next_seq FROM groups WHERE group_id = ?", (group_id,)
    )
    for epoch, next_seq in rows:
        return int(epoch), int(next_seq)
    raise UnknownGroup(group_id)


async def _append(
    conn: aiosqlite.Connection,
    group_id: bytes,
    epoch: int,
    kind: LogKind,
    payload: bytes,
    sender: str,
) -> int:
    current, seq = await _epoch_and_next_seq(conn, group_id)
    if epoch < 0:
        raise StoreUsageError("epoch must be non-negative")
    if epoch > current:
        raise WrongEpoch(current)
    await conn.execute(
        "INSERT INTO log (group_id, seq, epoch, kind, payload, sender) VALUES (?, ?, ?, ?, ?, ?)",
        (group_id, seq, epoch, kind.value, payload, sender),
    )
    await conn.execute("UPDATE groups SET next_seq = ? WHERE group_id = ?", (seq + 1, group_id))
    return seq


async def _replace_members(
    conn: aiosqlite.Connection, group_id: bytes, members: Sequence[Member]
) -> None:
    normalised = check_members(members)
    await conn.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
    await conn.executemany(
        "INSERT INTO members (group_id, leaf_index, identity) VALUES (?, ?, ?)",
        [(group_id, leaf, identity) for leaf, identity in normalised],
    )


__all__ = ["SqliteStore", "split_statements"]
