"""The scale-out hub store on PostgreSQL (asyncpg).

Several hub workers (processes, hosts) may share one database, so ordering never comes
from process memory: every operation that allocates a sequence number or moves an epoch
first locks the group's row (``SELECT ... FOR UPDATE`` or an ``UPDATE ... RETURNING``),
inside one transaction per state transition, at READ COMMITTED. KeyPackages are claimed
with ``DELETE ... WHERE ref = (SELECT ... FOR UPDATE SKIP LOCKED)`` so concurrent claimers
never receive the same one. Migrations run in one transaction under a transaction-level
advisory lock, so two workers starting at once do not race.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]

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

# pg_advisory_xact_lock key for migrations: "mlsbrdg" read as a big-endian integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"mlsbrdg", "big")

_GROUP_COLUMNS = "group_id, cipher_suite, epoch, next_seq, group_info, ratchet_tree, hub_state"


class PostgresStore(Store):
    """A :class:`Store` in a PostgreSQL database. Open with :meth:`PostgresStore.open`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._closed = False

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
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction on a pooled connection; driver errors become store errors."""
        if self._closed:
            raise StoreUsageError("the store is closed")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise Conflict(f"postgres: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"postgres: {exc}") from exc

    async def _migrate(self) -> None:
        migrations = load_migrations("postgres")
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            current = int(
                await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            )
            if current > len(migrations):
                raise StoreUsageError(f"database schema {current} is newer than this code")
            for version, script in migrations[current:]:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def schema_version(self) -> int:
        async with self._tx() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))

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
        async with self._tx() as conn:
            inserted = await conn.fetchval(
                f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES ($1, $2, $3, 1, $4, $5, $6)"
                " ON CONFLICT (group_id) DO NOTHING RETURNING true",
                group_id,
                cipher_suite,
                epoch,
                group_info,
                ratchet_tree,
                hub_state,
            )
            if not inserted:
                raise Conflict(f"group {group_id.hex()} exists")
            if members is not None:
                await _replace_members(conn, group_id, members)
        return GroupRecord(group_id, cipher_suite, epoch, 1, group_info, ratchet_tree, hub_state)

    async def get_group(self, group_id: bytes) -> GroupRecord:
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = $1", group_id
            )
        if row is None:
            raise UnknownGroup(group_id)
        return GroupRecord(*row)

    async def delete_group(self, group_id: bytes) -> bool:
        async with self._tx() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM groups WHERE group_id = $1 RETURNING true", group_id
            )
        return bool(deleted)

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
            epoch, seq = await _lock_group(conn, group_id)
            if epoch != expected_epoch:
                raise WrongEpoch(epoch)
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
                "INSERT INTO log (group_id, seq, epoch, kind, payload, sender)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                group_id,
                seq,
                epoch,
                LogKind.COMMIT.value,
                commit,
                sender,
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
        async with self._tx() as conn:
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

    async def queue_proposal(
        self, group_id: bytes, epoch: int, proposal_ref: bytes, payload: bytes, sender: str = ""
    ) -> int:
        async with self._tx() as conn:
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

    async def queued_proposals(self, group_id: bytes, epoch: int) -> list[QueuedProposal]:
        async with self._tx() as conn:
            await _group_exists(conn, group_id)
            rows = await conn.fetch(
                "SELECT q.proposal_ref, q.seq, q.epoch, l.payload, l.sender"
                " FROM queued_proposals q JOIN log l ON l.group_id = q.group_id AND l.seq = q.seq"
                " WHERE q.group_id = $1 AND q.epoch = $2 ORDER BY q.seq",
                group_id,
                epoch,
            )
        return [QueuedProposal(*row) for row in rows]

    # -- members -------------------------------------------------------------------

    async def set_members(self, group_id: bytes, members: Sequence[Member]) -> None:
        async with self._tx() as conn:
            await _lock_group(conn, group_id)
            await _replace_members(conn, group_id, members)

    async def get_members(self, group_id: bytes) -> list[Member]:
        async with self._tx() as conn:
            await _group_exists(conn, group_id)
            rows = await conn.fetch(
                "SELECT leaf_index, identity FROM members WHERE group_id = $1 ORDER BY leaf_index",
                group_id,
            )
        return [Member(row[0], row[1]) for row in rows]

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
                    "DELETE FROM key_packages WHERE user_id = $1 AND device = $2"
                    " AND cipher_suite = $3 AND last_resort",
                    user,
                    device,
                    cipher_suite,
                )
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

    async def claim_key_package(
        self, user: str, cipher_suite: int, now: int, device: str | None = None
    ) -> bytes:
        where = (
            "user_id = $1 AND cipher_suite = $2 AND expires_at >= $3"
            " AND ($4::text IS NULL OR device = $4)"
        )
        async with self._tx() as conn:
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
        return bytes(claimed)

    async def list_key_packages(self, user: str, device: str | None = None) -> list[KeyPackageInfo]:
        async with self._tx() as conn:
            rows = await conn.fetch(
                "SELECT ref, user_id, device, cipher_suite, expires_at, last_resort"
                " FROM key_packages WHERE user_id = $1 AND ($2::text IS NULL OR device = $2)"
                " ORDER BY device, cipher_suite, expires_at, ref",
                user,
                device,
            )
        return [KeyPackageInfo(*row) for row in rows]

    async def purge_expired(self, now: int) -> int:
        async with self._tx() as conn:
            await conn.execute("DELETE FROM key_package_refs WHERE expires_at < $1", now)
            status = await conn.execute("DELETE FROM key_packages WHERE expires_at < $1", now)
        return _affected(status)

    async def key_package_publisher(self, ref: bytes) -> str | None:
        async with self._tx() as conn:
            user = await conn.fetchval(
                "SELECT user_id FROM key_package_refs WHERE ref = $1", ref)
        return None if user is None else str(user)

    # -- rooms ---------------------------------------------------------------------

    async def attach_room(self, transport: str, room_id: str, group_id: bytes) -> None:
        async with self._tx() as conn:
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

    async def room_group(self, transport: str, room_id: str) -> bytes | None:
        async with self._tx() as conn:
            found = await conn.fetchval(
                "SELECT group_id FROM rooms WHERE transport = $1 AND room_id = $2",
                transport,
                room_id,
            )
        return None if found is None else bytes(found)

    async def group_rooms(self, group_id: bytes) -> list[RoomRef]:
        async with self._tx() as conn:
            rows = await conn.fetch(
                "SELECT transport, room_id FROM rooms WHERE group_id = $1"
                " ORDER BY transport, room_id",
                group_id,
            )
        return [RoomRef(row[0], row[1]) for row in rows]

    async def detach_room(self, transport: str, room_id: str) -> bool:
        async with self._tx() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM rooms WHERE transport = $1 AND room_id = $2 RETURNING true",
                transport,
                room_id,
            )
        return bool(deleted)

    # -- Welcome delivery ------------------------------------------------------------

    async def pending_welcomes(self, recipient: str) -> list[PendingWelcome]:
        async with self._tx() as conn:
            rows = await conn.fetch(
                "SELECT w.welcome_id, d.recipient, w.group_id, w.epoch, w.commit_seq, w.welcome"
                " FROM welcome_deliveries d JOIN welcomes w ON w.welcome_id = d.welcome_id"
                " WHERE d.recipient = $1 ORDER BY w.welcome_id",
                recipient,
            )
        return [PendingWelcome(*row) for row in rows]

    async def mark_delivered(self, welcome_id: int, recipient: str) -> bool:
        async with self._tx() as conn:
            # Lock the Welcome so the last of several concurrent deliveries sees the others.
            await conn.execute(
                "SELECT 1 FROM welcomes WHERE welcome_id = $1 FOR UPDATE", welcome_id
            )
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

    async def get_cursor(self, name: str) -> str | None:
        async with self._tx() as conn:
            value = await conn.fetchval("SELECT value FROM cursors WHERE name = $1", name)
        return None if value is None else str(value)

    async def set_cursor(self, name: str, value: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO cursors (name, value) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                name,
                value,
            )

    async def mark_seen(self, scope: str, key: str, at: int) -> bool:
        async with self._tx() as conn:
            status = await conn.execute(
                "INSERT INTO seen (scope, key, seen_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (scope, key) DO NOTHING", scope, key, at)
        return _affected(status) == 1

    async def is_seen(self, scope: str, key: str) -> bool:
        async with self._tx() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM seen WHERE scope = $1 AND key = $2", scope, key)
        return found is not None

    async def prune_seen(self, before: int) -> int:
        async with self._tx() as conn:
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
) -> int:
    """Take the next sequence number (the UPDATE locks the group row) and log the entry."""
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
    if epoch > current:
        raise WrongEpoch(current)
    await conn.execute(
        "INSERT INTO log (group_id, seq, epoch, kind, payload, sender)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        group_id,
        seq,
        epoch,
        kind.value,
        payload,
        sender,
    )
    return seq


async def _replace_members(
    conn: asyncpg.Connection, group_id: bytes, members: Sequence[Member]
) -> None:
    normalised = check_members(members)
    await conn.execute("DELETE FROM members WHERE group_id = $1", group_id)
    await conn.executemany(
        "INSERT INTO members (group_id, leaf_index, identity) VALUES ($1, $2, $3)",
        [(group_id, leaf, identity) for leaf, identity in normalised],
    )


__all__ = ["MIGRATION_LOCK_KEY", "PostgresStore"]
