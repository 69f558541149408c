"""Fixtures for the XMPP transport tests: real Prosody on 127.0.0.1, the hub as a
component (in-process or as a ``bridge.app.services.xmpp`` subprocess), slixmpp members.

``upload_prosody`` is the project's Prosody plus ``mod_http_file_share`` (shipped with
Prosody 0.12) on a loopback HTTP port, for the XEP-0363 path; the shared
``prosody_server`` (no upload service) serves the refusal path.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from slixmpp import ClientXMPP

from bridge.devservers.ports import ServerSetupError
from bridge.devservers.prosody import ProsodyServer
from bridge.hub import Hub, HubIdentity
from bridge.hub.store import SqliteStore
from bridge.member import Member, RetryPolicy
from transports.interface import HubService, Network
from transports.xmpp.client import MLSClientPlugin, register
from transports.xmpp.component import ComponentConfig, MLSComponent

REPO_ROOT = Path(__file__).resolve().parents[2]
UPLOAD_LIMIT = 4 * 1024 * 1024


@dataclass
class UploadProsody(ProsodyServer):
    """Prosody with an XEP-0363 service ``upload.<domain>`` served on 127.0.0.1."""

    upload_limit: int = UPLOAD_LIMIT


class NoOfflineProsody(ProsodyServer):
    """Prosody without offline storage (``mod_offline`` is auto-loaded unless disabled):
    a message to a user with no online resource bounces with an error."""

    def render_config(self) -> str:
        config = super().render_config()
        assert 'modules_disabled = { "s2s" }' in config
        return config.replace('modules_disabled = { "s2s" }',
                              'modules_disabled = { "s2s"; "offline" }')


Server = TypeVar("Server", bound=ProsodyServer)


def _serving(server: Server, what: str,
             ready: Callable[[], None] = lambda: None) -> Iterator[Server]:
    """Start ``server`` for a fixture (a failure fails the tests that need it, with the
    reason), yield it, stop it."""
    try:
        server.prepare()
        server.start()
        ready()
    except (ServerSetupError, OSError) as exc:
        server.stop()
        pytest.fail(f"prosody {what} could not be started: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def no_offline_prosody(tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[NoOfflineProsody]:
    yield from _serving(NoOfflineProsody(
        data_dir=tmp_path_factory.mktemp("prosody-no-offline")), "without offline storage")


@pytest.fixture(scope="session")
def upload_prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UploadProsody]:
    server = UploadProsody(data_dir=tmp_path_factory.mktemp("prosody-upload"))
    yield from _serving(server, "with http_file_share")


@dataclass
class Peer:
    """One slixmpp account with the MLS plugin and a Member on top."""

    client: ClientXMPP
    plugin: MLSClientPlugin
    member: Member

    @property
    def identity(self) -> str:
        return self.plugin.identity

    async def close(self) -> None:
        await self.member.stop()
        await self.client.disconnect(wait=1.0)


async def connect_client(server: ProsodyServer, jid: str, password: str,
                         **plugin_config: Any) -> tuple[ClientXMPP, MLSClientPlugin]:
    client = ClientXMPP(f"{jid}/t{os.getpid() % 1000}", password)
    client.register_plugin("xep_0030")
    server.configure_client(client)
    plugin = register(client, server.component_name, timeout=10.0, **plugin_config)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_start(_event: Any) -> None:
        client.send_presence()
        if not ready.done():
            ready.set_result(None)

    def on_fail(_event: Any) -> None:
        if not ready.done():
            ready.set_exception(RuntimeError(f"{jid}: authentication failed"))

    client.add_event_handler("session_start", on_start)
    client.add_event_handler("failed_auth", on_fail)
    client.connect(host=server.host, port=server.c2s_port)
    await asyncio.wait_for(ready, 20)
    return client, plugin


async def new_peer(server: ProsodyServer, prefix: str, **plugin_config: Any) -> Peer:
    jid, password = server.new_user(prefix)
    client, plugin = await connect_client(server, jid, password, **plugin_config)
    member = Member(plugin, retry=RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0))
    plugin.attach(member)
    await member.start()
    return Peer(client, plugin, member)


@dataclass
class InProcessHub:
    component: MLSComponent
    hub: HubService
    store: SqliteStore
    extra: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        await self.component.stop()
        await self.store.close()


async def start_hub(server: ProsodyServer, db: Path, **config: Any) -> InProcessHub:
    store = await SqliteStore.open(db)
    component = MLSComponent(ComponentConfig(
        jid=server.component_name, secret=server.component_secret, host=server.host,
        port=server.component_port, **config), affiliations=store)
    hub = Hub(store, HubIdentity.generate("xmpp:" + server.component_name), component,
              directories={Network.XMPP: component})
    component.bind(hub)
    await component.start()
    return InProcessHub(component, hub, store)


@pytest.fixture
async def hub_in_process(prosody_server: ProsodyServer,
                         tmp_path: Path) -> AsyncIterator[InProcessHub]:
    running = await start_hub(prosody_server, tmp_path / "hub.db")
    try:
        yield running
    finally:
        await running.close()


class HubProcess:
    """``python -m bridge.app.services.xmpp`` as a child process (kill/restart at will)."""

    def __init__(self, server: ProsodyServer, data_dir: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "hub.log"

    def command(self, secret: str | None = None) -> list[str]:
        return [
            sys.executable, "-m", "bridge.app.services.xmpp",
            "--store", f"sqlite:///{self.data_dir / 'hub.db'}",
            "--jid", self.server.component_name,
            "--secret", secret or self.server.component_secret,
            "--host", self.server.host, "--port", str(self.server.component_port),
            "--connect-timeout", "10",
        ]

    async def start(self, secret: str | None = None) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(secret), stdout=subprocess.PIPE,
                                     stderr=log, cwd=REPO_ROOT)
        log.close()
        assert self.proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)
        if not line.startswith(b"ready"):
            code = self.proc.wait(10)
            raise RuntimeError(f"hub process exited {code}: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
