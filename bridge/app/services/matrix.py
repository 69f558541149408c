"""The hub behind a Matrix bot: Hub + store + :class:`MatrixHubBot` in one process.

Plain bot account (/sync)::

    python -m bridge.app.services.matrix --store sqlite:///hub.db \\
        --homeserver http://127.0.0.1:8008 --user @mlshub:localhost --password PW

Application-service mode (transactions pushed by the homeserver; the AS sender is the
hub, listening where the registration's ``url`` points)::

    python -m bridge.app.services.matrix --store sqlite:///hub.db \\
        --homeserver http://127.0.0.1:8008 --appservice registration.yaml

The bot logs in with a fixed device id (``--device-id``), so its to-device inbox and
transaction-id deduplication survive restarts. Its sync token and the ids of the
events/requests it acted on are kept in the store's cursors; the hub's signing keys in
``--identity-file`` (mode 0600; default: the SQLite path + ``.hub-key``). Prints
``READY <user id> <device id>`` once serving. Exit codes: 0 after SIGTERM/SIGINT, 2
when the homeserver refuses the login, 1 on other startup errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nio

from bridge.app.services.identity import default_identity_file, load_identity
from bridge.app.signals import run_until_signalled
from bridge.hub import Hub, HubConfig, HubIdentity
from bridge.hub.store import Store, UnknownGroup, open_store
from transports.fairness import RequestLimits
from transports.interface import HubService, Network
from transports.matrix.appservice import (
    AppServiceListener,
    Ghosts,
    ensure_sender_registered,
    load_registration,
    login_appservice,
    ping,
)
from transports.matrix.bot import MatrixHubBot
from transports.matrix.e2e import client_config
from transports.matrix.errors import HomeserverError
from transports.matrix.events import user_uri
from transports.matrix.sync import SyncRunner

log = logging.getLogger("bridge.app.services.matrix")

DEFAULT_DEVICE = "MLSBRIDGEHUB"


@dataclass
class MatrixServiceConfig:
    homeserver: str
    user: str = ""
    password: str = ""
    device_id: str = DEFAULT_DEVICE
    appservice: str = ""  # registration file: AS mode
    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0: the port of the registration's url
    server_name: str = "localhost"
    sync_timeout_ms: int = 2000
    hub_name: str = ""
    limits: RequestLimits = field(default_factory=RequestLimits)  # transports.fairness
    olm_store: str = ""  # bot mode: Megolm with the olm store in this file (0600)


class MatrixService:
    """Hub + bot over an open store; :meth:`start` then :meth:`stop` (also in-process)."""

    def __init__(self, store: Store, identity: HubIdentity | None,
                 config: MatrixServiceConfig, hub_config: HubConfig | None = None) -> None:
        self.store = store
        self.config = config
        self.identity = identity
        self.hub_config = hub_config
        self.client: nio.AsyncClient | None = None
        self.bot: MatrixHubBot | None = None
        self.hub: Hub | None = None
        self.runner: SyncRunner | None = None
        self.listener: AppServiceListener | None = None
        self.ghosts: Ghosts | None = None  # AS mode: the relay posts as ghosts

    async def _group_suite(self, group_id: bytes) -> int:
        try:
            return (await self.store.get_group(group_id)).cipher_suite
        except UnknownGroup:
            return 0

    async def _login(self) -> nio.AsyncClient:
        cfg = self.config
        if cfg.appservice:
            registration = load_registration(cfg.appservice, cfg.server_name)
            await ensure_sender_registered(cfg.homeserver, registration)
            token, device = await login_appservice(cfg.homeserver, registration, cfg.device_id)
            client = nio.AsyncClient(cfg.homeserver, registration.sender, device_id=device)
            client.restore_login(registration.sender, device, token)
            return client
        if cfg.olm_store:
            store_path, e2e_config = client_config(Path(cfg.olm_store))
            client = nio.AsyncClient(cfg.homeserver, cfg.user, device_id=cfg.device_id,
                                     store_path=store_path, config=e2e_config)
        else:
            client = nio.AsyncClient(cfg.homeserver, cfg.user, device_id=cfg.device_id)
        response = await client.login(cfg.password, device_name="mls-bridge hub")
        if not isinstance(response, nio.LoginResponse):
            await client.close()  # type: ignore[no-untyped-call]  # nio: unannotated
            raise HomeserverError(f"login of {cfg.user} refused: {response}")
        return client

    async def start(self) -> None:
        bot = await self.connect()
        identity = self.identity or HubIdentity.generate(self.config.hub_name or bot.identity)
        self.hub = Hub(self.store, identity, bot, config=self.hub_config,
                       directories={Network.MATRIX: bot})
        await self.serve(self.hub)

    async def connect(self) -> MatrixHubBot:
        """Log in and make the bot (not yet serving): the first half of :meth:`start`,
        for a caller that builds its own hub around the bot (the combined bridge)."""
        self.client = client = await self._login()
        self.bot = MatrixHubBot(client, self.store, group_suite=self._group_suite,
                                limits=self.config.limits.with_payload(
                                    (self.hub_config or HubConfig()).max_payload))
        if self.config.appservice:
            self.ghosts = Ghosts(self.config.homeserver, load_registration(
                self.config.appservice, self.config.server_name))
            self.bot.controlled = self.ghosts.owns
        if self.config.olm_store and self.config.appservice:
            log.warning("encrypted rooms need bot mode: the application service cannot "
                        "decrypt Megolm (olm store %s unused)", self.config.olm_store)
        elif self.config.olm_store:
            await self.bot.enable_e2e(self.config.password)
        return self.bot

    async def serve(self, hub: HubService) -> None:
        """Attach ``hub`` to the bot and start receiving (sync loop or AS listener)."""
        bot = self.bot
        assert bot is not None, "connect() first"
        bot.attach(hub)
        if self.config.appservice:
            registration = load_registration(self.config.appservice, self.config.server_name)
            port = self.config.listen_port or int(registration.url.rsplit(":", 1)[1].strip("/"))
            self.listener = AppServiceListener(bot, registration.hs_token)
            await self.listener.start(self.config.listen_host, port)
            try:  # flushes the homeserver's retry backoff for transactions queued meanwhile
                await ping(self.config.homeserver, registration)
            except HomeserverError as exc:
                log.warning("%s", exc)
        else:
            self.runner = SyncRunner(bot, timeout_ms=self.config.sync_timeout_ms)
            self.runner.start()

    async def stop_receiving(self) -> None:
        """Stop taking new input (sync loop / AS listener); the bot can still send."""
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Plain mode: the first sync batch was processed."""
        if self.runner is not None:
            await asyncio.wait_for(self.runner.synced.wait(), timeout)

    async def stop(self) -> None:
        await self.stop_receiving()
        if self.hub is not None:
            await self.hub.drain(asyncio.get_running_loop().time() + 10.0)
            await self.hub.close()
        if self.bot is not None:
            await self.bot.close()
        if self.ghosts is not None:
            await self.ghosts.close()
        if self.client is not None:
            await self.client.close()  # type: ignore[no-untyped-call]  # nio: unannotated


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bridge.app.services.matrix")
    parser.add_argument("--store", required=True, help="sqlite:///path or postgresql://...")
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user", default="", help="bot user id (plain mode)")
    parser.add_argument("--password", default=os.environ.get("MLS_BRIDGE_MATRIX_PASSWORD", ""))
    parser.add_argument("--device-id", default=DEFAULT_DEVICE)
    parser.add_argument("--appservice", default="", help="registration file (AS mode)")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--sync-timeout-ms", type=int, default=2000)
    parser.add_argument("--identity-file", default="")
    parser.add_argument("--hub-name", default="")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.appservice and not (args.user and args.password):
        parser.error("plain mode needs --user and --password (or use --appservice)")
    return args


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Run until ``stop`` is set; return the process exit code."""
    store = await open_store(args.store)
    config = MatrixServiceConfig(
        homeserver=args.homeserver, user=args.user, password=args.password,
        device_id=args.device_id, appservice=args.appservice, listen_host=args.listen_host,
        listen_port=args.listen_port, server_name=args.server_name,
        sync_timeout_ms=args.sync_timeout_ms)
    try:
        identity_file = Path(args.identity_file) if args.identity_file \
            else default_identity_file(args.store)
        name = args.hub_name or (user_uri(args.user) if args.user else "matrix:hub")
        service = MatrixService(store, load_identity(identity_file, name), config)
        try:
            await service.start()
        except HomeserverError as exc:
            log.error("%s", exc)
            return 2
        try:
            await service.wait_ready()
            assert service.bot is not None
            print(f"READY {service.bot.user_id} {service.bot.device_id}", flush=True)
            await stop.wait()
        finally:
            await service.stop()
    finally:
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    return run_until_signalled(lambda stop: serve(args, stop))


if __name__ == "__main__":
    sys.exit(main())
