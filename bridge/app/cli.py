"""``mls-bridge``: the bridge's command line.

    mls-bridge run --config FILE            run the bridge until SIGTERM/SIGINT
    mls-bridge check-config FILE            validate; print what run would do (no secrets)
    mls-bridge generate-registration --config FILE --out registration.yaml
    mls-bridge demo                         local Prosody + Synapse, a short conversation

Exit codes: 0 success (also after SIGTERM/SIGINT), 1 runtime failure (a server stayed
unreachable after ``retry.attempts``, the store failed), 2 bad configuration or a server
that refused the bridge's credentials. Errors are one line on standard error, never a
traceback; logs are structured (:mod:`bridge.app.logs`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from bridge.app.config import Config, ConfigError, load_config
from bridge.app.logs import event, setup_logging
from bridge.app.metrics import HubMetrics, Metrics, MetricsServer
from bridge.app.services.bridge import BridgeConfigError, BridgeService, RoomPair
from bridge.app.services.identity import load_identity
from bridge.app.services.matrix import MatrixServiceConfig
from bridge.app.signals import stop_on_signals
from bridge.hub import HubConfig, HubIdentity
from bridge.hub.store import Store, StoreError, StoreUnavailable, open_store
from transports.errors import TransportError
from transports.matrix.appservice import generate_registration, load_registration
from transports.matrix.errors import HomeserverError
from transports.matrix.events import user_uri
from transports.xmpp.component import ComponentConfig
from transports.xmpp.errors import ComponentAuthError

log = logging.getLogger("bridge.app.cli")


class FatalError(Exception):
    """Stop with ``code`` and a one-line ``message`` (no traceback)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(message: str, code: int) -> int:
    print(f"mls-bridge: {message}", file=sys.stderr, flush=True)
    return code


def _load(path: str) -> Config:
    return load_config(path)


# -- the running bridge ------------------------------------------------------------------


def _component_config(config: Config) -> ComponentConfig:
    x = config.xmpp
    assert x is not None
    return ComponentConfig(
        jid=x.jid, secret=x.secret.value, host=x.host, port=x.port,
        stanza_limit=x.stanza_limit, upload=x.upload, admins=frozenset(x.admins),
        leave_grace=x.leave_grace, backoff_initial=config.retry.initial_delay,
        backoff_max=config.retry.max_delay)


def _matrix_config(config: Config) -> MatrixServiceConfig:
    m = config.matrix
    assert m is not None
    a = m.appservice if m.mode == "appservice" else None
    return MatrixServiceConfig(
        homeserver=m.homeserver, user=m.user, password=m.password.value if m.password else "",
        device_id=m.device_id, appservice=a.registration if a else "",
        listen_host=a.listen_host if a else "127.0.0.1", listen_port=a.listen_port if a else 0,
        server_name=m.server_name, sync_timeout_ms=m.sync_timeout_ms,
        hub_name=config.hub.name)


def _hub_config(config: Config) -> HubConfig:
    return HubConfig(max_payload=config.hub.max_payload,
                     max_epoch_lag=config.hub.max_epoch_lag,
                     log_page_limit=config.hub.log_page_limit)


def hub_name(config: Config) -> str:
    if config.hub.name:
        return config.hub.name
    if config.xmpp is not None:
        return f"xmpp:{config.xmpp.jid}"
    assert config.matrix is not None
    return user_uri(config.matrix.user) if config.matrix.user else "matrix:hub"


def build_service(config: Config, store: Store, identity: HubIdentity) -> BridgeService:
    """One hub with every configured network attached (:class:`BridgeService`)."""
    rooms = [RoomPair(room.xmpp.lower(), room.matrix, room.relay) for room in config.rooms]
    return BridgeService(
        store, identity, xmpp=_component_config(config) if config.xmpp else None,
        matrix=_matrix_config(config) if config.matrix else None, rooms=rooms,
        hub_config=_hub_config(config), drain_timeout=config.shutdown_timeout,
        connect_timeout=config.xmpp.connect_timeout if config.xmpp else 20.0)


def _check_registration(config: Config) -> None:
    """AS mode: the registration file exists and agrees with configured tokens."""
    m = config.matrix
    if m is None or m.mode != "appservice" or m.appservice is None:
        return
    a = m.appservice
    try:
        registration = load_registration(a.registration, m.server_name)
    except (OSError, HomeserverError) as exc:
        raise FatalError(2, f"configuration error: matrix.appservice.registration: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    for key, secret, actual in (("as_token", a.as_token, registration.as_token),
                                ("hs_token", a.hs_token, registration.hs_token)):
        if secret is not None and secret.value != actual:
            raise FatalError(2, f"configuration error: matrix.appservice.{key}: does not "
                                f"match the registration file {a.registration}")


async def probe_xmpp(host: str, port: int) -> str | None:
    """None if host:port accepts TCP connections, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    except TimeoutError:
        return "connection timed out"
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def probe_homeserver(url: str) -> str | None:
    """None if the homeserver answers /_matrix/client/versions, else why not."""
    timeout = aiohttp.ClientTimeout(total=5.0)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(f"{url}/_matrix/client/versions") as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}"
    except TimeoutError:
        return "request timed out"
    except aiohttp.ClientConnectorError as exc:
        error = exc.os_error
        return os.strerror(error.errno) if error.errno else str(error) or "connection failed"
    except aiohttp.ClientError as exc:
        return type(exc).__name__
    return None


TRANSIENT = (OSError, TimeoutError, aiohttp.ClientError)


class BridgeRuntime:
    """Open the store, wait for the servers, start the service, stop gracefully."""

    def __init__(self, config: Config, metrics: Metrics, observer: HubMetrics,
                 stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.config = config
        self.ready = ready or asyncio.Event()
        self.metrics = metrics
        self.observer = observer
        self.stop = stop

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopped; True if the stop was requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    async def _retry(self, what: str, attempt: int, delay: float, reason: str) -> float:
        """Log one failed attempt; raise when out of attempts; return the next delay."""
        retry = self.config.retry
        self.metrics.connect_retries.inc(network=what)
        if retry.attempts and attempt >= retry.attempts:
            raise FatalError(1, f"{what}: still unreachable after {attempt} attempts "
                                f"({reason})")
        event(log, logging.WARNING, f"{what} unreachable, retrying", network=what,
              reason=reason, attempt=attempt, retry_in=round(delay, 3))
        return min(delay * 2, retry.max_delay)

    async def _open_store(self) -> Store | None:
        settings = self.config.store
        if settings.sqlite_path is not None:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        delay, attempt = self.config.retry.initial_delay, 0
        while not self.stop.is_set():
            try:
                return await open_store(settings.connect_url())
            except StoreUnavailable as exc:
                if settings.sqlite_path is not None:
                    raise FatalError(1, f"store: {exc}") from None
                attempt += 1
                next_delay = await self._retry("store", attempt, delay, str(exc))
                if await self._pause(delay):
                    break
                delay = next_delay
            except StoreError as exc:
                raise FatalError(1, f"store: {exc}") from None
        return None

    async def _until_reachable(self) -> bool:
        checks: list[tuple[str, str, Callable[[], Awaitable[str | None]]]] = []
        if (x := self.config.xmpp) is not None:
            checks.append(("xmpp", f"{x.host}:{x.port}",
                           lambda: probe_xmpp(x.host, x.port)))
        if (m := self.config.matrix) is not None:
            checks.append(("matrix", m.homeserver, lambda: probe_homeserver(m.homeserver)))
        for name, address, probe in checks:
            delay, attempt = self.config.retry.initial_delay, 0
            while (reason := await probe()) is not None:
                attempt += 1
                next_delay = await self._retry(name, attempt, delay,
                                               f"{address}: {reason}")
                if await self._pause(delay):
                    return False
                delay = next_delay
            event(log, logging.INFO, f"{name} server reachable", network=name,
                  address=address)
        return not self.stop.is_set()

    async def _start(self, store: Store, identity: HubIdentity) -> BridgeService | None:
        delay, attempt = self.config.retry.initial_delay, 0
        while not self.stop.is_set():
            service = build_service(self.config, store, identity)
            service.hub.observer = self.observer
            try:
                await service.start()
            except ComponentAuthError as exc:
                if "no handshake" not in str(exc):
                    raise FatalError(2, f"xmpp: {exc} (check xmpp.jid and xmpp.secret)"
                                     ) from None
                reason = str(exc)
            except HomeserverError as exc:
                if "refused" in str(exc):
                    raise FatalError(2, f"matrix: {exc} (check the matrix credentials)"
                                     ) from None
                reason = str(exc)
            except BridgeConfigError as exc:
                raise FatalError(2, f"configuration error: rooms: {exc}") from None
            except TRANSIENT as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                return service
            attempt += 1  # a failed start already disconnected what it had connected
            next_delay = await self._retry("bridge start", attempt, delay, reason)
            if await self._pause(delay):
                break
            delay = next_delay
        return None

    def _identity(self) -> HubIdentity:
        path = self.config.identity_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return load_identity(path, hub_name(self.config))
        except (OSError, ValueError, KeyError) as exc:
            raise FatalError(1, f"hub.identity_file: cannot use {path}: "
                                f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
                             ) from None

    async def run(self) -> int:
        _check_registration(self.config)
        identity = self._identity()
        store = await self._open_store()
        if store is None:
            return 0
        try:
            event(log, logging.INFO, "store open", store=self.config.store.display_url())
            if not await self._until_reachable():
                return 0
            service = await self._start(store, identity)
            if service is None:
                return 0
            for network in ("xmpp", "matrix"):
                if getattr(self.config, network) is not None:
                    self.metrics.network_up.set(1, network=network)
            event(log, logging.INFO, "bridge ready", rooms=len(self.config.rooms))
            self.ready.set()
            await self.stop.wait()
            await self._shutdown(service)
        finally:
            await store.close()
            event(log, logging.INFO, "store closed")
        return 0

    async def _shutdown(self, service: BridgeService) -> None:
        event(log, logging.INFO, "shutting down", in_flight=self.observer.in_flight)
        # BridgeService.stop refuses new requests, lets in-flight ones finish (their
        # fan-out and Welcomes too, up to shutdown_timeout), then disconnects
        with contextlib.suppress(*TRANSIENT, TransportError):
            await service.stop()
        event(log, logging.INFO, "networks disconnected", in_flight=self.observer.in_flight)
        for network in ("xmpp", "matrix"):
            self.metrics.network_up.set(0, network=network)


# -- run ----------------------------------------------------------------------------------


async def serve(config: Config, stop: asyncio.Event,
                ready: asyncio.Event | None = None) -> int:
    """Run the bridge until ``stop`` is set (``ready`` is set once it serves); return
    the exit code."""
    metrics = Metrics()
    observer = HubMetrics(metrics)
    server: MetricsServer | None = None
    if config.metrics.enabled:
        server = MetricsServer(metrics, config.metrics.host, config.metrics.port)
        try:
            await server.start()
        except OSError as exc:
            raise FatalError(2, f"metrics: cannot listen on {config.metrics.host}:"
                                f"{config.metrics.port}: {exc.strerror or exc}") from None
        event(log, logging.INFO, "metrics listening", url=f"http://{config.metrics.host}:"
                                                        f"{server.port}/metrics")
    runtime = BridgeRuntime(config, metrics, observer, stop, ready)
    try:
        return await runtime.run()
    finally:
        if server is not None:
            await server.stop()


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    setup_logging(config.log.level, config.log.format, config.log.file, config.secrets())

    async def main() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop, lambda name: event(log, logging.INFO, "signal received",
                                                 signal=name))
        return await serve(config, stop)

    try:
        return asyncio.run(main())
    except FatalError as exc:
        event(log, logging.ERROR, "bridge failed", reason=exc.message)
        return _fail(exc.message, exc.code)
    except KeyboardInterrupt:
        return 0


# -- check-config, generate-registration ----------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    for line in config.describe():
        print(line)
    print("check-config: OK")
    return 0


def cmd_generate_registration(args: argparse.Namespace) -> int:
    config = _load(args.config)
    matrix = config.matrix
    if matrix is None:
        raise ConfigError("matrix", "generate-registration needs a [matrix] table")
    appservice = matrix.appservice
    if appservice is None:
        raise ConfigError("matrix.appservice", "generate-registration needs a "
                                               "[matrix.appservice] table")
    if not appservice.url:
        raise ConfigError("matrix.appservice.url", "needed in the registration: where the "
                                                   "homeserver reaches the bridge")
    out = args.out or appservice.registration
    registration = generate_registration(
        appservice.url, out, id=appservice.id, sender_localpart=appservice.sender_localpart,
        user_prefix=appservice.user_prefix, server_name=matrix.server_name,
        as_token=appservice.as_token.value if appservice.as_token else None,
        hs_token=appservice.hs_token.value if appservice.hs_token else None)
    tokens = "from the configuration" if appservice.as_token and appservice.hs_token \
        else "generated (random)"
    print(f"wrote {out} (mode 0600): id {registration.id}, sender {registration.sender}, "
          f"url {registration.url}, users @{registration.user_prefix}*:"
          f"{registration.server_name}, tokens {tokens}")
    print("next: list this file in the homeserver's app_service_config_files, point "
          "matrix.appservice.registration at it, set matrix.mode = \"appservice\"")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.app.demo import main as demo_main

    return demo_main(keep=args.keep, workdir=args.workdir)


# -- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mls-bridge", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the bridge until SIGTERM/SIGINT")
    run.add_argument("--config", "-c", required=True, help="TOML configuration file")
    run.set_defaults(func=cmd_run)
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", help="TOML configuration file")
    check.set_defaults(func=cmd_check_config)
    gen = commands.add_parser("generate-registration",
                              help="write the Matrix application-service registration")
    gen.add_argument("--config", "-c", required=True, help="TOML configuration file")
    gen.add_argument("--out", "-o", default="",
                     help="file to write (default: matrix.appservice.registration)")
    gen.set_defaults(func=cmd_generate_registration)
    demo = commands.add_parser("demo", help="local Prosody + Synapse and a short bridged "
                                            "conversation")
    demo.add_argument("--keep", action="store_true", help="keep the demo's directory")
    demo.add_argument("--workdir", default="", help="directory for servers and database "
                                                    "(default: a new temporary one)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", 2)


if __name__ == "__main__":
    sys.exit(main())
