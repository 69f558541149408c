"""Fixtures for the ts-mls interop tests: one node driver per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.peer import TsMlsError, TsMlsPeer, ensure_installed


@pytest.fixture(scope="session")
def ts_mls() -> Iterator[TsMlsPeer]:
    """The ts-mls driver, installed on first use (tests/interop/setup.sh).

    A machine without node/npm fails these tests with the reason; they never skip.
    """
    problem: str | None = None
    try:
        ensure_installed()
    except TsMlsError as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(f"cannot set up ts-mls: {problem}", pytrace=False)
    with TsMlsPeer() as peer:
        yield peer
