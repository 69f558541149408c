"""The hub behind a Matrix bot: Hub + store + :class:`MatrixHubBot` in one process.

Plain bot account (/sync)::

    python -m bridge.services.matrix --store sqlite:///hub.db \\
        --homeserver http://127.0.0.1:8008 --user @mlshub:localhost --password PW

Application-service mode (transactions pushed by the homeserver; the AS sender is the
hub, listening where the registration's ``url`` points)::

    python -m bridge.services.matrix --store sqlite:///hub.db \\
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
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import nio

from bridge import transport as bt
from bridge.errors import LinkError
from bridge.hub import Hub, HubConfig, HubIdentity
from bridge.store import Store, UnknownGroup, open_store
from transports.matrix import types as mt
from transports.matrix.appservice import (
    AppServiceListener,
    ensure_sender_registered,
    load_registration,
    login_appservice,
    ping,
)
from transports.matrix.bot import MatrixHubBot, SyncRunner
from transports.matrix.client import MatrixMemberLink
from transports.matrix.errors import HomeserverError, MatrixLinkError
from transports.matrix.events import user_uri

log = logging.getLogger("bridge.services.matrix")

ALL_SUITES = (1, 2, 3, 4, 5, 6, 7)
DEFAULT_DEVICE = "MLSBRIDGEHUB"


def load_identity(path: Path, name: str, suites: tuple[int, ...] = ALL_SUITES) -> HubIdentity:
    """The hub's identity from ``path`` (same format as the XMPP service's); generated
    and written 0600 if absent."""
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = {int(suite): bytes.fromhex(key) for suite, key in data["keys"].items()}
        return HubIdentity(data["name"], keys)
    identity = HubIdentity.generate(name, suites)
    text = json.dumps({"name": identity.name,
                       "keys": {str(s): k.hex() for s, k in identity.signature_keys.items()}})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return identity


def default_identity_file(store_url: str) -> Path:
    if store_url.startswith("sqlite:///") and ":memory:" not in store_url:
        return Path(store_url.removeprefix("sqlite:///") + ".hub-key")
    return Path("hub.key")


# -- adapters between bridge.transport and transports.matrix.types ----------------------
# (the transport keeps its own copy of the value types so that it never loads ``mls``)

_T = TypeVar("_T")


def _copy(value: Any, cls: type[_T]) -> _T:
    """Copy a value type field by field into its twin class (entries and listings too)."""
    outbound = cls if cls in (bt.Outbound, mt.Outbound) else None
    listing = bt.KeyPackageListing if cls is bt.Outbound else mt.KeyPackageListing
    values = {f.name: getattr(value, f.name) for f in fields(cls)}  # type: ignore[arg-type]
    if outbound is not None:
        values["entries"] = tuple(_copy(entry, outbound) for entry in value.entries)
        values["key_packages"] = tuple(_copy(kp, listing) for kp in value.key_packages)
    return cls(**values)


def to_bridge_outbound(message: mt.Outbound) -> bt.Outbound:
    return _copy(message, bt.Outbound)


def to_matrix_outbound(message: bt.Outbound) -> mt.Outbound:
    return _copy(message, mt.Outbound)


class HubAdapter:
    """The bridge's hub as the Matrix bot's :class:`transports.matrix.types.HubService`."""

    def __init__(self, hub: bt.HubService) -> None:
        self.hub = hub

    async def handle(self, request: mt.Inbound) -> mt.Outbound:
        reply = await self.hub.handle(_copy(request, bt.Inbound))
        return to_matrix_outbound(reply)


class DelivererAdapter:
    """The Matrix bot as the hub's :class:`bridge.transport.Deliverer`."""

    def __init__(self, bot: MatrixHubBot) -> None:
        self.bot = bot

    async def deliver(self, message: bt.Outbound) -> None:
        try:
            await self.bot.deliver(to_matrix_outbound(message))
        except MatrixLinkError as exc:
            raise LinkError(str(exc)) from exc


class SinkAdapter:
    """A bridge :class:`DeliverySink` (a Member) behind the Matrix member link."""

    def __init__(self, sink: bt.DeliverySink) -> None:
        self.sink = sink

    async def deliver(self, message: mt.Outbound) -> None:
        await self.sink.deliver(to_bridge_outbound(message))


class MatrixHubLink:
    """:class:`bridge.transport.HubLink` over a :class:`MatrixMemberLink`."""

    def __init__(self, link: MatrixMemberLink) -> None:
        self.link = link

    @property
    def identity(self) -> str:
        return self.link.identity

    async def request(self, request: bt.Inbound) -> bt.Outbound:
        try:
            reply = await self.link.request(_copy(request, mt.Inbound))
        except MatrixLinkError as exc:
            raise LinkError(str(exc)) from exc
        return to_bridge_outbound(reply)

    def attach(self, sink: bt.DeliverySink) -> None:
        """Hand this link's deliveries to ``sink`` (a :class:`bridge.member.Member`)."""
        self.link.attach(SinkAdapter(sink))


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
        client = nio.AsyncClient(cfg.homeserver, cfg.user, device_id=cfg.device_id)
        response = await client.login(cfg.password, device_name="mls-bridge hub")
        if not isinstance(response, nio.LoginResponse):
            await client.close()
            raise HomeserverError(f"login of {cfg.user} refused: {response}")
        return client

    async def start(self) -> None:
        self.client = client = await self._login()
        bot = self.bot = MatrixHubBot(client, self.store, group_suite=self._group_suite)
        identity = self.identity or HubIdentity.generate(self.config.hub_name or bot.identity)
        self.hub = Hub(self.store, identity, DelivererAdapter(bot), config=self.hub_config)
        bot.attach(HubAdapter(self.hub))
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

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Plain mode: the first sync batch was processed."""
        if self.runner is not None:
            await asyncio.wait_for(self.runner.synced.wait(), timeout)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        if self.listener is not None:
            await self.listener.stop()
        if self.bot is not None:
            await self.bot.close()
        if self.client is not None:
            await self.client.close()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bridge.services.matrix")
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

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await serve(args, stop)

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
