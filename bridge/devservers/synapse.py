"""A throw-away Synapse (sqlite) on 127.0.0.1 (integration tests and `mls-bridge demo`).

Synapse lives in its own virtualenv outside the repository: ``$SYNAPSE_VENV`` or
``~/.cache/mls-bridge/synapse-venv``, created and ``pip install matrix-synapse``-ed
(``$SYNAPSE_VERSION`` pins a version) when missing. ``config/homeserver.yaml.tmpl`` is
rendered into a private data directory, optionally with an application-service
registration, and ``python -m synapse.app.homeserver -c CFG`` runs as a child process.

Pitfalls carried over from the verified recipe (shared servers/synapse_up.sh):
- ``pid_file`` is only written when daemonized, so the harness keeps the Popen handle;
- only the ``client`` resource is served and ``federation_domain_whitelist: []``;
- the default rate limits throttle a fast test suite: every ``rc_*`` key is raised;
- shared-secret registration is ``/_synapse/admin/v1/register`` with an HMAC-SHA1 of
  ``nonce NUL user NUL password NUL admin|notadmin`` keyed by the shared secret;
- when the application service is down, Synapse retries transactions with backoff
  (2, 4, 8, 16 s ...); ``POST /_matrix/client/v1/appservice/<id>/ping`` flushes it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.devservers.ports import (
    LOOPBACK,
    ServerSetupError,
    free_port,
    kill_process,
    port_accepts,
    render_template,
    run_checked,
    stop_process,
    tail,
    wait_for_port,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "config" / "homeserver.yaml.tmpl"
START_TIMEOUT = 90.0
RATE_UNLIMITED = "{per_second: 10000, burst_count: 100000}"

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log_file}
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


def synapse_venv_dir() -> Path:
    """Where the Synapse virtualenv lives ($SYNAPSE_VENV or ~/.cache/mls-bridge/synapse-venv)."""
    configured = os.environ.get("SYNAPSE_VENV")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "mls-bridge" / "synapse-venv"


def _base_python() -> str:
    """An interpreter to create the venv from (not this test venv's own python)."""
    base = getattr(sys, "_base_executable", None)
    if base and Path(base).exists():
        return str(base)
    return shutil.which("python3") or sys.executable


def _synapse_installed(venv: Path) -> bool:
    """Cheap check (no 2 s import): the venv's python and Synapse's entry module exist."""
    if not (venv / "bin" / "python").exists():
        return False
    return any(venv.glob("lib/python3*/site-packages/synapse/app/homeserver.py"))


def _synapse_importable(python: Path) -> bool:
    probe = subprocess.run(
        [str(python), "-c", "import synapse.app.homeserver"], capture_output=True, check=False
    )
    return probe.returncode == 0


@contextlib.contextmanager
def _install_lock(venv: Path) -> Iterator[None]:
    """Serialize installs between concurrent processes (tests, demo)."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f".{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_synapse_installed(venv: Path | None = None) -> Path:
    """Return the venv's python with matrix-synapse importable; create/install if missing."""
    venv = venv or synapse_venv_dir()
    python = venv / "bin" / "python"
    if _synapse_installed(venv):
        return python
    with _install_lock(venv):
        if _synapse_installed(venv) and _synapse_importable(python):
            return python
        if not python.exists():
            run_checked([_base_python(), "-m", "venv", str(venv)], "create synapse venv", 300)
        version = os.environ.get("SYNAPSE_VERSION", "")
        spec = f"matrix-synapse=={version}" if version else "matrix-synapse"
        run_checked(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
            f"pip install {spec} into {venv}",
            1500,
        )
    if not _synapse_importable(python):
        raise ServerSetupError(f"matrix-synapse installed into {venv} but cannot be imported")
    return python


def write_signing_key(path: Path) -> None:
    """A Synapse signing key file: ``ed25519 <version> <unpadded base64 seed>``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    encoded = base64.b64encode(seed).decode().rstrip("=")
    path.write_text(f"ed25519 a_{secrets.token_hex(2)} {encoded}\n", encoding="utf-8")
    path.chmod(0o600)


@dataclass(frozen=True)
class AppServiceSpec:
    """An application-service registration for Synapse (the bridge in AS mode).

    ``port`` 0 means: the harness picks a free 127.0.0.1 port; read it back from
    ``SynapseServer.appservice_port`` / ``appservice_url`` and listen there.
    """

    id: str = "mls-bridge"
    as_token: str = "as-token"
    hs_token: str = "hs-token"
    sender_localpart: str = "mlsbridge"
    user_prefix: str = "xmpp_"
    port: int = 0
    receive_ephemeral: bool = False  # MSC2409 ephemeral + to-device pushes to the AS


@dataclass
class SynapseServer:
    """One Synapse instance; ``start()``/``stop()`` may be called repeatedly (same port/data)."""

    data_dir: Path
    server_name: str = "localhost"
    host: str = LOOPBACK
    port: int = 0
    registration_shared_secret: str = "test-shared-secret"
    appservice: AppServiceSpec | None = None
    appservice_port: int = 0
    python: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "homeserver.log"

    @property
    def appservice_url(self) -> str | None:
        if self.appservice is None:
            return None
        return f"http://{LOOPBACK}:{self.appservice_port}"

    @property
    def appservice_registration_path(self) -> Path:
        return self.data_dir / "appservice.yaml"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def prepare(self) -> None:
        """Install if needed, choose ports, write signing key, log config and config."""
        self.python = ensure_synapse_installed()
        (self.data_dir / "media_store").mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log_file = self.log_path
        (self.data_dir / "log.config").write_text(LOG_CONFIG.format(log_file=log_file), "utf-8")
        if not (self.data_dir / "signing.key").exists():
            write_signing_key(self.data_dir / "signing.key")
        as_files = "[]"
        if self.appservice is not None:
            self.appservice_port = self.appservice.port or self.appservice_port or free_port()
            self.appservice_registration_path.write_text(self.render_appservice(), "utf-8")
            as_files = json.dumps([str(self.appservice_registration_path)])
        self.config_path.write_text(self.render_config(as_files), encoding="utf-8")

    def render_config(self, app_service_files: str) -> str:
        text = render_template(
            TEMPLATE,
            SERVER_NAME=self.server_name,
            BIND_ADDRESS=self.host,
            PORT=self.port,
            DATA_DIR=self.data_dir,
            MACAROON_SECRET=secrets.token_hex(16),
            FORM_SECRET=secrets.token_hex(16),
            REGISTRATION_SHARED_SECRET=self.registration_shared_secret,
            APP_SERVICE_FILES=app_service_files,
            RATE=RATE_UNLIMITED,
        )
        if self.appservice is not None and self.appservice.receive_ephemeral:
            text += (
                "experimental_features:\n"
                "  msc2409_to_device_messages_enabled: true\n"
                "  msc3202_transaction_extensions: true\n"
            )
        return text

    def render_appservice(self) -> str:
        spec = self.appservice
        if spec is None:
            raise ServerSetupError("no application service configured")
        domain = self.server_name.replace(".", "\\\\.")
        lines = [
            f"id: {spec.id}",
            f"url: {self.appservice_url}",
            f"as_token: {spec.as_token}",
            f"hs_token: {spec.hs_token}",
            f"sender_localpart: {spec.sender_localpart}",
            "rate_limited: false",
            "namespaces:",
            "  users:",
            "    - exclusive: true",
            f"      regex: '@{spec.user_prefix}.*:{domain}'",
            "  aliases:",
            "    - exclusive: true",
            f"      regex: '#{spec.user_prefix}.*:{domain}'",
            "  rooms: []",
        ]
        if spec.receive_ephemeral:
            lines += ["receive_ephemeral: true", "de.sorunome.msc2409.push_ephemeral: true"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Run Synapse and wait until /_matrix/client/versions answers."""
        if self.running:
            return
        if not self.config_path.exists():
            self.prepare()
        if port_accepts(self.port, self.host):
            raise ServerSetupError(f"synapse: port {self.port} is already in use")
        assert self.python is not None
        stdout = (self.data_dir / "stdout.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
            )
        except OSError as exc:
            raise ServerSetupError(f"cannot run synapse from {self.python}: {exc}") from exc
        finally:
            stdout.close()
        try:
            wait_for_port(self.port, START_TIMEOUT, self._proc, "synapse")
            self._wait_versions(START_TIMEOUT)
        except ServerSetupError as exc:
            self.stop()
            raise ServerSetupError(
                f"{exc}\n--- stdout.log\n{tail(self.data_dir / 'stdout.log')}"
                f"\n--- homeserver.log\n{tail(self.log_path)}"
            ) from exc

    def _wait_versions(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/_matrix/client/versions")
                return
            except (OSError, ServerSetupError) as exc:
                last = exc
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerSetupError(f"synapse exited with code {self._proc.returncode}")
            time.sleep(0.1)
        raise ServerSetupError(f"synapse: /_matrix/client/versions not answering: {last}")

    def stop(self) -> None:
        """SIGTERM Synapse and wait for it (idempotent)."""
        if self._proc is not None:
            stop_process(self._proc, timeout=20)
            self._proc = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and port_accepts(self.port, self.host):
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL Synapse, as a crash would; :meth:`start` brings it back on the same
        ports and data."""
        if self._proc is not None:
            kill_process(self._proc)
            self._proc = None

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """A JSON request to this server (blocking); raise ServerSetupError on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return dict(json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ServerSetupError(f"{method} {path}: HTTP {exc.code} {detail}") from exc

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """Register a fresh user with a unique localpart; return (user id, password)."""
        password = secrets.token_urlsafe(12)
        return self.register_user(f"{prefix}{secrets.token_hex(4)}", password), password

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API (HMAC-SHA1); return its user id."""
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        return str(self.request("POST", "/_synapse/admin/v1/register", body)["user_id"])
