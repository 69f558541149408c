"""Fixtures for the stop tests: the bridge's store on either backend, with a way to
kill its server (PostgreSQL: a cluster of these tests' own, so killing it disturbs no
other test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.store.conftest import create_database
from tests.store.pg_server import PgServer


@dataclass(frozen=True)
class StoreBackend:
    """The store's URL, and how to kill and restart its server (no-ops for SQLite)."""

    name: str
    url: str
    kill: Callable[[], None]
    start_again: Callable[[], None]


def _nothing() -> None:
    pass


@pytest.fixture(scope="session")
def stop_pg_cluster() -> Iterator[PgServer]:
    server = PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    if request.param == "sqlite":
        return StoreBackend("sqlite", f"sqlite:///{tmp_path / 'bridge.db'}", _nothing,
                            _nothing)
    server: PgServer = request.getfixturevalue("stop_pg_cluster")
    return StoreBackend("postgres", await create_database(server), server.kill,
                        server.start_again)
