"""The embedded hub store on SQLite (aiosqlite).

Durability of accepted commits matters more than speed here: once the hub has told a
client "accepted, seq N" and fanned the commit out, losing it would fork the group. So the
database runs with ``synchronous=FULL`` in WAL mode (every commit fsyncs the WAL), foreign
keys on, and a busy timeout. Each state transition is one ``BEGIN IMMEDIATE``
transaction: SQLite's single writer lock orders commits even between processes sharing
the file, and an in-process :class:`asyncio.Lock` serialises coroutines on the one
connection. Each transaction runs in a task of its own that a caller's cancellation does
not interrupt (``transactions``), so the one connection is never left inside one.
Migrations are numbered SQL files applied in order and recorded in
``schema_version``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from os import PathLike
from typing import Any

import aiosqlite

from bridge.errors import (
    Conflict,
    ProposalsNotCovered,
    StoreUnavailable,
    StoreUsageError,
    UnknownGroup,
    WrongEpoch,
)
from bridge.hub.store import quotas
from bridge.hub.store.base import (
    Ban,
    GroupRecord,
    LogEntry,
    LogKind,
    Member,
    PendingWelcome,
    QueuedProposal,
    RoomRef,
    Store,
    check_kind,
    check_limit,
    check_welcome,
    load_migrations,
    members_since,
    missing_proposals,
)
from bridge.hub.store.sqlite_directory import SqliteDirectory
from bridge.hub.store.transactions import Flight, T, transaction, uncancelled

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


async def sqlite_transaction(
    conn: aiosqlite.Connection, lock: asyncio.Lock,
    body: Callable[[aiosqlite.Connection], Awaitable[T]], write: bool, flight: Flight,
) -> T:
    """One transaction on a shared connection (``lock`` serializes its users): BEGIN
    IMMEDIATE for writes, a deferred BEGIN for reads. Runs as its own task (see
    ``transactions``); also the relay's secrets file's (``bridge.relay.secrets_file``)."""
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
            if isinstance(exc, sqlite3.IntegrityError):
                raise Conflict(f"sqlite: {exc}") from exc
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            raise
        return result


class SqliteStore(SqliteDirectory, Store):
    """A :class:`Store` in one SQLite file. Open with :meth:`SqliteStore.open`."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._path = path
        self._lock = asyncio.Lock()
        super().__init__()

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
            await uncancelled(store.close())
            raise
        return store

    async def _release(self) -> None:
        await self._conn.close()

    async def _transaction(
        self, body: Callable[[aiosqlite.Connection], Awaitable[T]], write: bool, flight: Flight
    ) -> T:
        return await sqlite_transaction(self._conn, self._lock, body, write, flight)

    @transaction(write=True)
    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        migrations = load_migrations("sqlite")
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

    @transaction(write=False)
    async def schema_version(self, conn: aiosqlite.Connection) -> int:
        return await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version")

    # -- groups --------------------------------------------------------------------

    @transaction(write=True)
    async def create_group(
        self,
        conn: aiosqlite.Connection,
        group_id: bytes,
        cipher_suite: int,
        *,
        epoch: int = 0,
        group_info: bytes | None = None,
        ratchet_tree: bytes | None = None,
        hub_state: bytes = b"",
        members: Sequence[Member] | None = None,
        creator: str = "",
        max_per_creator: int = 0,
    ) -> GroupRecord:
        if epoch < 0:
            raise StoreUsageError("epoch must be non-negative")
        if await _group_row(conn, group_id) is not None:
            raise Conflict(f"group {group_id.hex()} exists")
        await quotas.sqlite_groups(conn, creator, max_per_creator)
        await conn.execute(
            f"INSERT INTO groups ({_GROUP_COLUMNS}, creator) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state, creator),
        )
        if members is not None:
            await _replace_members(conn, group_id, members, epoch)
        return GroupRecord(group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state)

    @transaction(write=False)
    async def get_group(self, conn: aiosqlite.Connection, group_id: bytes) -> GroupRecord:
        row = await _group_row(conn, group_id)
        if row is None:
            raise UnknownGroup(group_id)
        return GroupRecord(*row)

    @transaction(write=True)
    async def delete_group(self, conn: aiosqlite.Connection, group_id: bytes) -> bool:
        cursor = await conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
        return cursor.rowcount > 0

    @transaction(write=True)
    async def accept_commit(
        self,
        conn: aiosqlite.Connection,
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
        max_pending_welcomes: int = 0,
    ) -> int:
        recipients = check_welcome(welcome, welcome_recipients)
        epoch, seq = await _epoch_and_next_seq(conn, group_id)
        if epoch != expected_epoch:
            raise WrongEpoch(epoch)
        await quotas.sqlite_welcomes(conn, recipients, max_pending_welcomes)
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
                "INSERT INTO welcomes (group_id, epoch, commit_seq, welcome) VALUES (?, ?, ?, ?)",
                (group_id, epoch + 1, seq, welcome),
            )
            await conn.executemany(
                "INSERT INTO welcome_deliveries (welcome_id, recipient) VALUES (?, ?)",
                [(cursor.lastrowid, recipient) for recipient in recipients],
            )
            await conn.executemany(
                "DELETE FROM key_package_claims WHERE group_id = ? AND target = ?",
                [(group_id, recipient) for recipient in recipients])
        if members is not None:
            await _replace_members(conn, group_id, members, epoch + 1)
        return seq

    # -- the log -------------------------------------------------------------------

    @transaction(write=True)
    async def append_message(
        self,
        conn: aiosqlite.Connection,
        group_id: bytes,
        epoch: int,
        kind: LogKind | str,
        payload: bytes,
        sender: str,
        *,
        replay_after: int | None = None,
    ) -> int:
        parsed = check_kind(kind)
        if replay_after is not None:
            for (seq,) in await conn.execute_fetchall(
                "SELECT seq FROM log WHERE group_id = ? AND seq > ? AND payload = ? LIMIT 1",
                (group_id, replay_after, payload),
            ):
                return int(seq)
        return await _append(conn, group_id, epoch, parsed, payload, sender)

    @transaction(write=False)
    async def log_since(
        self, conn: aiosqlite.Connection, group_id: bytes, after_seq: int = 0, limit: int = 100
    ) -> list[LogEntry]:
        check_limit(after_seq, limit)
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

    @transaction(write=True)
    async def queue_proposal(
        self,
        conn: aiosqlite.Connection,
        group_id: bytes,
        epoch: int,
        proposal_ref: bytes,
        payload: bytes,
        sender: str = "",
    ) -> int:
        current, _ = await _epoch_and_next_seq(conn, group_id)
        if epoch != current:
            raise WrongEpoch(current)
        duplicate = await conn.execute_fetchall(
            "SELECT 1 FROM queued_proposals WHERE group_id = ? AND epoch = ? AND proposal_ref = ?",
            (group_id, epoch, proposal_ref),
        )
        if duplicate:
            raise Conflict(f"proposal {proposal_ref.hex()} already queued")
        seq = await _append(conn, group_id, epoch, LogKind.PROPOSAL, payload, sender)
        await conn.execute(
            "INSERT INTO queued_proposals (group_id, epoch, proposal_ref, seq) VALUES (?, ?, ?, ?)",
            (group_id, epoch, proposal_ref, seq),
        )
        return seq

    @transaction(write=False)
    async def queued_proposals(
        self, conn: aiosqlite.Connection, group_id: bytes, epoch: int
    ) -> list[QueuedProposal]:
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

    @transaction(write=False)
    async def epoch_proposals(
        self, conn: aiosqlite.Connection, group_id: bytes, epoch: int
    ) -> list[LogEntry]:
        await _epoch_and_next_seq(conn, group_id)
        rows = await conn.execute_fetchall(
            "SELECT seq, epoch, kind, payload, sender FROM log WHERE group_id = ?"
            " AND epoch = ? AND kind = 'proposal' ORDER BY seq", (group_id, epoch))
        return [LogEntry(seq, ep, LogKind(kind), bytes(payload), sender)
                for seq, ep, kind, payload, sender in rows]

    # -- fault reports and bans ------------------------------------------------------

    @transaction(write=True)
    async def add_fault_report(
        self, conn: aiosqlite.Connection, group_id: bytes, commit_seq: int, reporter: str,
        reason: str, at: int,
    ) -> int:
        await _epoch_and_next_seq(conn, group_id)
        await conn.execute(
            "INSERT INTO fault_reports (group_id, commit_seq, reporter, reason, reported_at)"
            " VALUES (?, ?, ?, ?, ?)", (group_id, commit_seq, reporter, reason, at))
        return await _scalar(conn, "SELECT count(*) FROM fault_reports WHERE group_id = ?"
                             " AND commit_seq = ?", (group_id, commit_seq))

    @transaction(write=False)
    async def fault_reporters(
        self, conn: aiosqlite.Connection, group_id: bytes, commit_seq: int
    ) -> list[str]:
        await _epoch_and_next_seq(conn, group_id)
        rows = await conn.execute_fetchall(
            "SELECT reporter FROM fault_reports WHERE group_id = ? AND commit_seq = ?"
            " ORDER BY reporter", (group_id, commit_seq))
        return [str(row[0]) for row in rows]

    @transaction(write=True)
    async def ban(
        self, conn: aiosqlite.Connection, group_id: bytes, identity: str, reason: str, at: int
    ) -> bool:
        await _epoch_and_next_seq(conn, group_id)
        cursor = await conn.execute(
            "INSERT INTO bans (group_id, identity, reason, banned_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (group_id, identity) DO NOTHING", (group_id, identity, reason, at))
        return cursor.rowcount == 1

    @transaction(write=False)
    async def bans(self, conn: aiosqlite.Connection, group_id: bytes) -> list[Ban]:
        await _epoch_and_next_seq(conn, group_id)
        rows = await conn.execute_fetchall(
            "SELECT identity, reason, banned_at FROM bans WHERE group_id = ?"
            " ORDER BY identity", (group_id,))
        return [Ban(identity, reason, at) for identity, reason, at in rows]

    # -- members -------------------------------------------------------------------

    @transaction(write=True)
    async def set_members(
        self, conn: aiosqlite.Connection, group_id: bytes, members: Sequence[Member]
    ) -> None:
        epoch, _ = await _epoch_and_next_seq(conn, group_id)
        await _replace_members(conn, group_id, members, epoch)

    @transaction(write=False)
    async def get_members(self, conn: aiosqlite.Connection, group_id: bytes) -> list[Member]:
        await _epoch_and_next_seq(conn, group_id)
        rows = await conn.execute_fetchall(
            "SELECT leaf_index, identity FROM members WHERE group_id = ? ORDER BY leaf_index",
            (group_id,),
        )
        return [Member(leaf, identity) for leaf, identity in rows]

    @transaction(write=False)
    async def member_since(
        self, conn: aiosqlite.Connection, group_id: bytes, identity: str
    ) -> int | None:
        rows = await conn.execute_fetchall(
            "SELECT min(since_epoch) FROM members WHERE group_id = ? AND identity = ?",
            (group_id, identity))
        value = next(iter(rows))[0]
        return None if value is None else int(value)

    # -- rooms ---------------------------------------------------------------------

    @transaction(write=True)
    async def attach_room(
        self, conn: aiosqlite.Connection, transport: str, room_id: str, group_id: bytes
    ) -> None:
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

    @transaction(write=False)
    async def room_group(
        self, conn: aiosqlite.Connection, transport: str, room_id: str
    ) -> bytes | None:
        rows = await conn.execute_fetchall(
            "SELECT group_id FROM rooms WHERE transport = ? AND room_id = ?",
            (transport, room_id),
        )
        return next((bytes(row[0]) for row in rows), None)

    @transaction(write=False)
    async def group_rooms(self, conn: aiosqlite.Connection, group_id: bytes) -> list[RoomRef]:
        rows = await conn.execute_fetchall(
            "SELECT transport, room_id FROM rooms WHERE group_id = ? ORDER BY transport, room_id",
            (group_id,),
        )
        return [RoomRef(transport, room_id) for transport, room_id in rows]

    @transaction(write=True)
    async def detach_room(self, conn: aiosqlite.Connection, transport: str, room_id: str) -> bool:
        cursor = await conn.execute(
            "DELETE FROM rooms WHERE transport = ? AND room_id = ?", (transport, room_id)
        )
        return cursor.rowcount > 0

    # -- Welcome delivery ------------------------------------------------------------

    @transaction(write=False)
    async def pending_welcomes(
        self, conn: aiosqlite.Connection, recipient: str
    ) -> list[PendingWelcome]:
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

    @transaction(write=True)
    async def mark_delivered(
        self, conn: aiosqlite.Connection, welcome_id: int, recipient: str
    ) -> bool:
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

    @transaction(write=False)
    async def get_cursor(self, conn: aiosqlite.Connection, name: str) -> str | None:
        rows = await conn.execute_fetchall("SELECT value FROM cursors WHERE name = ?", (name,))
        return next((str(row[0]) for row in rows), None)

    @transaction(write=True)
    async def set_cursor(self, conn: aiosqlite.Connection, name: str, value: str) -> None:
        await conn.execute(
            "INSERT INTO cursors (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    @transaction(write=True)
    async def mark_seen(self, conn: aiosqlite.Connection, scope: str, key: str, at: int) -> bool:
        cursor = await conn.execute(
            "INSERT INTO seen (scope, key, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (scope, key) DO NOTHING",
            (scope, key, at),
        )
        return cursor.rowcount == 1

    @transaction(write=False)
    async def is_seen(self, conn: aiosqlite.Connection, scope: str, key: str) -> bool:
        rows = await conn.execute_fetchall(
            "SELECT 1 FROM seen WHERE scope = ? AND key = ?", (scope, key)
        )
        return bool(rows)

    @transaction(write=True)
    async def prune_seen(self, conn: aiosqlite.Connection, before: int) -> int:
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
    conn: aiosqlite.Connection, group_id: bytes, members: Sequence[Member], epoch: int
) -> None:
    before = {str(identity): int(since) for identity, since in await conn.execute_fetchall(
        "SELECT identity, min(since_epoch) FROM members WHERE group_id = ? GROUP BY identity",
        (group_id,))}
    rows = members_since(members, before, epoch)
    await conn.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
    await conn.executemany(
        "INSERT INTO members (group_id, leaf_index, identity, since_epoch) VALUES (?, ?, ?, ?)",
        [(group_id, leaf, identity, since) for leaf, identity, since in rows],
    )


__all__ = ["SqliteStore", "split_statements"]
