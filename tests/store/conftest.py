"""Fixtures: a store of each backend (SQLite in a temp dir, PostgreSQL on a real server).

The PostgreSQL cluster is started once per session, only if a PostgreSQL test runs, and
each test gets its own fresh database in it. If PostgreSQL cannot be installed or
started, those tests fail with the reason (PgServerError); they are never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from bridge.hub.store import PostgresStore, SqliteStore, Store
from tests.store.pg_server import PgServer

BACKENDS = ("sqlite", "postgres")
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer.start()
    try:
        yield server
    finally:
        server.stop()


async def create_database(server: PgServer) -> str:
    """A fresh, empty database on the test cluster; return its DSN."""
    name = f"hub_test_{next(_database_numbers)}"
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.dsn(name)


class StoreFactory:
    """Opens (and re-opens) one test's store; the data outlives each opened instance."""

    def __init__(self, backend: str, tmp_path: Path, server: PgServer | None) -> None:
        self.backend = backend
        self.path = tmp_path / "hub.db"
        self._server = server
        self.dsn: str | None = None
        self.opened: list[Store] = []

    async def location(self) -> str:
        """The store's URL for :func:`bridge.hub.store.open_store`."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        if self.dsn is None:
            assert self._server is not None
            self.dsn = await create_database(self._server)
        return self.dsn

    async def open(self, *, pool_size: int = 25) -> Store:
        """Open the store (``pool_size``: PostgreSQL's most pooled connections)."""
        location = await self.location()
        store: Store
        if self.backend == "sqlite":
            store = await SqliteStore.open(self.path)
        else:
            store = await PostgresStore.open(location, min_size=1, max_size=pool_size)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()
        self.opened.clear()


@pytest.fixture(params=BACKENDS)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    backend: str = request.param
    server = request.getfixturevalue("pg_server") if backend == "postgres" else None
    factory = StoreFactory(backend, tmp_path, server)
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory.open()
