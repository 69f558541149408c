"""The bridge's TOML configuration: load, validate, describe (``config/example.toml``).

:func:`load_config` reads a file with :mod:`tomllib` and returns a frozen
:class:`Config`, or raises :class:`ConfigError` naming the offending key by its dotted
path (``xmpp.port``, ``bridge.rooms[1].matrix``) and the reason. Unknown keys are errors, so a
typo never silently falls back to a default.

Secrets (the XMPP component secret, the Matrix password, the application-service tokens,
the PostgreSQL password) are :class:`Secret` values: each may be given inline
(``secret = "..."``), from an environment variable (``secret_env = "NAME"``) or from a
file (``secret_file = "/path"``, trailing newline stripped) -- exactly one of the three.
A secret's value never appears in ``repr``, :meth:`Config.describe` or an error message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from bridge.app.tables import ConfigError, Secret, Table
from bridge.hub.policy import DAY, HubConfig, JoinPolicy
from transports.matrix.crosssign import keys_file

LOG_LEVELS = ("debug", "info", "warning", "error")
JOIN_POLICIES = ("invite", "room", "open")
IDENTITY_PREFIXES = ("xmpp:", "matrix:u/")
LOG_FORMATS = ("json", "text")
MATRIX_MODES = ("bot", "appservice")


# -- sections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSettings:
    url: str
    password: Secret | None = None

    def connect_url(self) -> str:
        """The URL handed to :func:`bridge.hub.store.open_store` (password inserted)."""
        if self.password is None:
            return self.url
        parts = urlsplit(self.url)
        user, _, host = parts.netloc.rpartition("@")
        netloc = f"{user}:{quote(self.password.value, safe='')}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    def display_url(self) -> str:
        return self.url

    @property
    def sqlite_path(self) -> Path | None:
        if self.url.startswith("sqlite:///") and ":memory:" not in self.url:
            return Path(self.url.removeprefix("sqlite:///"))
        return None


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: str = "json"
    file: str = ""  # empty: standard error


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464


#: ``[hub]`` keys that set the :class:`bridge.hub.HubConfig` field of the same name, with
#: their bounds (low, high); what each means is said in ``HubConfig``'s docstring and in
#: config/example.toml.
HUB_INTEGERS: dict[str, tuple[int, int]] = {
    "max_payload": (1024, 1 << 30), "max_epoch_lag": (0, 1000),
    "log_page_limit": (1, 100_000), "max_key_packages_per_device": (1, 100_000),
    "max_devices": (1, 10_000), "max_device_name": (1, 1024),
    "max_key_package_lifetime": (3600, 10 * 365 * DAY), "max_key_package_size": (512, 1 << 20),
    "claims_per_target": (1, 1000), "claim_ttl": (1, 30 * DAY),
    "max_groups_per_user": (1, 1_000_000), "max_pending_welcomes": (1, 100_000),
    "fault_quorum": (1, 1000), "report_window": (1, 100_000),
    "external_commit_limit": (1, 100_000), "external_commit_window": (1, DAY),
    "delivery_backlog": (1, 1_000_000), "max_media_size": (1024, 1 << 32),
    "media_fetch_limit": (1, 100_000), "media_fetch_window": (1, DAY)}
HUB_NUMBERS: dict[str, float] = {"admit_timeout": 0.01}  # their lower bound


@dataclass(frozen=True)
class HubSettings:
    """``[hub]``: the hub's name and identity file, and its policy (every other key)."""

    name: str = ""
    identity_file: str = ""
    policy: HubConfig = field(default_factory=lambda: HubConfig(max_payload=8 * 1024 * 1024))


@dataclass(frozen=True)
class LimitSettings:
    """How much one sender may ask of each hub-side transport (:mod:`transports.fairness`)."""

    requests_per_second: float = 20.0
    request_burst: int = 60
    workers: int = 8
    queue_per_sender: int = 32
    queue_total: int = 1024


@dataclass(frozen=True)
class RetrySettings:
    initial_delay: float = 1.0
    max_delay: float = 60.0
    attempts: int = 0  # 0: retry until stopped


@dataclass(frozen=True)
class XmppSettings:
    jid: str
    secret: Secret
    host: str = "127.0.0.1"
    port: int = 5347
    stanza_limit: int = 256 * 1024
    upload: bool = True
    admins: tuple[str, ...] = ()
    leave_grace: float = 60.0
    connect_timeout: float = 20.0
    upload_hosts: tuple[str, ...] = ()  # HTTP hosts files may be fetched from (+ loopback)


@dataclass(frozen=True)
class AppServiceSettings:
    registration: str
    url: str = ""
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    id: str = "mls-bridge"
    sender_localpart: str = "mlsbridge"
    user_prefix: str = "mlsbridge_"
    as_token: Secret | None = None
    hs_token: Secret | None = None


@dataclass(frozen=True)
class MatrixSettings:
    homeserver: str
    server_name: str
    mode: str = "bot"
    user: str = ""
    password: Secret | None = None
    device_id: str = "MLSBRIDGEHUB"
    sync_timeout_ms: int = 2000
    appservice: AppServiceSettings | None = None


@dataclass(frozen=True)
class RoomSettings:
    name: str
    xmpp: str
    matrix: str
    relay: bool = False
    join: str = "invite"
    admins: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    path: Path
    store: StoreSettings
    log: LogSettings
    metrics: MetricsSettings
    hub: HubSettings
    limits: LimitSettings
    retry: RetrySettings
    xmpp: XmppSettings | None
    matrix: MatrixSettings | None
    rooms: tuple[RoomSettings, ...] = ()
    shutdown_timeout: float = 10.0
    relay_secrets: str = ""  # [bridge.relay] secrets: the puppets' keys (0600 file)
    olm_store: str = ""  # [bridge.relay] olm_store: the bot's Megolm keys (0600 file)
    relay_archive: int = 1000  # [bridge.relay] archive: re-emitted messages kept per room
    relay_file_limit: int = 0  # [bridge.relay] file_limit: bytes; 0: the smaller server's

    def secrets(self) -> list[str]:
        """Every secret value (for the log redactor)."""
        found = [self.store.password, self.xmpp.secret if self.xmpp else None]
        if self.matrix is not None:
            found.append(self.matrix.password)
            if self.matrix.appservice is not None:
                found += [self.matrix.appservice.as_token, self.matrix.appservice.hs_token]
        return [s.value for s in found if s is not None and s.value]

    def identity_path(self) -> Path:
        if self.hub.identity_file:
            return Path(self.hub.identity_file)
        sqlite = self.store.sqlite_path
        return Path(f"{sqlite}.hub-key") if sqlite is not None else Path("hub.key")

    def relay_secrets_path(self) -> Path:
        """Where relay puppets' secrets live: ``[bridge.relay] secrets``, else
        ``<database>.relay-secrets`` beside a SQLite store, else ``relay-secrets.db``."""
        if self.relay_secrets:
            return Path(self.relay_secrets)
        sqlite = self.store.sqlite_path
        return Path(f"{sqlite}.relay-secrets") if sqlite is not None else \
            Path("relay-secrets.db")

    def olm_store_path(self) -> Path | None:
        """Where the bot keeps its olm account and Megolm sessions (bot mode only):
        ``[bridge.relay] olm_store``, else ``<database>.olm`` beside a SQLite store,
        else ``olm-store.db``."""
        if self.matrix is None or self.matrix.mode != "bot":
            return None
        if self.olm_store:
            return Path(self.olm_store)
        sqlite = self.store.sqlite_path
        return Path(f"{sqlite}.olm") if sqlite is not None else Path("olm-store.db")

    def hub_lines(self) -> list[str]:
        """The hub's policy as :meth:`describe` shows it."""
        p = self.hub.policy
        return [f"hub limits: max_payload={p.max_payload} max_epoch_lag={p.max_epoch_lag} "
                f"log_page_limit={p.log_page_limit}",
                f"hub policy: default_join={p.default_join.value} "
                f"key packages per device={p.max_key_packages_per_device} "
                f"devices={p.max_devices} lifetime<={p.max_key_package_lifetime} s "
                f"claims per target={p.claims_per_target} "
                f"groups per user={p.max_groups_per_user} "
                f"pending Welcomes per user={p.max_pending_welcomes}",
                f"hub faults: quorum {p.fault_quorum}, reports within {p.report_window} "
                f"epochs; external commits {p.external_commit_limit} per "
                f"{p.external_commit_window} s",
                f"hub fan-out: at most {p.delivery_backlog} entries per group waiting for "
                f"delivery, a request admitted within {p.admit_timeout:g} s or refused",
                f"hub media: files up to {p.max_media_size} bytes, "
                f"{p.media_fetch_limit} fetches per {p.media_fetch_window} s",
                f"hub attestations: X.509, valid {p.certificate_validity // DAY} days"]

    def describe(self) -> list[str]:
        """What ``mls-bridge run`` would do, one line each; secrets appear only as
        their source (``env:NAME``), never their value."""
        lines = [f"config: {self.path}",
                 f"store: {self.store.display_url()}"
                 + (f" (password {self.store.password.source})" if self.store.password else ""),
                 f"hub identity: {self.identity_path()}"
                 + (f" (name {self.hub.name})" if self.hub.name else ""),
                 *self.hub_lines(),
                 f"request limits: {self.limits.requests_per_second:g}/s per sender "
                 f"(burst {self.limits.request_burst}), {self.limits.workers} workers, "
                 f"queues {self.limits.queue_per_sender} per sender / "
                 f"{self.limits.queue_total} in all"]
        if self.xmpp is not None:
            x = self.xmpp
            lines.append(f"network xmpp: component {x.jid} -> {x.host}:{x.port} "
                         f"(secret {x.secret.source}, upload {'on' if x.upload else 'off'}, "
                         f"admins {len(x.admins)}, downloads from loopback"
                         + "".join(f", {host}" for host in x.upload_hosts) + ")")
        else:
            lines.append("network xmpp: disabled")
        if self.matrix is not None:
            lines += _describe_matrix(self.matrix)
        else:
            lines.append("network matrix: disabled")
        for room in self.rooms:
            mode = "relay" if room.relay else "mls"
            lines.append(f"room {room.name}: xmpp {room.xmpp} <-> matrix {room.matrix} "
                         f"({mode}, join={room.join}, admins {', '.join(room.admins) or 'none'})")
        relays = [r.name for r in self.rooms if r.relay]
        lines.append(f"relay rooms: {', '.join(relays) if relays else 'none'} "
                     f"(puppet secrets: {self.relay_secrets_path()})")
        lines.append(f"relay archive: the newest {self.relay_archive} re-emitted messages "
                     "per relayed room, in the puppet secrets file (XEP-0313)")
        lines.append("relay files: up to " + (f"{self.relay_file_limit} bytes"
                     if self.relay_file_limit else "the smaller server upload limit") +
                     " (larger ones become a notice)")
        olm = self.olm_store_path()
        lines.append(f"encrypted Matrix rooms: Megolm, olm store {olm}, the device "
                     f"cross-signed with the keys in {keys_file(olm)} (fingerprints logged "
                     "at start)" if olm is not None else
                     "encrypted Matrix rooms: not read (application-service mode)")
        if self.metrics.enabled:
            lines.append(f"listener metrics: http://{self.metrics.host}:{self.metrics.port}"
                         "/metrics")
        else:
            lines.append("listener metrics: disabled")
        lines.append(f"log: level={self.log.level} format={self.log.format} "
                     f"to={self.log.file or 'stderr'}")
        lines.append(f"retry: {self.retry.initial_delay:g} s doubling to "
                     f"{self.retry.max_delay:g} s, "
                     + (f"{self.retry.attempts} attempts" if self.retry.attempts
                        else "until stopped"))
        return lines


def _describe_matrix(m: MatrixSettings) -> list[str]:
    if m.mode == "bot":
        assert m.password is not None
        return [f"network matrix: bot {m.user} on {m.homeserver} (server {m.server_name}, "
                f"password {m.password.source}, device {m.device_id})"]
    a = m.appservice
    assert a is not None
    tokens = ", ".join(f"{name} {tok.source}" for name, tok in
                       (("as_token", a.as_token), ("hs_token", a.hs_token)) if tok)
    return [f"network matrix: application service {a.id} (@{a.sender_localpart}:"
            f"{m.server_name}) on {m.homeserver}, registration {a.registration}"
            + (f", {tokens}" if tokens else ""),
            f"listener appservice: http://{a.listen_host}:{a.listen_port or '(from url)'} "
            f"(homeserver pushes to {a.url or 'the registration url'})"]


# -- sections ------------------------------------------------------------------------------


def _store(t: Table) -> StoreSettings:
    url = t.text("url", nonempty=True)
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(t.key("url"), "must start with sqlite:/// or postgresql://")
    password = t.secret("password", required=False)
    if password is not None and url.startswith("sqlite"):
        raise ConfigError(t.key("password"), "only a PostgreSQL store takes a password")
    if url.startswith("postgres") and ":" in urlsplit(url).netloc.rpartition("@")[0]:
        raise ConfigError(t.key("url"), "put the password in store.password_env or "
                                        "store.password_file, not in the URL")
    t.done()
    return StoreSettings(url, password)


def _port(t: Table, name: str, default: int, allow_zero: bool = False) -> int:
    return t.integer(name, default, low=0 if allow_zero else 1, high=65535)


def _xmpp(t: Table) -> XmppSettings:
    jid = t.text("jid", nonempty=True)
    if "@" in jid or "/" in jid or "." not in jid:
        raise ConfigError(t.key("jid"), f"must be a component domain like mls.example.org "
                                        f"(got {jid!r})")
    settings = XmppSettings(
        jid=jid, secret=t.secret("secret"),  # type: ignore[arg-type]
        host=t.text("host", "127.0.0.1", nonempty=True), port=_port(t, "port", 5347),
        stanza_limit=t.integer("stanza_limit", 256 * 1024, low=4096),
        upload=t.flag("upload", True), admins=_identities(t, "admins", ("xmpp:",)),
        leave_grace=t.number("leave_grace", 60.0), connect_timeout=t.number("connect_timeout",
                                                                          20.0, low=0.1),
        upload_hosts=tuple(host.lower() for host in t.strings("upload_hosts")))
    t.done()
    return settings


def _identities(t: Table, name: str, prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """A list of identity URIs, each with one of ``prefixes`` and something after it."""
    values = t.strings(name)
    for i, value in enumerate(values):
        if not any(value.startswith(p) and len(value) > len(p) + 2 for p in prefixes):
            raise ConfigError(f"{t.key(name)}[{i}]", "must be an identity URI starting with "
                                                     + " or ".join(prefixes))
    return values


def _appservice(t: Table) -> AppServiceSettings:
    url = t.text("url", "")
    if url and not re.match(r"^https?://[^/]+:\d+/?$", url):
        raise ConfigError(t.key("url"), "must be http(s)://host:port")
    settings = AppServiceSettings(
        registration=t.text("registration", nonempty=True), url=url,
        listen_host=t.text("listen_host", "127.0.0.1", nonempty=True),
        listen_port=_port(t, "listen_port", 0, allow_zero=True),
        id=t.text("id", "mls-bridge", nonempty=True),
        sender_localpart=t.text("sender_localpart", "mlsbridge", nonempty=True),
        user_prefix=t.text("user_prefix", "mlsbridge_", nonempty=True),
        as_token=t.secret("as_token", required=False),
        hs_token=t.secret("hs_token", required=False))
    t.done()
    return settings


def _matrix(t: Table) -> MatrixSettings:
    homeserver = t.text("homeserver", nonempty=True)
    if not re.match(r"^https?://", homeserver):
        raise ConfigError(t.key("homeserver"), "must be an http:// or https:// URL")
    mode = t.text("mode", "bot", choices=MATRIX_MODES)
    server_name = t.text("server_name", nonempty=True)
    user = t.text("user", "")
    password = t.secret("password", required=False)
    as_table = t.table("appservice")
    appservice = _appservice(as_table) if as_table is not None else None
    if mode == "bot":
        if not re.match(r"^@[^:]+:.+$", user):
            raise ConfigError(t.key("user"), "bot mode needs the bot's user id "
                                             "(@name:server)" if not user
                              else f"must be a Matrix user id like @hub:{server_name}")
        if password is None:
            raise ConfigError(t.key("password"), "bot mode needs the bot's password "
                                                 "(password, password_env or password_file)")
    elif appservice is None:
        raise ConfigError(t.key("appservice"), "mode = \"appservice\" needs a "
                                               "[matrix.appservice] table")
    settings = MatrixSettings(
        homeserver=homeserver.rstrip("/"), server_name=server_name, mode=mode, user=user,
        password=password, device_id=t.text("device_id", "MLSBRIDGEHUB", nonempty=True),
        sync_timeout_ms=t.integer("sync_timeout_ms", 2000, low=0, high=60000),
        appservice=appservice)
    t.done()
    return settings


def _rooms(tables: list[Table], xmpp: XmppSettings | None,
           matrix: MatrixSettings | None) -> tuple[RoomSettings, ...]:
    rooms: list[RoomSettings] = []
    seen: dict[str, str] = {}
    for t in tables:
        room = RoomSettings(name=t.text("name", nonempty=True), xmpp=t.text("xmpp", nonempty=True),
                            matrix=t.text("matrix", nonempty=True), relay=t.flag("relay", False),
                            join=t.text("join", "invite", choices=JOIN_POLICIES),
                            admins=_identities(t, "admins", IDENTITY_PREFIXES))
        t.done()
        if xmpp is None:
            raise ConfigError(t.key("xmpp"), "the [xmpp] network is not configured")
        if matrix is None:
            raise ConfigError(t.key("matrix"), "the [matrix] network is not configured")
        local, _, domain = room.xmpp.partition("@")
        if not local or "/" in domain or domain.lower() != xmpp.jid.lower():
            raise ConfigError(t.key("xmpp"), f"must be a room of the component: "
                                             f"name@{xmpp.jid} (got {room.xmpp!r})")
        if not re.match(r"^![^\s:]+(:\S+)?$", room.matrix):  # room v12 ids have no server
            raise ConfigError(t.key("matrix"), f"must be a room id like !opaque:"
                                               f"{matrix.server_name} (got {room.matrix!r})")
        for key, value in (("name", room.name), ("xmpp", room.xmpp), ("matrix", room.matrix)):
            if value in seen:
                raise ConfigError(t.key(key), f"{value!r} is already used by {seen[value]}")
            seen[value] = t.path
        rooms.append(room)
    return tuple(rooms)


def _hub(h: Table, d: HubSettings) -> HubSettings:
    policy = d.policy
    values: dict[str, Any] = {
        key: h.integer(key, getattr(policy, key), low=low, high=high)
        for key, (low, high) in HUB_INTEGERS.items()}
    values |= {key: h.number(key, getattr(policy, key), low=low)
               for key, low in HUB_NUMBERS.items()}
    values["default_join"] = JoinPolicy(h.text("default_join", policy.default_join.value,
                                               choices=JOIN_POLICIES))
    values["certificate_validity"] = DAY * h.integer(
        "certificate_validity_days", policy.certificate_validity // DAY, low=1, high=365)
    settings = HubSettings(h.text("name", ""), h.text("identity_file", ""),
                           dataclasses.replace(policy, **values))
    h.done()
    return settings


def _limits(t: Table, d: LimitSettings) -> LimitSettings:
    settings = LimitSettings(
        t.number("requests_per_second", d.requests_per_second, low=0.01),
        t.integer("request_burst", d.request_burst, low=1, high=1_000_000),
        t.integer("workers", d.workers, low=1, high=1024),
        t.integer("queue_per_sender", d.queue_per_sender, low=1, high=100_000),
        t.integer("queue_total", d.queue_total, low=1, high=10_000_000))
    t.done()
    return settings


def parse_config(data: Mapping[str, Any], path: Path,
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate parsed TOML; relative secret files resolve against the file's directory."""
    root = Table(data, "", os.environ if env is None else env, path.parent)
    store = _store(root.table("store", required=True))  # type: ignore[arg-type]
    log_t = root.table("log")
    log = LogSettings()
    if log_t is not None:
        log = LogSettings(log_t.text("level", "info", choices=LOG_LEVELS),
                          log_t.text("format", "json", choices=LOG_FORMATS), log_t.text("file", ""))
        log_t.done()
    metrics = MetricsSettings()
    if (m := root.table("metrics")) is not None:
        metrics = MetricsSettings(m.flag("enabled", True), m.text("host", "127.0.0.1",
                                                                  nonempty=True),
                                  _port(m, "port", 9464, allow_zero=True))
        m.done()
    hub = HubSettings()
    if (h := root.table("hub")) is not None:
        hub = _hub(h, hub)
    limits = LimitSettings()
    if (lt := root.table("limits")) is not None:
        limits = _limits(lt, limits)
    retry = RetrySettings()
    if (r := root.table("retry")) is not None:
        retry = RetrySettings(r.number("initial_delay", 1.0, low=0.01),
                              r.number("max_delay", 60.0, low=0.01),
                              r.integer("attempts", 0, low=0))
        if retry.max_delay < retry.initial_delay:
            raise ConfigError(r.key("max_delay"), "must be at least retry.initial_delay")
        r.done()
    x = root.table("xmpp")
    xmpp = _xmpp(x) if x is not None else None
    mt = root.table("matrix")
    matrix = _matrix(mt) if mt is not None else None
    if xmpp is None and matrix is None:
        raise ConfigError("xmpp", "configure at least one network ([xmpp] or [matrix])")
    rooms: tuple[RoomSettings, ...] = ()
    shutdown = 10.0
    relay_secrets = olm_store = ""
    relay_archive = 1000
    relay_file_limit = 0
    if (b := root.table("bridge")) is not None:
        rooms = _rooms(b.tables("rooms"), xmpp, matrix)
        shutdown = b.number("shutdown_timeout", 10.0, low=0.1)
        if (relay := b.table("relay")) is not None:
            relay_secrets = relay.text("secrets", "")
            olm_store = relay.text("olm_store", "")
            relay_archive = relay.integer("archive", 1000, low=0)
            relay_file_limit = relay.integer("file_limit", 0, low=0, high=1 << 31)
            relay.done()
            for key, value in (("secrets", relay_secrets), ("olm_store", olm_store)):
                if key in relay.data and not value:
                    raise ConfigError(relay.key(key), "must not be empty")
        b.done()
    root.done()
    return Config(path, store, log, metrics, hub, limits, retry, xmpp, matrix, rooms,
                  shutdown, relay_secrets, olm_store, relay_archive, relay_file_limit)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; :class:`ConfigError` on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the file: "
                                     f"{exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "not UTF-8 text") from None
    return parse_config(data, path, env)


__all__ = ["AppServiceSettings", "Config", "ConfigError", "HubSettings", "LimitSettings",
           "LogSettings", "MatrixSettings", "MetricsSettings", "RetrySettings",
           "RoomSettings", "Secret", "StoreSettings", "XmppSettings", "load_config",
           "parse_config"]
