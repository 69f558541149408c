"""A device's state on disk: :class:`SqliteMemberStore`, the :class:`MemberStore` of a
member that must survive restarts (the chat client: signature key, KeyPackages, MLS
groups, and the client's own records such as read positions and history).

One SQLite file per device, holding secrets: it is created atomically with mode 0600
(``O_CREAT | O_EXCL``, never a moment with wider permissions) in a directory created
0700, and an existing file with wider permissions is narrowed to 0600 before it is
opened. SQLite gives its write-ahead log the database file's permissions. The
connection keeps an exclusive lock for its whole life (``locking_mode = EXCLUSIVE``),
so a second process opening the same device fails at once with
:class:`bridge.errors.StoreError` instead of two processes driving one MLS leaf.
Every save is its own durable transaction (``synchronous = FULL``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from os import PathLike
from pathlib import Path

import aiosqlite

from bridge.errors import StoreError

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
_SCHEMA = "CREATE TABLE IF NOT EXISTS member (key TEXT PRIMARY KEY, value BLOB NOT NULL)"


def create_private(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 (its directory 0700 when created)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
        if mode & ~FILE_MODE:
            log.warning("device store %s had mode %o; narrowed to 0600", path, mode)
            os.chmod(path, FILE_MODE)
        return
    os.close(fd)


class SqliteMemberStore:
    """:class:`bridge.member.MemberStore` in one SQLite file (see the module docstring)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    async def open(cls, path: str | PathLike[str]) -> SqliteMemberStore:
        """Open (creating it 0600 if needed) and lock the device store at ``path``."""
        file = Path(path)
        try:
            create_private(file)
            conn = await aiosqlite.connect(str(file), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the device store {file}: "
                             f"{type(exc).__name__}: {exc.args[0] if exc.args else ''}"
                             ) from exc
        try:
            await conn.execute("PRAGMA busy_timeout = 1000")
            await conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("BEGIN IMMEDIATE")  # takes the exclusive lock for good
            await conn.execute(_SCHEMA)
            await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            await conn.close()
            busy = "locked" in str(exc)
            raise StoreError(f"the device store {file} is in use by another process"
                             if busy else f"cannot open the device store {file}: {exc}"
                             ) from exc
        return cls(conn, file)

    async def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, ValueError):  # closing twice is harmless
            await self._conn.close()

    async def load(self, key: str) -> bytes | None:
        async with self._conn.execute("SELECT value FROM member WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def save(self, key: str, value: bytes) -> None:
        await self._write("INSERT INTO member (key, value) VALUES (?, ?) ON CONFLICT (key) "
                          "DO UPDATE SET value = excluded.value", (key, value))

    async def delete(self, key: str) -> None:
        await self._write("DELETE FROM member WHERE key = ?", (key,))

    async def keys(self, prefix: str) -> list[str]:
        async with self._conn.execute(
                "SELECT key FROM member WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix)) as cur:
            return [str(row[0]) for row in await cur.fetchall()]

    async def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            await self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"device store write failed: {type(exc).__name__}") from exc
