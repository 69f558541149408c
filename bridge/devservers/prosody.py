"""A throw-away Prosody on 127.0.0.1 (integration tests and `mls-bridge demo`).

Installs Prosody with apt-get when the ``prosody`` binary is missing, renders
``config/prosody.cfg.lua.tmpl`` into a private directory (data, pidfile, log, certs;
/etc/prosody is never read), runs ``prosody --config CFG -F`` as a child process and
waits for the c2s and component ports.

Pitfalls carried over from the verified recipe (shared servers/prosody_up.sh):
- as root, ``run_as_root = true`` is required or mod_posix refuses to start;
- images with a ``policy-rc.d`` returning 101 keep the Debian service from starting
  after apt-get install; without it the system Prosody would grab 0.0.0.0:5222;
- ``prosodyctl --config CFG register`` works whether or not the server runs;
- ``registration_allowlist`` exempts loopback from the in-band registration throttle;
- slixmpp must not try direct TLS on the c2s port, and on a plaintext stream needs
  ``unencrypted_scram``/``unencrypted_plain`` (see :meth:`ProsodyServer.configure_client`).
"""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import subprocess
import time
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
TEMPLATE = REPO_ROOT / "config" / "prosody.cfg.lua.tmpl"
APT_PACKAGES = ("prosody", "lua-unbound")  # lua-unbound only silences a startup warning
START_TIMEOUT = 30.0


def ensure_prosody_installed() -> str:
    """Return the path of ``prosody``; apt-get install it first if it is missing."""
    found = shutil.which("prosody")
    if found and shutil.which("prosodyctl"):
        return found
    if shutil.which("apt-get") is None:
        raise ServerSetupError("prosody is not installed and apt-get is not available")
    if os.geteuid() != 0:
        raise ServerSetupError("prosody is not installed and installing it needs root (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked(["apt-get", "update", "-qq"], "apt-get update", 600, env)
    run_checked(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
        "apt-get install prosody",
        900,
        env,
    )
    found = shutil.which("prosody")
    if not found:
        raise ServerSetupError("apt-get installed prosody but no 'prosody' binary is on PATH")
    return found


def write_self_signed_cert(cert_dir: Path, domain: str) -> tuple[Path, Path]:
    """A P-256 self-signed certificate for domain and *.domain (cert, key) in cert_dir."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = cert_dir / f"{domain}.crt"
    key_path = cert_dir / f"{domain}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@dataclass
class ProsodyServer:
    """One Prosody instance; ``start()``/``stop()`` may be called repeatedly (same ports/data)."""

    data_dir: Path
    domain: str = "localhost"
    component_name: str = "mls.localhost"
    component_secret: str = "mls-secret"
    tls: bool = True
    host: str = LOOPBACK
    c2s_port: int = 0
    component_port: int = 0
    log_level: str = "info"
    prosody_bin: str = "prosody"
    cafile: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    upload_limit: int = 0  # > 0: an XEP-0363 service upload.<domain> (http_file_share)
    http_port: int = 0  # its HTTP port on the loopback (chosen when 0)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.data_dir / "prosody.cfg.lua"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prosody.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def prepare(self) -> None:
        """Install if needed, choose ports, write certificate and config."""
        self.prosody_bin = ensure_prosody_installed()
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        cert_dir = self.data_dir / "certs"
        cert_dir.mkdir(exist_ok=True)
        self.c2s_port = self.c2s_port or free_port()
        self.component_port = self.component_port or free_port()
        if self.tls and self.cafile is None:
            self.cafile, _ = write_self_signed_cert(cert_dir, self.domain)
        self.config_path.write_text(self.render_config(), encoding="utf-8")

    def render_config(self) -> str:
        if self.tls:
            cert = self.data_dir / "certs" / f"{self.domain}.crt"
            key = self.data_dir / "certs" / f"{self.domain}.key"
            tls_settings = (
                f'c2s_require_encryption = true\nssl = {{ certificate = "{cert}"; key = "{key}"; }}'
            )
            tls_module = '"tls";'
        else:
            tls_settings = "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true"
            tls_module = ""
        upload_head = upload_tail = ""
        if self.upload_limit:  # Prosody 0.12's mod_http_file_share, HTTP on loopback only
            self.http_port = self.http_port or free_port()
            upload_head = (f"http_ports = {{ {self.http_port} }}\n"
                           f'http_interfaces = {{ "{self.host}" }}\nhttps_ports = {{ }}\n')
            upload_tail = (f'\nComponent "upload.{self.domain}" "http_file_share"\n'
                           f'  http_host = "{self.host}"\n'
                           f"  http_file_share_size_limit = {self.upload_limit}\n")
        return upload_head + render_template(
            TEMPLATE,
            PID_FILE=self.data_dir / "prosody.pid",
            DATA_DIR=self.data_dir / "data",
            CERT_DIR=self.data_dir / "certs",
            LOG_LEVEL=self.log_level,
            LOG_FILE=self.log_path,
            BIND_ADDRESS=self.host,
            C2S_PORT=self.c2s_port,
            COMPONENT_PORT=self.component_port,
            TLS_MODULE=tls_module,
            TLS_SETTINGS=tls_settings,
            ALLOW_REGISTRATION="true",
            DOMAIN=self.domain,
            COMPONENT_NAME=self.component_name,
            COMPONENT_SECRET=self.component_secret,
        ) + upload_tail

    def start(self) -> None:
        """Run ``prosody -F`` and wait until c2s and component ports accept connections."""
        if self.running:
            return
        if not self.config_path.exists():
            self.prepare()
        for port in (self.c2s_port, self.component_port):
            if port_accepts(port, self.host):
                raise ServerSetupError(f"prosody: port {port} is already in use")
        stdout = (self.data_dir / "stdout.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [self.prosody_bin, "--config", str(self.config_path), "-F"],
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
            )
        except OSError as exc:
            raise ServerSetupError(f"cannot run {self.prosody_bin}: {exc}") from exc
        finally:
            stdout.close()
        try:
            wait_for_port(self.c2s_port, START_TIMEOUT, self._proc, "prosody c2s")
            wait_for_port(self.component_port, 10.0, self._proc, "prosody component")
            if self.upload_limit:
                wait_for_port(self.http_port, 10.0, self._proc, "prosody http upload")
        except ServerSetupError as exc:
            self.stop()
            raise ServerSetupError(
                f"{exc}\n--- stdout.log\n{tail(self.data_dir / 'stdout.log')}"
                f"\n--- prosody.log\n{tail(self.log_path)}"
            ) from exc

    def stop(self) -> None:
        """SIGTERM Prosody and wait for it (idempotent)."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and port_accepts(self.c2s_port, self.host):
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL Prosody, as a crash would; :meth:`start` brings it back on the same
        ports and data."""
        if self._proc is not None:
            kill_process(self._proc)
            self._proc = None

    def register(self, user: str, password: str) -> str:
        """Create (or reset) an account with prosodyctl; return its bare JID."""
        run_checked(
            [
                "prosodyctl",
                "--config",
                str(self.config_path),
                "register",
                user,
                self.domain,
                password,
            ],
            f"prosodyctl register {user}",
            60,
        )
        self.users[user] = password
        return self.jid(user)

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """Register a fresh account with a unique name; return (bare JID, password)."""
        user = f"{prefix}{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(12)
        return self.register(user, password), password

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def configure_client(self, client: Any) -> None:
        """Set a slixmpp ClientXMPP up for this server (call before ``connect``).

        Connect with ``client.connect(host=server.host, port=server.c2s_port)``.
        """
        client.enable_direct_tls = False  # avoid a doomed direct-TLS attempt on c2s
        if self.tls:
            client.enable_starttls = True
            client.ca_certs = str(self.cafile)
        else:
            client.enable_starttls = False
            client.enable_plaintext = True
            mechanisms = client.plugin["feature_mechanisms"]
            mechanisms.unencrypted_scram = True
            mechanisms.unencrypted_plain = True

    def component_args(self) -> dict[str, Any]:
        """Keyword arguments for ``slixmpp.ComponentXMPP(**server.component_args())``."""
        return {
            "jid": self.component_name,
            "secret": self.component_secret,
            "host": self.host,
            "port": self.component_port,
        }
