"""A throwaway PostgreSQL cluster on 127.0.0.1 for the store tests.

Installs PostgreSQL with apt-get if no server binaries are found (``apt-get update`` and
a retry if the first install fails), runs ``initdb`` and ``pg_ctl`` as the ``postgres``
user (the tests run as root, which PostgreSQL refuses), listens on a free loopback port
with its socket in the cluster's private temp dir, trusts loopback connections only, and
deletes everything on :meth:`PgServer.stop`. Durability is switched off (``fsync=off``):
the cluster is thrown away. Failures raise :class:`PgServerError` with the reason: the
tests fail, they are never skipped.

Run ``python -m tests.store.pg_server`` to start one by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_USER = "postgres"
LOOPBACK = "127.0.0.1"


class PgServerError(RuntimeError):
    """PostgreSQL could not be installed, initialised or started."""


def _run(cmd: list[str], what: str, timeout: float) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgServerError(f"{what}: {' '.join(cmd)}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise PgServerError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{output}")
    return done.stdout


def _find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb (or $PG_BIN)."""
    override = os.environ.get("PG_BIN")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda path: int(Path(path).parent.parent.name))
    return Path(newest).parent


def ensure_installed() -> Path:
    """Return the server's bin dir, apt-installing PostgreSQL first if it is missing."""
    bin_dir = _find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    install = [*env_cmd, "apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    try:
        _run(install, "apt-get install postgresql", timeout=900)
    except PgServerError:
        _run([*env_cmd, "apt-get", "update"], "apt-get update", timeout=900)
        _run(install, "apt-get install postgresql (after update)", timeout=900)
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        raise PgServerError("postgresql installed but no /usr/lib/postgresql/*/bin/initdb found")
    return bin_dir


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running cluster; ``dsn(db)`` addresses one of its databases as ``postgres``."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@{LOOPBACK}:{self.port}/{database}"

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", PG_USER, "--", *args]

    @classmethod
    def start(cls, timeout: float = 60.0) -> PgServer:
        """Install if needed, initdb a fresh cluster in a temp dir and start it."""
        bin_dir = ensure_installed()
        try:
            owner = pwd.getpwnam(PG_USER)
        except KeyError as exc:
            raise PgServerError(f"no {PG_USER!r} system user (is postgresql installed?)") from exc
        root = Path(tempfile.mkdtemp(prefix="mlsbridge-pg-"))
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chmod(root, 0o700)
        server = cls(bin_dir, root, free_port())
        try:
            server._init_and_start(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _init_and_start(self, timeout: float) -> None:
        initdb = str(self.bin_dir / "initdb")
        _run(
            self._as_postgres(
                initdb, "-D", str(self.data_dir), "-U", PG_USER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            ),
            "initdb",
            timeout=timeout,
        )  # fmt: skip
        (self.data_dir / "pg_hba.conf").write_text(
            "# loopback only, trusted: a throwaway test cluster\n"
            "local all all trust\n"
            f"host all all {LOOPBACK}/32 trust\n",
            encoding="utf-8",
        )
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"\nlisten_addresses = '{LOOPBACK}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nshared_buffers = 32MB\n"
            )
        self.start_again(timeout)

    def start_again(self, timeout: float = 60.0) -> None:
        """Start the server on its existing cluster (after :meth:`kill`)."""
        log = self.root / "server.log"
        _run(
            self._as_postgres(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log),
                "-w", "-t", str(int(timeout)), "start",
            ),
            f"pg_ctl start (log: {log})",
            timeout=timeout + 10,
        )  # fmt: skip
        self._wait_ready(timeout)

    def kill(self) -> None:
        """Stop the server as a crash would (immediate mode: every backend quits at once
        and drops its connections, no checkpoint); the cluster is kept."""
        _run(
            self._as_postgres(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                "-w", "stop",
            ),
            "pg_ctl stop -m immediate",
            timeout=60,
        )  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), 0.5):
                return
            time.sleep(0.05)
        raise PgServerError(f"PostgreSQL not accepting connections on port {self.port}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(PgServerError):
                _run(
                    self._as_postgres(
                        str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir),
                        "-m", "fast", "-w", "stop",
                    ),
                    "pg_ctl stop",
                    timeout=60,
                )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    running = PgServer.start()
    print(f"PostgreSQL running: {running.dsn()}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
