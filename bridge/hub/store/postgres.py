"""The scale-out hub store on PostgreSQL (asyncpg).

Several hub workers (processes, hosts) may share one database, so ordering never comes
from process memory: every operation that allocates a sequence number or moves an epoch
first locks the group's row (``SELECT ... FOR UPDATE`` or an ``UPDATE ... RETURNING``),
inside one transaction per state transition, at READ COMMITTED. KeyPackages are claimed
with ``DELETE ... WHERE ref = (SELECT ... FOR UPDATE SKIP LOCKED)`` so concurrent claimers
never receive the same one. Migrations run in one transaction under a transaction-level
advisory lock, so two workers starting at once do not race. Each transaction runs in a
task of its own that a caller's cancellation does not interrupt (``transactions``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bridge.errors import (
    Conflict,
    EpochMoved,
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
    payload_digest,
)
from bridge.hub.store.postgres_directory import PostgresDirectory
from bridge.hub.store.transactions import Flight, T, transaction, uncancelled

# pg_advisory_xact_lock key for migrations: "mlsbrdg" read as a big-endian integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"mlsbrdg", "big")

_GROUP_COLUMNS = "group_id, cipher_suite, epoch, next_seq, group_info, ratchet_tree, hub_state"


class PostgresStore(PostgresDirectory, Store):
    """A :class:`Store` in a PostgreSQL database. Open with :meth:`PostgresStore.open`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        super().__init__()

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        """Connect a pool to ``dsn`` and apply pending migrations."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        store = cls(pool)
        try:
            await store._migrate()
        except BaseException:
            await uncancelled(store.close())
            raise
        return store

    async def _release(self) -> None:
        await self._pool.close()

    async def _transaction(
        self, body: Callable[[asyncpg.Connection], Awaitable[T]], write: bool, flight: Flight
    ) -> T:
        """One transaction on a pooled connection (READ ONLY for reads); driver errors
        become store errors. Runs as its own task (see ``transactions``)."""
        try:
            async with self._pool.acquire() as conn:
                flight.began = True
                try:
                    async with conn.transaction(readonly=not write):
                        return await body(conn)
                except asyncio.CancelledError:
                    # Cancelled mid-statement (only when the event loop shuts down): the
                    # protocol may still wait for the server. Drop the connection rather
                    # than hand it on; the server rolls back what was not committed.
                    conn.terminate()
                    raise
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise Conflict(f"postgres: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"postgres: {exc}") from exc

    @transaction(write=True)
    async def _migrate(self, conn: asyncpg.Connection) -> None:
        migrations = load_migrations("postgres")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        if current > len(migrations):
            raise StoreUsageError(f"database schema {current} is newer than this code")
        for version, script in migrations[current:]:
            await conn.execute(script)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    @transaction(write=False)
    async def schema_version(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))

    # -- groups --------------------------------------------------------------------

    @transaction(write=True)
    async def create_group(
        self,
        conn: asyncpg.Connection,
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
        await quotas.postgres_groups(conn, creator, max_per_creator)
        inserted = await conn.fetchval(
            f"INSERT INTO groups ({_GROUP_COLUMNS}, creator)"
            " VALUES ($1, $2, $3, 1, $4, $5, $6, $7)"
            " ON CONFLICT (group_id) DO NOTHING RETURNING true",
            group_id, cipher_suite, epoch, group_info, ratchet_tree, hub_state, creator,
        )
        if not inserted:
            raise Conflict(f"group {group_id.hex()} exists")
        if members is not None:
            await _replace_members(conn, group_id, members, epoch)
        return GroupRecord(group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state)

    @transaction(write=False)
    async def get_group(self, conn: asyncpg.Connection, group_id: bytes) -> GroupRecord:
        row = await conn.fetchrow(
            f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = $1", group_id
        )
        if row is None:
            raise UnknownGroup(group_id)
        return GroupRecord(*row)

    @transaction(write=True)
    async def delete_group(self, conn: asyncpg.Connection, group_id: bytes) -> bool:
        deleted = await conn.fetchval(
            "DELETE FROM groups WHERE group_id = $1 RETURNING true", group_id
        )
        return bool(deleted)

    @transaction(write=True)
    async def accept_commit(
        self,
        conn: asyncpg.Connection,
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
        epoch, seq = await _lock_group(conn, group_id)
        if epoch != expected_epoch:
            raise WrongEpoch(epoch)
        await quotas.postgres_welcomes(conn, recipients, max_pending_welcomes)
        queued = await conn.fetch(
            "SELECT proposal_ref FROM queued_proposals WHERE group_id = $1 AND epoch = $2"
            " ORDER BY seq",
            group_id,
            epoch,
        )
        missing = missing_proposals([row[0] for row in queued], covered_proposals)
        if missing:
            raise ProposalsNotCovered(missing)
        await conn.execute(
            "INSERT INTO log (group_id, seq, epoch, kind, payload, sender, digest)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            group_id,
            seq,
            epoch,
            LogKind.COMMIT.value,
            commit,
            sender,
            payload_digest(commit),
        )
        await conn.execute(
            "UPDATE groups SET epoch = $2, next_seq = $3, group_info = $4, ratchet_tree = $5,"
            " hub_state = $6 WHERE group_id = $1",
            group_id,
            epoch + 1,
            seq + 1,
            group_info,
            ratchet_tree,
            hub_state,
        )
        await conn.execute(
            "DELETE FROM queued_proposals WHERE group_id = $1 AND epoch <= $2", group_id, epoch
        )
        if welcome is not None:
            welcome_id = await conn.fetchval(
                "INSERT INTO welcomes (group_id, epoch, commit_seq, welcome)"
                " VALUES ($1, $2, $3, $4) RETURNING welcome_id",
                group_id,
                epoch + 1,
                seq,
                welcome,
            )
            await conn.executemany(
                "INSERT INTO welcome_deliveries (welcome_id, recipient) VALUES ($1, $2)",
                [(welcome_id, recipient) for recipient in recipients],
            )
            await conn.execute(
                "DELETE FROM key_package_claims WHERE group_id = $1"
                " AND target = ANY($2::text[])", group_id, recipients)
        if members is not None:
            await _replace_members(conn, group_id, members, epoch + 1)
        return seq

    # -- the log -------------------------------------------------------------------

    @transaction(write=True)
    async def append_message(
        self,
        conn: asyncpg.Connection,
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
            seq = await conn.fetchval(
                "SELECT seq FROM log WHERE group_id = $1 AND digest = $2 AND seq > $3"
                " AND payload = $4 LIMIT 1",
                group_id, payload_digest(payload), replay_after, payload,
            )
            if seq is not None:
                return int(seq)
        return await _append(conn, group_id, epoch, parsed, payload, sender, at_epoch)

    @transaction(write=False)
    async def log_since(
        self, conn: asyncpg.Connection, group_id: bytes, after_seq: int = 0, limit: int = 100
    ) -> list[LogEntry]:
        check_limit(after_seq, limit)
        await _group_exists(conn, group_id)
        rows = await conn.fetch(
            "SELECT seq, epoch, kind, payload, sender FROM log"
            " WHERE group_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            group_id,
            after_seq,
            limit,
        )
        return [
            LogEntry(row["seq"], row["epoch"], LogKind(row["kind"]), row["payload"], row["sender"])
            for row in rows
        ]

    # -- proposals -----------------------------------------------------------------

    @transaction(write=True)
    async def queue_proposal(
        self,
        conn: asyncpg.Connection,
        group_id: bytes,
        epoch: int,
        proposal_ref: bytes,
        payload: bytes,
        sender: str = "",
    ) -> int:
        current, _ = await _lock_group(conn, group_id)
        if epoch != current:
            raise WrongEpoch(current)
        duplicate = await conn.fetchval(
            "SELECT true FROM queued_proposals WHERE group_id = $1 AND epoch = $2"
            " AND proposal_ref = $3",
            group_id,
            epoch,
            proposal_ref,
        )
        if duplicate:
            raise Conflict(f"proposal {proposal_ref.hex()} already queued")
        seq = await _append(conn, group_id, epoch, LogKind.PROPOSAL, payload, sender)
        await conn.execute(
            "INSERT INTO queued_proposals (group_id, epoch, proposal_ref, seq)"
            " VALUES ($1, $2, $3, $4)",
            group_id,
            epoch,
            proposal_ref,
            seq,
        )
        return seq

    @transaction(write=False)
    async def queued_proposals(
        self, conn: asyncpg.Connection, group_id: bytes, epoch: int
    ) -> list[QueuedProposal]:
        await _group_exists(conn, group_id)
        rows = await conn.fetch(
            "SELECT q.proposal_ref, q.seq, q.epoch, l.payload, l.sender"
            " FROM queued_proposals q JOIN log l ON l.group_id = q.group_id AND l.seq = q.seq"
            " WHERE q.group_id = $1 AND q.epoch = $2 ORDER BY q.seq",
            group_id,
            epoch,
        )
        return [QueuedProposal(*row) for row in rows]

    @transaction(write=True)
    async def epoch_proposals(
        self, conn: asyncpg.Connection, group_id: bytes, epoch: int
    ) -> list[LogEntry]:
        await _group_exists(conn, group_id)
        rows = await conn.fetch(
            "SELECT seq, epoch, kind, payload, sender FROM log WHERE group_id = $1"
            " AND epoch = $2 AND kind = 'proposal' ORDER BY seq", group_id, epoch)
        return [LogEntry(row[0], row[1], LogKind(row[2]), row[3], row[4]) for row in rows]

    # -- fault reports and bans ------------------------------------------------------

    @transaction(write=True)
    async def add_fault_report(
        self, conn: asyncpg.Connection, group_id: bytes, commit_seq: int, reporter: str,
        reason: str, at: int,
    ) -> int:
        await _group_exists(conn, group_id)
        await conn.execute(
            "INSERT INTO fault_reports (group_id, commit_seq, reporter, reason, reported_at)"
            " VALUES ($1, $2, $3, $4, $5)", group_id, commit_seq, reporter, reason, at)
        return int(await conn.fetchval(
            "SELECT count(*) FROM fault_reports WHERE group_id = $1 AND commit_seq = $2",
            group_id, commit_seq))

    @transaction(write=False)
    async def fault_reporters(
        self, conn: asyncpg.Connection, group_id: bytes, commit_seq: int
    ) -> list[str]:
        await _group_exists(conn, group_id)
        rows = await conn.fetch("SELECT reporter FROM fault_reports WHERE group_id = $1"
                                " AND commit_seq = $2 ORDER BY reporter", group_id, commit_seq)
        return [str(row[0]) for row in rows]

    @transaction(write=True)
    async def ban(
        self, conn: asyncpg.Connection, group_id: bytes, identity: str, reason: str, at: int
    ) -> bool:
        await _group_exists(conn, group_id)
        status = await conn.execute(
            "INSERT INTO bans (group_id, identity, reason, banned_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (group_id, identity) DO NOTHING", group_id, identity, reason, at)
        return _affected(status) == 1

    @transaction(write=True)
    async def bans(self, conn: asyncpg.Connection, group_id: bytes) -> list[Ban]:
        await _group_exists(conn, group_id)
        rows = await conn.fetch("SELECT identity, reason, banned_at FROM bans"
                                " WHERE group_id = $1 ORDER BY identity", group_id)
        return [Ban(row[0], row[1], row[2]) for row in rows]

    # -- members -------------------------------------------------------------------

    @transaction(write=True)
    async def set_members(
        self, conn: asyncpg.Connection, group_id: bytes, members: Sequence[Member]
    ) -> None:
        epoch, _ = await _lock_group(conn, group_id)
        await _replace_members(conn, group_id, members, epoch)

    @transaction(write=False)
    async def get_members(self, conn: asyncpg.Connection, group_id: bytes) -> list[Member]:
        await _group_exists(conn, group_id)
        rows = await conn.fetch(
            "SELECT leaf_index, identity FROM members WHERE group_id = $1 ORDER BY leaf_index",
            group_id,
        )
        return [Member(row[0], row[1]) for row in rows]

    @transaction(write=False)
    async def member_since(
        self, conn: asyncpg.Connection, group_id: bytes, identity: str
    ) -> int | None:
        value = await conn.fetchval(
            "SELECT min(since_epoch) FROM members WHERE group_id = $1 AND identity = $2",
            group_id, identity)
        return None if value is None else int(value)

    # -- rooms ---------------------------------------------------------------------

    @transaction(write=True)
    async def attach_room(
        self, conn: asyncpg.Connection, transport: str, room_id: str, group_id: bytes
    ) -> None:
        await _group_exists(conn, group_id)
        attached = await conn.fetchval(
            "INSERT INTO rooms (transport, room_id, group_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (transport, room_id) DO UPDATE SET group_id = rooms.group_id"
            " RETURNING group_id",
            transport,
            room_id,
            group_id,
        )
        if attached != group_id:
            raise Conflict(f"room {transport}:{room_id} is attached to another group")

    @transaction(write=False)
    async def room_group(
        self, conn: asyncpg.Connection, transport: str, room_id: str
    ) -> bytes | None:
        found = await conn.fetchval(
            "SELECT group_id FROM rooms WHERE transport = $1 AND room_id = $2",
            transport,
            room_id,
        )
        return None if found is None else bytes(found)

    @transaction(write=False)
    async def group_rooms(self, conn: asyncpg.Connection, group_id: bytes) -> list[RoomRef]:
        rows = await conn.fetch(
            "SELECT transport, room_id FROM rooms WHERE group_id = $1 ORDER BY transport, room_id",
            group_id,
        )
        return [RoomRef(row[0], row[1]) for row in rows]

    @transaction(write=True)
    async def detach_room(self, conn: asyncpg.Connection, transport: str, room_id: str) -> bool:
        deleted = await conn.fetchval(
            "DELETE FROM rooms WHERE transport = $1 AND room_id = $2 RETURNING true",
            transport,
            room_id,
        )
        return bool(deleted)

    # -- Welcome delivery ------------------------------------------------------------

    @transaction(write=False)
    async def pending_welcomes(
        self, conn: asyncpg.Connection, recipient: str
    ) -> list[PendingWelcome]:
        rows = await conn.fetch(
            "SELECT w.welcome_id, d.recipient, w.group_id, w.epoch, w.commit_seq, w.welcome"
            " FROM welcome_deliveries d JOIN welcomes w ON w.welcome_id = d.welcome_id"
            " WHERE d.recipient = $1 ORDER BY w.welcome_id",
            recipient,
        )
        return [PendingWelcome(*row) for row in rows]

    @transaction(write=True)
    async def mark_delivered(
        self, conn: asyncpg.Connection, welcome_id: int, recipient: str
    ) -> bool:
        # Lock the Welcome so the last of several concurrent deliveries sees the others.
        await conn.execute("SELECT 1 FROM welcomes WHERE welcome_id = $1 FOR UPDATE", welcome_id)
        deleted = await conn.fetchval(
            "DELETE FROM welcome_deliveries WHERE welcome_id = $1 AND recipient = $2"
            " RETURNING true",
            welcome_id,
            recipient,
        )
        if not deleted:
            return False
        await conn.execute(
            "DELETE FROM welcomes WHERE welcome_id = $1 AND NOT EXISTS"
            " (SELECT 1 FROM welcome_deliveries WHERE welcome_id = $1)",
            welcome_id,
        )
        return True

    # -- transport cursors -------------------------------------------------------------

    @transaction(write=False)
    async def get_cursor(self, conn: asyncpg.Connection, name: str) -> str | None:
        value = await conn.fetchval("SELECT value FROM cursors WHERE name = $1", name)
        return None if value is None else str(value)

    @transaction(write=True)
    async def set_cursor(self, conn: asyncpg.Connection, name: str, value: str) -> None:
        await conn.execute(
            "INSERT INTO cursors (name, value) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            name,
            value,
        )

    @transaction(write=True)
    async def mark_seen(self, conn: asyncpg.Connection, scope: str, key: str, at: int) -> bool:
        status = await conn.execute(
            "INSERT INTO seen (scope, key, seen_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (scope, key) DO NOTHING",
            scope,
            key,
            at,
        )
        return _affected(status) == 1

    @transaction(write=False)
    async def is_seen(self, conn: asyncpg.Connection, scope: str, key: str) -> bool:
        found = await conn.fetchval("SELECT 1 FROM seen WHERE scope = $1 AND key = $2", scope, key)
        return found is not None

    @transaction(write=True)
    async def prune_seen(self, conn: asyncpg.Connection, before: int) -> int:
        status = await conn.execute("DELETE FROM seen WHERE seen_at < $1", before)
        return _affected(status)


# -- statements shared by several operations (run inside an open transaction) -------


def _affected(status: str) -> int:
    """Rows a statement touched, from its command tag ("DELETE 3", "INSERT 0 1")."""
    return int(status.split()[-1])


async def _lock_group(conn: asyncpg.Connection, group_id: bytes) -> tuple[int, int]:
    """Lock the group's row; return its epoch and next sequence number."""
    row = await conn.fetchrow(
        "SELECT epoch, next_seq FROM groups WHERE group_id = $1 FOR UPDATE", group_id
    )
    if row is None:
        raise UnknownGroup(group_id)
    return int(row[0]), int(row[1])


async def _group_exists(conn: asyncpg.Connection, group_id: bytes) -> None:
    if not await conn.fetchval("SELECT true FROM groups WHERE group_id = $1", group_id):
        raise UnknownGroup(group_id)


async def _append(
    conn: asyncpg.Connection,
    group_id: bytes,
    epoch: int,
    kind: LogKind,
    payload: bytes,
    sender: str,
    at_epoch: int | None = None,
) -> int:
    """Take the next sequence number (the UPDATE locks the group row) and log the entry
    (:class:`EpochMoved` unless the group is at ``at_epoch``, if given)."""
    if epoch < 0:
        raise StoreUsageError("epoch must be non-negative")
    row: Any = await conn.fetchrow(
        "UPDATE groups SET next_seq = next_seq + 1 WHERE group_id = $1"
        " RETURNING epoch, next_seq - 1",
        group_id,
    )
    if row is None:
        raise UnknownGroup(group_id)
    current, seq = int(row[0]), int(row[1])
    if at_epoch is not None and at_epoch != current:
        raise EpochMoved(current)
    if epoch > current:
        raise WrongEpoch(current)
    await conn.execute(
        "INSERT INTO log (group_id, seq, epoch, kind, payload, sender, digest)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        group_id,
        seq,
        epoch,
        kind.value,
        payload,
        sender,
        payload_digest(payload),
    )
    return seq


async def _replace_members(
    conn: asyncpg.Connection, group_id: bytes, members: Sequence[Member], epoch: int
) -> None:
    before = {str(row[0]): int(row[1]) for row in await conn.fetch(
        "SELECT identity, min(since_epoch) FROM members WHERE group_id = $1 GROUP BY identity",
        group_id)}
    rows = members_since(members, before, epoch)
    await conn.execute("DELETE FROM members WHERE group_id = $1", group_id)
    await conn.executemany(
        "INSERT INTO members (group_id, leaf_index, identity, since_epoch)"
        " VALUES ($1, $2, $3, $4)",
        [(group_id, leaf, identity, since) for leaf, identity, since in rows],
    )


__all__ = ["MIGRATION_LOCK_KEY", "PostgresStore"]
