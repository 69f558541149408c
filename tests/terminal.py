"""Real terminals for tests: tmux sessions driven with ``send-keys`` and read with
``capture-pane`` (tmux installed with apt-get when missing; the test fails, never
skips, when it cannot be)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.devservers.ports import ServerSetupError, run_checked


def tmux() -> str:
    """The tmux binary, installed with apt-get when missing (as the dev servers are)."""
    found = shutil.which("tmux")
    if found is None:
        try:
            run_checked(["apt-get", "update", "-qq"], "apt-get update", 600)
            run_checked(["apt-get", "install", "-y", "-qq", "tmux"], "apt-get install tmux",
                        600)
        except ServerSetupError as exc:
            pytest.fail(f"tmux is needed for the terminal test: {exc}", pytrace=False)
        found = shutil.which("tmux")
    assert found is not None
    return found


class Terminal:
    """One tmux session running one command."""

    def __init__(self, command: str, *, width: int = 160, height: int = 45) -> None:
        self.tmux = tmux()
        self.name = f"chat-{secrets.token_hex(4)}"
        subprocess.run([self.tmux, "new-session", "-d", "-s", self.name, "-x", str(width),
                        "-y", str(height), command], check=True)
        shown = subprocess.run([self.tmux, "display-message", "-p", "-t", self.name,
                                "#{pane_pid}"], capture_output=True, text=True, check=False)
        self.pid = int(shown.stdout.strip() or 0)

    def screen(self) -> str:
        done = subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True, check=False)
        return done.stdout

    def type(self, line: str, timeout: float = 10.0) -> None:
        """Type ``line``, then Enter once the line shows in the input. poezio reads a
        burst of keys as a paste, in which a leading ``/`` starts no command and Enter
        is a newline: the first key goes alone, and Enter after the text is shown."""
        before = self.screen()
        self._keys("-l", line[:1])
        self._wait(lambda screen: screen != before, timeout)
        if line[1:]:
            self._keys("-l", line[1:])
            self._wait(lambda screen: line[-20:] in screen, timeout)
        self._keys("Enter")

    def _keys(self, *keys: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def _wait(self, check: Callable[[str], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal did not echo what was typed; the "
                                     f"screen:\n{self.screen()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return subprocess.run([self.tmux, "has-session", "-t", self.name],
                              capture_output=True, check=False).returncode == 0

    def close(self) -> None:
        """End the session and every process it started (a program run through
        ``runuser`` outlives the terminal's hangup otherwise)."""
        doomed = descendants(self.pid) if self.pid else []
        if self.alive():
            subprocess.run([self.tmux, "kill-session", "-t", self.name], check=False)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
