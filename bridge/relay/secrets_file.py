"""The relay's puppet secrets, in a file of their own -- never in the hub's store.

A puppet (:mod:`bridge.relay.puppets`) is a full MLS member: its signature key, its
KeyPackages and its group state (epoch secrets, the secret tree) let whoever holds them
read every message of the group from the epoch it joined. The hub's store holds only
opaque MLS bytes and public metadata (``docs/ARCHITECTURE.md``), so the puppets'
secrets live in a separate SQLite file, ``[bridge.relay] secrets`` in the
configuration (default: ``<database>.relay-secrets`` beside a SQLite store):

* created atomically with mode 0600 (a temporary file made with ``O_EXCL`` and mode
  0600, its schema written, then renamed into place), and refused when it is
  readable or writable by anyone but its owner: it must be protected like a private
  key (``docs/SECURITY.md``, "Relay mode");
* WAL and ``synchronous=FULL`` like the hub's SQLite store; every call is one
  transaction that a caller's cancellation cannot cut in half
  (:mod:`bridge.hub.store.transactions`);
* tables: ``puppets`` (the relay identities the relay runs), ``puppet_state``
  (puppet, key, value: what :class:`bridge.member.MemberStore` saves), ``archive``
  (what the relay re-emitted into the XMPP rooms -- plaintext the relay could read
  anyway -- by group and log seq, the newest ``[bridge.relay] archive`` per group:
  :mod:`bridge.relay.archive`, served by XEP-0313); and ``message_ids``, the map
  between the networks' message ids (an XMPP stanza id, a Matrix event id) and the
  group's content message ids (:mod:`bridge.relay.mapping`), bounded to
  :data:`MESSAGE_IDS_KEPT` rows. The map is not secret (who wrote which message when is
  what the rooms show anyway) but operator-private, so it lives here rather than in the
  hub's store, which holds only what the hub needs. ``reactions``: the reactions the
  relay saw (which message, on which message, by whom, which emoji -- what the rooms
  show), so that an XEP-0444 set or a redaction retracts the right one after a
  restart, the newest :data:`REACTIONS_KEPT`.

What earlier versions kept in the hub store's cursors is moved here on start by
:mod:`bridge.relay.upgrade`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiosqlite

from bridge.errors import StoreUnavailable
from bridge.hub.store.sqlite_aio import sqlite_transaction
from bridge.hub.store.transactions import Flight, TransactionalStore, transaction, uncancelled

T = TypeVar("T")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS puppets (identity TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS puppet_state (puppet TEXT NOT NULL, key TEXT NOT NULL,"
    " value BLOB NOT NULL, PRIMARY KEY (puppet, key))",
    "CREATE TABLE IF NOT EXISTS archive (group_id BLOB NOT NULL, seq INTEGER NOT NULL,"
    " nick TEXT NOT NULL, sender TEXT NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY (group_id, seq))",
    "CREATE TABLE IF NOT EXISTS message_ids (n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " network TEXT NOT NULL, room TEXT NOT NULL, owner TEXT NOT NULL, net_id TEXT NOT NULL,"
    " group_id BLOB NOT NULL, message_id BLOB NOT NULL, author TEXT NOT NULL,"
    " UNIQUE (network, room, owner, net_id))",
    "CREATE INDEX IF NOT EXISTS message_ids_by_message ON message_ids (group_id, message_id)",
    "CREATE TABLE IF NOT EXISTS reactions (n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " message_id BLOB NOT NULL UNIQUE, group_id BLOB NOT NULL, target BLOB NOT NULL,"
    " author TEXT NOT NULL, emoji TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS reactions_by_target ON reactions (group_id, target, author)",
)
MESSAGE_IDS_KEPT = 100_000  # rows of the message id map (the oldest forgotten)
REACTIONS_KEPT = 4096  # reactions remembered (XEP-0444 sets and their retraction)
MEMORY = ":memory:"


class SecretsFileError(StoreUnavailable):
    """The secrets file cannot be used (missing directory, unsafe mode, not SQLite)."""


@dataclass(frozen=True, slots=True)
class Archived:
    """One re-emitted message: its group's log seq, the nick it was shown under, its
    sender's identity URI, when (seconds since the epoch)."""

    seq: int
    nick: str
    sender: str
    body: str = field(repr=False)
    at: int = 0


class PuppetSecrets(TransactionalStore[aiosqlite.Connection]):
    """The puppets and their saved state (see the module docstring). Open with
    :meth:`open` (``":memory:"``: nothing survives the process, for tests)."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        super().__init__()
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: str | Path) -> PuppetSecrets:
        path = str(path)
        if path != MEMORY:
            _create_or_check(Path(path))
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise SecretsFileError(f"cannot open the relay secrets {path}: {exc}") from exc
        secrets_store = cls(conn, path)
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await secrets_store._schema()
        except sqlite3.Error as exc:
            await uncancelled(secrets_store.close())
            raise SecretsFileError(f"the relay secrets {path} are unusable: {exc}") from exc
        except BaseException:
            await uncancelled(secrets_store.close())
            raise
        return secrets_store

    async def _release(self) -> None:
        await self._conn.close()

    async def _transaction(self, body: Callable[[aiosqlite.Connection], Awaitable[T]],
                           write: bool, flight: Flight) -> T:
        return await sqlite_transaction(self._conn, self._lock, body, write, flight)

    @transaction(write=True)
    async def _schema(self, conn: aiosqlite.Connection) -> None:
        for statement in SCHEMA:
            await conn.execute(statement)

    # -- puppets -----------------------------------------------------------------------

    @transaction(write=False)
    async def puppets(self, conn: aiosqlite.Connection) -> list[str]:
        """The identities of the puppets the relay runs."""
        async with conn.execute("SELECT identity FROM puppets ORDER BY identity") as cur:
            return [row[0] for row in await cur.fetchall()]

    @transaction(write=True)
    async def add_puppet(self, conn: aiosqlite.Connection, identity: str) -> None:
        await conn.execute("INSERT OR IGNORE INTO puppets (identity) VALUES (?)", (identity,))

    @transaction(write=True)
    async def remove_puppet(self, conn: aiosqlite.Connection, identity: str) -> None:
        """Forget a puppet and every secret of it."""
        await conn.execute("DELETE FROM puppet_state WHERE puppet = ?", (identity,))
        await conn.execute("DELETE FROM puppets WHERE identity = ?", (identity,))

    @transaction(write=True)
    async def import_puppet(self, conn: aiosqlite.Connection, identity: str,
                            items: dict[str, bytes]) -> None:
        """Add a puppet with its saved state, all at once (the migration)."""
        await conn.execute("INSERT OR IGNORE INTO puppets (identity) VALUES (?)", (identity,))
        await conn.executemany(
            "INSERT OR REPLACE INTO puppet_state (puppet, key, value) VALUES (?, ?, ?)",
            [(identity, key, value) for key, value in items.items()])

    # -- the message id map ----------------------------------------------------------------

    @transaction(write=True)
    async def add_message_id(self, conn: aiosqlite.Connection, network: str, room: str,
                             owner: str, net_id: str, group_id: bytes, message_id: bytes,
                             author: str) -> None:
        """Remember that ``net_id`` in ``room`` (as known to ``owner``, or to everyone
        when "") is the group's message ``message_id`` written by ``author``; the
        first mapping of a network id stays. Beyond :data:`MESSAGE_IDS_KEPT` rows the
        oldest are dropped."""
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO message_ids (network, room, owner, net_id, group_id,"
            " message_id, author) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (network, room, owner, net_id, group_id, message_id, author))
        if cursor.lastrowid and cursor.lastrowid % 1000 == 0:
            await conn.execute("DELETE FROM message_ids WHERE n <= ?",
                               (cursor.lastrowid - MESSAGE_IDS_KEPT,))

    @transaction(write=False)
    async def message_for(self, conn: aiosqlite.Connection, network: str, room: str,
                          owner: str, net_id: str) -> tuple[bytes, bytes, str] | None:
        """(group id, message id, author) of a network id, or None."""
        async with conn.execute(
                "SELECT group_id, message_id, author FROM message_ids WHERE network = ?"
                " AND room = ? AND owner = ? AND net_id = ?",
                (network, room, owner, net_id)) as cur:
            row = await cur.fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]), str(row[2]))

    @transaction(write=False)
    async def net_id_for(self, conn: aiosqlite.Connection, group_id: bytes,
                         message_id: bytes, network: str, room: str) -> str | None:
        """The id everyone in ``room`` knows the group's message by, or None."""
        async with conn.execute(
                "SELECT net_id FROM message_ids WHERE group_id = ? AND message_id = ? AND"
                " network = ? AND room = ? AND owner = '' ORDER BY n LIMIT 1",
                (group_id, message_id, network, room)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    # -- reactions seen (bridge.relay.mapping) ----------------------------------------------

    @transaction(write=True)
    async def add_reaction(self, conn: aiosqlite.Connection, message_id: bytes,
                           group_id: bytes, target: bytes, author: str, emoji: str) -> None:
        """Remember a reaction (the first record of a message id stays); beyond
        :data:`REACTIONS_KEPT` the oldest are forgotten."""
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO reactions (message_id, group_id, target, author, emoji)"
            " VALUES (?, ?, ?, ?, ?)", (message_id, group_id, target, author, emoji))
        if cursor.lastrowid:
            await conn.execute("DELETE FROM reactions WHERE n <= ?",
                               (cursor.lastrowid - REACTIONS_KEPT,))

    @transaction(write=True)
    async def take_reaction(self, conn: aiosqlite.Connection, message_id: bytes,
                            author: str) -> tuple[bytes, bytes, str] | None:
        """Forget ``author``'s reaction ``message_id``: (group id, target, emoji), or
        None (unknown, or someone else's: then it stays)."""
        async with conn.execute(
                "SELECT group_id, target, emoji FROM reactions WHERE message_id = ?"
                " AND author = ?", (message_id, author)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        await conn.execute("DELETE FROM reactions WHERE message_id = ?", (message_id,))
        return bytes(row[0]), bytes(row[1]), str(row[2])

    @transaction(write=False)
    async def reactions_to(self, conn: aiosqlite.Connection, group_id: bytes, target: bytes,
                           author: str) -> list[tuple[bytes, str]]:
        """(message id, emoji) of ``author``'s reactions to ``target``, oldest first."""
        async with conn.execute(
                "SELECT message_id, emoji FROM reactions WHERE group_id = ? AND target = ?"
                " AND author = ? ORDER BY n", (group_id, target, author)) as cur:
            return [(bytes(row[0]), str(row[1])) for row in await cur.fetchall()]

    # -- one puppet's MemberStore ----------------------------------------------------------

    @transaction(write=False)
    async def load(self, conn: aiosqlite.Connection, puppet: str, key: str) -> bytes | None:
        async with conn.execute("SELECT value FROM puppet_state WHERE puppet = ? AND key = ?",
                                (puppet, key)) as cur:
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    @transaction(write=True)
    async def save(self, conn: aiosqlite.Connection, puppet: str, key: str,
                   value: bytes) -> None:
        await conn.execute(
            "INSERT OR REPLACE INTO puppet_state (puppet, key, value) VALUES (?, ?, ?)",
            (puppet, key, value))

    @transaction(write=True)
    async def delete(self, conn: aiosqlite.Connection, puppet: str, key: str) -> None:
        await conn.execute("DELETE FROM puppet_state WHERE puppet = ? AND key = ?",
                           (puppet, key))

    @transaction(write=False)
    async def keys(self, conn: aiosqlite.Connection, puppet: str, prefix: str) -> list[str]:
        async with conn.execute("SELECT key FROM puppet_state WHERE puppet = ? ORDER BY key",
                                (puppet,)) as cur:
            return [row[0] for row in await cur.fetchall() if row[0].startswith(prefix)]


    # -- the archive of re-emitted messages (bridge.relay.archive) -------------------------

    @transaction(write=True)
    async def add_archived(self, conn: aiosqlite.Connection, group_id: bytes,
                           message: Archived, keep: int) -> None:
        """Keep ``message`` and the newest ``keep`` - 1 before it (once per seq)."""
        await conn.execute(
            "INSERT OR IGNORE INTO archive (group_id, seq, nick, sender, body, at)"
            " VALUES (?, ?, ?, ?, ?, ?)", (group_id, message.seq, message.nick,
                                           message.sender, message.body, message.at))
        await conn.execute(
            "DELETE FROM archive WHERE group_id = ? AND seq NOT IN (SELECT seq FROM archive"
            " WHERE group_id = ? ORDER BY seq DESC LIMIT ?)", (group_id, group_id, keep))

    @transaction(write=False)
    async def archived(self, conn: aiosqlite.Connection, group_id: bytes, *,
                       after: int = -1, before: int | None = None, since: int = 0,
                       until: int | None = None, nick: str | None = None) -> list[Archived]:
        """The archived messages of the group in log order, within the bounds."""
        query = ("SELECT seq, nick, sender, body, at FROM archive WHERE group_id = ?"
                 " AND seq > ? AND seq < ? AND at >= ? AND at <= ?")
        args: list[object] = [group_id, after, before if before is not None else 2**62,
                              since, until if until is not None else 2**62]
        if nick is not None:
            query += " AND nick = ?"
            args.append(nick)
        async with conn.execute(query + " ORDER BY seq", args) as cur:
            return [Archived(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]))
                    for r in await cur.fetchall()]


class SecretsMemberStore:
    """:class:`bridge.member.MemberStore` of one puppet, in :class:`PuppetSecrets`."""

    def __init__(self, secrets_store: PuppetSecrets, puppet: str) -> None:
        self._secrets = secrets_store
        self._puppet = puppet

    async def load(self, key: str) -> bytes | None:
        return await self._secrets.load(self._puppet, key)

    async def save(self, key: str, value: bytes) -> None:
        await self._secrets.save(self._puppet, key, value)

    async def delete(self, key: str) -> None:
        await self._secrets.delete(self._puppet, key)

    async def keys(self, prefix: str) -> list[str]:
        return await self._secrets.keys(self._puppet, prefix)


def _create_or_check(path: Path) -> None:
    """Create the file atomically with mode 0600, or check an existing one is 0600."""
    try:
        info = path.stat()
    except FileNotFoundError:
        _create(path)
        return
    except OSError as exc:
        raise SecretsFileError(f"cannot read the relay secrets {path}: "
                               f"{exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretsFileError(f"the relay secrets {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SecretsFileError(
            f"the relay secrets {path} is accessible to other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); it holds keys that read relayed rooms: "
            "chmod 600 it")


def _create(path: Path) -> None:
    """A new, empty secrets database at ``path``: made as a 0600 temporary file beside
    it, its schema written and synced, then renamed into place (atomic)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        with sqlite3.connect(temporary) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
        conn.close()
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise SecretsFileError(f"cannot create the relay secrets {path}: "
                               f"{exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


__all__ = ["Archived", "PuppetSecrets", "SecretsFileError", "SecretsMemberStore"]
