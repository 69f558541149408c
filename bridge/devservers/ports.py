"""Loopback port helpers and process plumbing shared by the Prosody and Synapse harnesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from string import Template

LOOPBACK = "127.0.0.1"


class ServerSetupError(RuntimeError):
    """A test server could not be installed, configured or started (never a skip)."""


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = LOOPBACK) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_port(
    port: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    what: str = "server",
) -> None:
    """Wait until 127.0.0.1:port accepts connections; fail early if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(port):
            return
        if proc is not None and proc.poll() is not None:
            raise ServerSetupError(
                f"{what} exited with code {proc.returncode} before port {port} opened"
            )
        time.sleep(0.05)
    raise ServerSetupError(f"{what}: port {port} not accepting connections after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the child, wait, SIGKILL if it lingers; return its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child (as a crash would: no clean-up) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def run_checked(
    cmd: list[str], what: str, timeout: float, env: dict[str, str] | None = None
) -> str:
    """Run cmd to completion; on failure raise ServerSetupError with its output."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerSetupError(f"{what}: {' '.join(cmd)}: {exc}") from exc
    if done.returncode != 0:
        out = (done.stdout + done.stderr).strip()[-3000:]
        raise ServerSetupError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{out}")
    return done.stdout


def render_template(path: Path, **values: object) -> str:
    """Fill the ${NAME} placeholders of a config template; every one must be given."""
    try:
        return Template(path.read_text(encoding="utf-8")).substitute(values)
    except (OSError, KeyError, ValueError) as exc:
        raise ServerSetupError(f"cannot render {path}: {exc!r}") from exc
