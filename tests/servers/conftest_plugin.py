"""Session-scoped pytest fixtures running real Prosody and Synapse on 127.0.0.1.

Use from any test directory by adding to the top-level ``tests/conftest.py``::

    pytest_plugins = ["tests.servers.conftest_plugin"]

Fixtures (both session scoped; a server that cannot be installed or started FAILS the
test with the reason, it is never skipped):

- ``prosody_server`` -> :class:`bridge.devservers.prosody.ProsodyServer`
- ``synapse_server`` -> :class:`bridge.devservers.synapse.SynapseServer`; parametrize it
  indirectly with an :class:`~bridge.devservers.synapse.AppServiceSpec` for AS mode::

      @pytest.mark.parametrize("synapse_server", [AppServiceSpec()], indirect=True)
      async def test_bridge(synapse_server): ...

  Tests with an equal spec share one server; pytest restarts it when the spec changes.

Tests that ``stop()`` a server must ``start()`` it again before they finish (a
``try/finally``): the fixtures are shared by the whole session.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devservers.ports import ServerSetupError
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import AppServiceSpec, SynapseServer


def _timed_start(server: ProsodyServer | SynapseServer, what: str) -> None:
    began = time.monotonic()
    try:
        server.prepare()
        prepared = time.monotonic()
        server.start()
    except (ServerSetupError, OSError) as exc:
        server.stop()
        pytest.fail(f"{what} could not be started: {exc}", pytrace=False)
    if os.environ.get("MLS_BRIDGE_SERVER_TIMINGS"):
        print(
            f"\n[{what}] install/prepare {prepared - began:.2f}s, "
            f"start {time.monotonic() - prepared:.2f}s"
        )


@pytest.fixture(scope="session")
def prosody_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyServer]:
    """A running Prosody: c2s with STARTTLS (self-signed, ``cafile``), component port."""
    server = ProsodyServer(data_dir=Path(tmp_path_factory.mktemp("prosody")))
    _timed_start(server, "prosody")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def synapse_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SynapseServer]:
    """A running Synapse (sqlite, server name ``localhost``), optionally with an AS."""
    spec: AppServiceSpec | None = getattr(request, "param", None)
    if spec is not None and not isinstance(spec, AppServiceSpec):
        pytest.fail(f"synapse_server parameter must be an AppServiceSpec, not {spec!r}")
    name = "synapse-as" if spec else "synapse"
    server = SynapseServer(data_dir=Path(tmp_path_factory.mktemp(name)), appservice=spec)
    _timed_start(server, name)
    try:
        yield server
    finally:
        server.stop()
