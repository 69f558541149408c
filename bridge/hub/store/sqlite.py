"""The embedded hub store on SQLite (``sqlite3`` on a thread of the store's own).

Durability of accepted commits matters more than speed here: once the hub has told a
client "accepted, seq N" and fanned the commit out, losing it would fork the group. So the
database runs with ``synchronous=FULL`` in WAL mode (every commit fsyncs the WAL), foreign
keys on, and a busy timeout. Each state transition is one ``BEGIN IMMEDIATE``
transaction: SQLite's single writer lock orders commits even between processes sharing
the file. Every method's body is synchronous code that the store's one thread runs as a
whole transaction (``sqlite_thread``: one hand-off per call, several waiting calls
group-committed under one fsync, each in its own savepoint), so a caller's cancellation
never leaves the connection inside a transaction. Migrations are numbered SQL files
applied in order and recorded in ``schema_version``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Sequence
from os import PathLike
from typing import Any

from bridge.errors import (
    Conflict,
    EpochMoved,
    ProposalsNotCovered,
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
    payload_digest,
)
from bridge.hub.store.sqlite_directory import SqliteDirectory
from bridge.hub.store.sqlite_thread import MAX_BATCH, SqliteThread, in_thread
from bridge.hub.store.transactions import T, uncancelled

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


class SqliteStore(SqliteDirectory, Store):
    """A :class:`Store` in one SQLite file. Open with :meth:`SqliteStore.open`."""

    def __init__(self, path: str, *, max_batch: int = MAX_BATCH) -> None:
        self._path = path
        self._thread = SqliteThread(functools.partial(_connect, path), max_batch=max_batch)

    @classmethod
    async def open(cls, path: str | PathLike[str], *, busy_timeout_ms: int = 10_000,
                   max_batch: int = MAX_BATCH) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and apply migrations.
        ``max_batch``: the most transactions one group commit holds (``sqlite_thread``)."""
        store = cls(str(path), max_batch=max_batch)
        try:
            await store._thread.call(functools.partial(_configure, busy_timeout_ms))
            await store._migrate()
        except BaseException:
            await uncancelled(store.close())
            raise
        return store

    async def _call(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body(conn)`` on the store's thread outside any transaction (tests read
        the connection's pragmas with it)."""
        return await self._thread.call(body)

    @in_thread(write=True)
    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = load_migrations("sqlite")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        current = _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version")
        if current > len(migrations):
            raise StoreUsageError(f"database schema {current} is newer than this code")
        for version, script in migrations[current:]:
            for statement in split_statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @in_thread(write=False)
    def schema_version(self, conn: sqlite3.Connection) -> int:
        return _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version")

    # -- groups --------------------------------------------------------------------

    @in_thread(write=True)
    def create_group(
        self, conn: sqlite3.Connection,
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
        if _group_row(conn, group_id) is not None:
            raise Conflict(f"group {group_id.hex()} exists")
        quotas.sqlite_groups(conn, creator, max_per_creator)
        conn.execute(
            f"INSERT INTO groups ({_GROUP_COLUMNS}, creator) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state, creator),
        )
        if members is not None:
            _replace_members(conn, group_id, members, epoch)
        return GroupRecord(group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state)

    @in_thread(write=False)
    def get_group(self, conn: sqlite3.Connection, group_id: bytes) -> GroupRecord:
        row = _group_row(conn, group_id)
        if row is None:
            raise UnknownGroup(group_id)
        return GroupRecord(*row)

    @in_thread(write=True)
    def delete_group(self, conn: sqlite3.Connection, group_id: bytes) -> bool:
        cursor = conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
        return cursor.rowcount > 0

    @in_thread(write=True)
    def accept_commit(
        self, conn: sqlite3.Connection,
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
        epoch, seq = _epoch_and_next_seq(conn, group_id)
        if epoch != expected_epoch:
            raise WrongEpoch(epoch)
        quotas.sqlite_welcomes(conn, recipients, max_pending_welcomes)
        queued = conn.execute(
            "SELECT proposal_ref FROM queued_proposals WHERE group_id = ? AND epoch = ?"
            " ORDER BY seq",
            (group_id, epoch),
        ).fetchall()
        missing = missing_proposals([bytes(row[0]) for row in queued], covered_proposals)
        if missing:
            raise ProposalsNotCovered(missing)
        conn.execute(
            "INSERT INTO log (group_id, seq, epoch, kind, payload, sender, digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group_id, seq, epoch, LogKind.COMMIT.value, commit, sender,
             payload_digest(commit)),
        )
        conn.execute(
            "UPDATE groups SET epoch = ?, next_seq = ?, group_info = ?, ratchet_tree = ?,"
            " hub_state = ? WHERE group_id = ?",
            (epoch + 1, seq + 1, group_info, ratchet_tree, hub_state, group_id),
        )
        conn.execute(
            "DELETE FROM queued_proposals WHERE group_id = ? AND epoch <= ?", (group_id, epoch)
        )
        if welcome is not None:
            cursor = conn.execute(
                "INSERT INTO welcomes (group_id, epoch, commit_seq, welcome) VALUES (?, ?, ?, ?)",
                (group_id, epoch + 1, seq, welcome),
            )
            conn.executemany(
                "INSERT INTO welcome_deliveries (welcome_id, recipient) VALUES (?, ?)",
                [(cursor.lastrowid, recipient) for recipient in recipients],
            )
            conn.executemany(
                "DELETE FROM key_package_claims WHERE group_id = ? AND target = ?",
                [(group_id, recipient) for recipient in recipients])
        if members is not None:
            _replace_members(conn, group_id, members, epoch + 1)
        return seq

    # -- the log -------------------------------------------------------------------

    @in_thread(write=True)
    def append_message(
        self, conn: sqlite3.Connection,
        group_id: bytes,
        epoch: int,
        kind: LogKind | str,
        payload: bytes,
        sender: str,
        *,
        replay_after: int | None = None,
        at_epoch: int | None = None,
    ) -> int:
        parsed = check_kind(kind)
        if replay_after is not None:
            for (seq,) in conn.execute(
                "SELECT seq FROM log INDEXED BY log_digest WHERE group_id = ? AND digest = ?"
                " AND seq > ? AND payload = ? LIMIT 1",
                (group_id, payload_digest(payload), replay_after, payload),
            ).fetchall():
                return int(seq)
        return _append(conn, group_id, epoch, parsed, payload, sender, at_epoch)

    @in_thread(write=False)
    def log_since(
        self, conn: sqlite3.Connection, group_id: bytes, after_seq: int = 0, limit: int = 100
    ) -> list[LogEntry]:
        check_limit(after_seq, limit)
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT seq, epoch, kind, payload, sender FROM log"
            " WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (group_id, after_seq, limit),
        ).fetchall()
        return [
            LogEntry(seq, epoch, LogKind(kind), bytes(payload), sender)
            for seq, epoch, kind, payload, sender in rows
        ]

    # -- proposals -----------------------------------------------------------------

    @in_thread(write=True)
    def queue_proposal(
        self, conn: sqlite3.Connection,
        group_id: bytes,
        epoch: int,
        proposal_ref: bytes,
        payload: bytes,
        sender: str = "",
    ) -> int:
        current, _ = _epoch_and_next_seq(conn, group_id)
        if epoch != current:
            raise WrongEpoch(current)
        duplicate = conn.execute(
            "SELECT 1 FROM queued_proposals WHERE group_id = ? AND epoch = ? AND proposal_ref = ?",
            (group_id, epoch, proposal_ref),
        ).fetchall()
        if duplicate:
            raise Conflict(f"proposal {proposal_ref.hex()} already queued")
        seq = _append(conn, group_id, epoch, LogKind.PROPOSAL, payload, sender)
        conn.execute(
            "INSERT INTO queued_proposals (group_id, epoch, proposal_ref, seq) VALUES (?, ?, ?, ?)",
            (group_id, epoch, proposal_ref, seq),
        )
        return seq

    @in_thread(write=False)
    def queued_proposals(
        self, conn: sqlite3.Connection, group_id: bytes, epoch: int
    ) -> list[QueuedProposal]:
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT q.proposal_ref, q.seq, q.epoch, l.payload, l.sender"
            " FROM queued_proposals q JOIN log l ON l.group_id = q.group_id AND l.seq = q.seq"
            " WHERE q.group_id = ? AND q.epoch = ? ORDER BY q.seq",
            (group_id, epoch),
        ).fetchall()
        return [
            QueuedProposal(bytes(ref), seq, ep, bytes(payload), sender)
            for ref, seq, ep, payload, sender in rows
        ]

    @in_thread(write=False)
    def epoch_proposals(
        self, conn: sqlite3.Connection, group_id: bytes, epoch: int
    ) -> list[LogEntry]:
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT seq, epoch, kind, payload, sender FROM log WHERE group_id = ?"
            " AND epoch = ? AND kind = 'proposal' ORDER BY seq", (group_id, epoch)).fetchall()
        return [LogEntry(seq, ep, LogKind(kind), bytes(payload), sender)
                for seq, ep, kind, payload, sender in rows]

    # -- fault reports and bans ------------------------------------------------------

    @in_thread(write=True)
    def add_fault_report(
        self, conn: sqlite3.Connection, group_id: bytes, commit_seq: int, reporter: str,
        reason: str, at: int,
    ) -> int:
        _epoch_and_next_seq(conn, group_id)
        conn.execute(
            "INSERT INTO fault_reports (group_id, commit_seq, reporter, reason, reported_at)"
            " VALUES (?, ?, ?, ?, ?)", (group_id, commit_seq, reporter, reason, at))
        return _scalar(conn, "SELECT count(*) FROM fault_reports WHERE group_id = ?"
                             " AND commit_seq = ?", (group_id, commit_seq))

    @in_thread(write=False)
    def fault_reporters(
        self, conn: sqlite3.Connection, group_id: bytes, commit_seq: int
    ) -> list[str]:
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT reporter FROM fault_reports WHERE group_id = ? AND commit_seq = ?"
            " ORDER BY reporter", (group_id, commit_seq)).fetchall()
        return [str(row[0]) for row in rows]

    @in_thread(write=True)
    def ban(
        self, conn: sqlite3.Connection, group_id: bytes, identity: str, reason: str, at: int
    ) -> bool:
        _epoch_and_next_seq(conn, group_id)
        cursor = conn.execute(
            "INSERT INTO bans (group_id, identity, reason, banned_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (group_id, identity) DO NOTHING", (group_id, identity, reason, at))
        return cursor.rowcount == 1

    @in_thread(write=False)
    def bans(self, conn: sqlite3.Connection, group_id: bytes) -> list[Ban]:
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT identity, reason, banned_at FROM bans WHERE group_id = ?"
            " ORDER BY identity", (group_id,)).fetchall()
        return [Ban(identity, reason, at) for identity, reason, at in rows]

    # -- members -------------------------------------------------------------------

    @in_thread(write=True)
    def set_members(
        self, conn: sqlite3.Connection, group_id: bytes, members: Sequence[Member]
    ) -> None:
        epoch, _ = _epoch_and_next_seq(conn, group_id)
        _replace_members(conn, group_id, members, epoch)

    @in_thread(write=False)
    def get_members(self, conn: sqlite3.Connection, group_id: bytes) -> list[Member]:
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT leaf_index, identity FROM members WHERE group_id = ? ORDER BY leaf_index",
            (group_id,),
        ).fetchall()
        return [Member(leaf, identity) for leaf, identity in rows]

    @in_thread(write=False)
    def member_since(
        self, conn: sqlite3.Connection, group_id: bytes, identity: str
    ) -> int | None:
        rows = conn.execute(
            "SELECT min(since_epoch) FROM members WHERE group_id = ? AND identity = ?",
            (group_id, identity)).fetchall()
        value = next(iter(rows))[0]
        return None if value is None else int(value)

    # -- rooms ---------------------------------------------------------------------

    @in_thread(write=True)
    def attach_room(
        self, conn: sqlite3.Connection, transport: str, room_id: str, group_id: bytes
    ) -> None:
        _epoch_and_next_seq(conn, group_id)
        rows = conn.execute(
            "SELECT group_id FROM rooms WHERE transport = ? AND room_id = ?",
            (transport, room_id),
        ).fetchall()
        for (attached,) in rows:
            if bytes(attached) == group_id:
                return
            raise Conflict(f"room {transport}:{room_id} is attached to another group")
        conn.execute(
            "INSERT INTO rooms (transport, room_id, group_id) VALUES (?, ?, ?)",
            (transport, room_id, group_id),
        )

    @in_thread(write=False)
    def room_group(
        self, conn: sqlite3.Connection, transport: str, room_id: str
    ) -> bytes | None:
        rows = conn.execute(
            "SELECT group_id FROM rooms WHERE transport = ? AND room_id = ?",
            (transport, room_id),
        ).fetchall()
        return next((bytes(row[0]) for row in rows), None)

    @in_thread(write=False)
    def group_rooms(self, conn: sqlite3.Connection, group_id: bytes) -> list[RoomRef]:
        rows = conn.execute(
            "SELECT transport, room_id FROM rooms WHERE group_id = ? ORDER BY transport, room_id",
            (group_id,),
        ).fetchall()
        return [RoomRef(transport, room_id) for transport, room_id in rows]

    @in_thread(write=True)
    def detach_room(self, conn: sqlite3.Connection, transport: str, room_id: str) -> bool:
        cursor = conn.execute(
            "DELETE FROM rooms WHERE transport = ? AND room_id = ?", (transport, room_id)
        )
        return cursor.rowcount > 0

    # -- Welcome delivery ------------------------------------------------------------

    @in_thread(write=False)
    def pending_welcomes(
        self, conn: sqlite3.Connection, recipient: str
    ) -> list[PendingWelcome]:
        rows = conn.execute(
            "SELECT w.welcome_id, d.recipient, w.group_id, w.epoch, w.commit_seq, w.welcome"
            " FROM welcome_deliveries d JOIN welcomes w ON w.welcome_id = d.welcome_id"
            " WHERE d.recipient = ? ORDER BY w.welcome_id",
            (recipient,),
        ).fetchall()
        return [
            PendingWelcome(wid, rcpt, bytes(gid), epoch, seq, bytes(welcome))
            for wid, rcpt, gid, epoch, seq, welcome in rows
        ]

    @in_thread(write=True)
    def mark_delivered(
        self, conn: sqlite3.Connection, welcome_id: int, recipient: str
    ) -> bool:
        cursor = conn.execute(
            "DELETE FROM welcome_deliveries WHERE welcome_id = ? AND recipient = ?",
            (welcome_id, recipient),
        )
        if cursor.rowcount == 0:
            return False
        conn.execute(
            "DELETE FROM welcomes WHERE welcome_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM welcome_deliveries WHERE welcome_id = ?)",
            (welcome_id, welcome_id),
        )
        return True

    # -- transport cursors -------------------------------------------------------------

    @in_thread(write=False)
    def get_cursor(self, conn: sqlite3.Connection, name: str) -> str | None:
        rows = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchall()
        return next((str(row[0]) for row in rows), None)

    @in_thread(write=True)
    def set_cursor(self, conn: sqlite3.Connection, name: str, value: str) -> None:
        conn.execute(
            "INSERT INTO cursors (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    @in_thread(write=True)
    def mark_seen(self, conn: sqlite3.Connection, scope: str, key: str, at: int) -> bool:
        cursor = conn.execute(
            "INSERT INTO seen (scope, key, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (scope, key) DO NOTHING",
            (scope, key, at),
        )
        return cursor.rowcount == 1

    @in_thread(write=False)
    def is_seen(self, conn: sqlite3.Connection, scope: str, key: str) -> bool:
        rows = conn.execute(
            "SELECT 1 FROM seen WHERE scope = ? AND key = ?", (scope, key)
        ).fetchall()
        return bool(rows)

    @in_thread(write=True)
    def prune_seen(self, conn: sqlite3.Connection, before: int) -> int:
        cursor = conn.execute("DELETE FROM seen WHERE seen_at < ?", (before,))
        return cursor.rowcount


def _connect(path: str) -> sqlite3.Connection:
    """The store's connection (on its thread): autocommit mode, BEGIN said explicitly;
    ``sha256()`` for migration 0008."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("sha256", 1, payload_digest, deterministic=True)
    return conn


def _configure(busy_timeout_ms: int, conn: sqlite3.Connection) -> None:
    """Durable WAL (every COMMIT fsyncs), foreign keys, a busy timeout."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


# -- statements shared by several operations (run inside an open transaction) -------


def _scalar(conn: sqlite3.Connection, query: str, params: tuple[Any, ...] = ()) -> int:
    rows = list(conn.execute(query, params).fetchall())
    return int(rows[0][0])


def _group_row(conn: sqlite3.Connection, group_id: bytes) -> tuple[Any, ...] | None:
    rows = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = ?", (group_id,)
    ).fetchall()
    for row in rows:
        gid, suite, epoch, next_seq, info, tree, state = row
        return (bytes(gid), suite, epoch, next_seq, _opt(info), _opt(tree), bytes(state))
    return None


def _opt(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _epoch_and_next_seq(conn: sqlite3.Connection, group_id: bytes) -> tuple[int, int]:
    """The group's epoch and next sequence number; :class:`UnknownGroup` if absent."""
    rows = conn.execute(
        "SELECT epoch, next_seq FROM groups WHERE group_id = ?", (group_id,)
    ).fetchall()
    for epoch, next_seq in rows:
        return int(epoch), int(next_seq)
    raise UnknownGroup(group_id)


def _append(
    conn: sqlite3.Connection,
    group_id: bytes,
    epoch: int,
    kind: LogKind,
    payload: bytes,
    sender: str,
    at_epoch: int | None = None,
) -> int:
    current, seq = _epoch_and_next_seq(conn, group_id)
    if epoch < 0:
        raise StoreUsageError("epoch must be non-negative")
    if at_epoch is not None and at_epoch != current:
        raise EpochMoved(current)
    if epoch > current:
        raise WrongEpoch(current)
    conn.execute(
        "INSERT INTO log (group_id, seq, epoch, kind, payload, sender, digest)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (group_id, seq, epoch, kind.value, payload, sender, payload_digest(payload)),
    )
    conn.execute("UPDATE groups SET next_seq = ? WHERE group_id = ?", (seq + 1, group_id))
    return seq


def _replace_members(
    conn: sqlite3.Connection, group_id: bytes, members: Sequence[Member], epoch: int
) -> None:
    before = {str(identity): int(since) for identity, since in conn.execute(
        "SELECT identity, min(since_epoch) FROM members WHERE group_id = ? GROUP BY identity",
        (group_id,)).fetchall()}
    rows = members_since(members, before, epoch)
    conn.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
    conn.executemany(
        "INSERT INTO members (group_id, leaf_index, identity, since_epoch) VALUES (?, ?, ?, ?)",
        [(group_id, leaf, identity, since) for leaf, identity, since in rows],
    )


__all__ = ["SqliteStore", "split_statements"]
