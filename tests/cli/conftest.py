"""Helpers for the ``mls-bridge`` command tests: config files, subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config" / "example.toml"

XMPP_SECRET = "component-secret-4e1f9"
MATRIX_PASSWORD = "matrix-password-77ab2"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def minimal_config(tmp: Path, **sections: str) -> str:
    """A valid XMPP-only configuration; ``sections`` replace or add tables verbatim."""
    tables = {
        "store": f'url = "sqlite:///{tmp / "bridge.db"}"',
        "xmpp": f'jid = "mls.localhost"\nsecret = "{XMPP_SECRET}"\nport = 5347',
    }
    tables.update(sections)
    return "\n".join(f"[{name}]\n{body}\n" for name, body in tables.items() if body)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.app.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT,
                          env={**os.environ, **(env or {})}, check=False)


class RunningBridge:
    """``mls-bridge run --config`` as a child process, its stderr read line by line."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.app.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env={**os.environ, **(env or {})})
        self.lines: list[str] = []

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Read stderr until ``count`` log events named ``event`` appeared."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        watchdog = threading.Timer(timeout, self.proc.kill)  # a silent hang ends the read
        watchdog.start()
        try:
            return self._read_until(event, count, deadline)
        finally:
            watchdog.cancel()

    def _read_until(self, event: str, count: int, deadline: float) -> list[dict[str, Any]]:
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e.get("event") == event]
            if len(found) >= count:
                return found
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
        raise AssertionError(f"no {count}x {event!r} in the bridge's output:\n"
                             + "\n".join(self.lines[-30:]))

    def finish(self, timeout: float = 15.0) -> tuple[int, str]:
        """Wait for exit; return (code, everything on stderr)."""
        _, rest = self.proc.communicate(timeout=timeout)
        self.lines += rest.splitlines()
        return self.proc.returncode, "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)
