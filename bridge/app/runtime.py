"""Building and running the bridge from a :class:`bridge.app.config.Config`: what
``mls-bridge run`` and ``mls-bridge demo`` both run.

:func:`serve` starts the metrics endpoint (if configured) and a :class:`BridgeRuntime`,
which opens the store, waits until the XMPP server and the homeserver answer (retrying
with backoff, ``[retry]``), starts one :class:`bridge.app.services.bridge.BridgeService`
(built by :func:`build_service`) and stops it gracefully when asked. A failure that
should end the process with an exit code is a :class:`FatalError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import aiohttp

from bridge.app.config import Config
from bridge.app.logs import event
from bridge.app.metrics import HubMetrics, Metrics, MetricsServer
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.app.services.identity import load_identity
from bridge.app.services.matrix import MatrixServiceConfig
from bridge.app.shutdown import Shutdown, Step
from bridge.errors import BridgeConfigError
from bridge.hub import HubIdentity
from bridge.hub.policy import JoinPolicy
from bridge.hub.store import Store, StoreError, StoreUnavailable, open_store
from bridge.relay import PuppetSecrets
from transports.fairness import RequestLimits
from transports.matrix.appservice import load_registration
from transports.matrix.e2e import open_store_file
from transports.matrix.errors import HomeserverError
from transports.matrix.events import user_uri
from transports.xmpp.component import ComponentConfig
from transports.xmpp.errors import ComponentAuthError
from transports.xmpp.upload import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

class FatalError(Exception):
    """Stop with ``code`` and a one-line ``message`` (no traceback)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def request_limits(config: Config) -> RequestLimits:
    """What each hub-side transport admits (``[limits]``; the services take the payload
    bytes of one request from the hub's ``max_payload``)."""
    lim = config.limits
    return RequestLimits(rate=lim.requests_per_second, burst=lim.request_burst,
                         workers=lim.workers, queue_per_sender=lim.queue_per_sender,
                         queue_total=lim.queue_total)


def _component_config(config: Config) -> ComponentConfig:
    x = config.xmpp
    assert x is not None
    return ComponentConfig(
        jid=x.jid, secret=x.secret.value, host=x.host, port=x.port,
        stanza_limit=x.stanza_limit, upload=x.upload,
        admins=frozenset(_identity(admin) for admin in x.admins),
        leave_grace=x.leave_grace, backoff_initial=config.retry.initial_delay,
        backoff_max=config.retry.max_delay, limits=request_limits(config),
        upload_hosts=LOOPBACK_HOSTS | frozenset(x.upload_hosts))


def _matrix_config(config: Config) -> MatrixServiceConfig:
    m = config.matrix
    assert m is not None
    a = m.appservice if m.mode == "appservice" else None
    return MatrixServiceConfig(
        homeserver=m.homeserver, user=m.user, password=m.password.value if m.password else "",
        device_id=m.device_id, appservice=a.registration if a else "",
        listen_host=a.listen_host if a else "127.0.0.1", listen_port=a.listen_port if a else 0,
        server_name=m.server_name, sync_timeout_ms=m.sync_timeout_ms,
        hub_name=config.hub.name, limits=request_limits(config),
        olm_store=str(config.olm_store_path() or ""))


def _identity(uri: str) -> str:
    """An identity URI as the transports spell it (XMPP bare JIDs are case-insensitive
    and arrive lower-cased)."""
    return uri.lower() if uri.startswith("xmpp:") else uri


def hub_name(config: Config) -> str:
    if config.hub.name:
        return config.hub.name
    if config.xmpp is not None:
        return f"xmpp:{config.xmpp.jid}"
    assert config.matrix is not None
    return user_uri(config.matrix.user) if config.matrix.user else "matrix:hub"


def build_service(config: Config, store: Store, identity: HubIdentity,
                  relay_secrets: PuppetSecrets | None = None) -> BridgeService:
    """One hub with every configured network attached (:class:`BridgeService`)."""
    rooms = [RoomPair(room.xmpp.lower(), room.matrix, room.relay, JoinPolicy(room.join),
                      frozenset(_identity(admin) for admin in room.admins))
             for room in config.rooms]
    service = BridgeService(
        store, identity, xmpp=_component_config(config) if config.xmpp else None,
        matrix=_matrix_config(config) if config.matrix else None, rooms=rooms,
        hub_config=config.hub.policy, relay_secrets=relay_secrets,
        relay_archive=config.relay_archive, shutdown_timeout=config.shutdown_timeout,
        connect_timeout=config.xmpp.connect_timeout if config.xmpp else 20.0)
    service.relay.mapper.files.configured = config.relay_file_limit  # 0: the servers'
    return service


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
T = TypeVar("T")


class _Stopped(enum.Enum):
    STOPPED = "stopped"


STOPPED: Final = _Stopped.STOPPED


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
                store = await self._unless_stopped(open_store(settings.connect_url()))
                return None if store is STOPPED else store
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
            while (reason := await self._unless_stopped(probe())) is not None:
                if reason is STOPPED:
                    return False
                attempt += 1
                next_delay = await self._retry(name, attempt, delay,
                                               f"{address}: {reason}")
                if await self._pause(delay):
                    return False
                delay = next_delay
            event(log, logging.INFO, f"{name} server reachable", network=name,
                  address=address)
        return not self.stop.is_set()

    async def _unless_stopped(self, work: Awaitable[T]) -> T | _Stopped:
        """``work``'s result, or :data:`STOPPED` (``work`` cancelled) if the stop is
        requested first: a start-up step never delays a stop."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            cut = not task.done()
            if cut:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return STOPPED if cut else task.result()

    async def _start(self, store: Store, identity: HubIdentity,
                     secrets: PuppetSecrets) -> BridgeService | None:
        delay, attempt = self.config.retry.initial_delay, 0
        while not self.stop.is_set():
            service = build_service(self.config, store, identity, secrets)
            service.hub.observer = self.observer
            service.limit_observer = self.observer
            try:
                if await self._unless_stopped(service.start()) is STOPPED:
                    break
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

    def _olm_store(self) -> None:
        """The bot's olm store file (bot mode): created 0600 if absent, refused if
        anyone but its owner may read it (:func:`transports.matrix.e2e.open_store_file`)."""
        path = self.config.olm_store_path()
        try:
            if path is not None:
                open_store_file(path)
        except OSError as exc:
            raise FatalError(1, f"bridge.relay.olm_store: cannot use {path}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None

    async def _relay_secrets(self) -> PuppetSecrets:
        """The relay puppets' secrets file (created 0600 if absent; never the store)."""
        path = self.config.relay_secrets_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return await PuppetSecrets.open(path)
        except (OSError, StoreError) as exc:
            raise FatalError(1, f"bridge.relay.secrets: {getattr(exc, 'strerror', None) or exc}"
                             ) from None

    async def run(self) -> int:
        _check_registration(self.config)
        identity = self._identity()
        self._olm_store()
        secrets = await self._relay_secrets()
        try:
            return await self._run(identity, secrets)
        finally:
            await secrets.close()

    async def _run(self, identity: HubIdentity, secrets: PuppetSecrets) -> int:
        store = await self._open_store()
        if store is None:
            return 0
        service: BridgeService | None = None
        try:
            event(log, logging.INFO, "store open", store=self.config.store.display_url())
            if not await self._until_reachable():
                return 0
            service = await self._start(store, identity, secrets)
            if service is None:
                return 0
            for network in ("xmpp", "matrix"):
                if getattr(self.config, network) is not None:
                    self.metrics.network_up.set(1, network=network)
            event(log, logging.INFO, "bridge ready", rooms=len(self.config.rooms))
            self.ready.set()
            await self.stop.wait()
        finally:
            await self._shutdown(service, store)
        return 0

    async def _shutdown(self, service: BridgeService | None, store: Store) -> None:
        """The graceful stop (:meth:`BridgeService.stop`: its phases close the store
        last), within ``shutdown_timeout``; without a service, only the store closes."""
        shutdown = Shutdown(self.config.shutdown_timeout)
        event(log, logging.INFO, "shutting down", in_flight=self.observer.in_flight,
              timeout=self.config.shutdown_timeout)
        if service is not None:
            await service.stop(shutdown)
        else:
            await shutdown.phase("store", Step("store", store.close))
            event(log, logging.INFO, "store closed")
        for network in ("xmpp", "matrix"):
            self.metrics.network_up.set(0, network=network)
        event(log, logging.INFO, "bridge stopped", seconds=round(shutdown.elapsed, 3),
              cut=",".join(shutdown.cut) or "-", not_done=len(shutdown.not_done))


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
