"""``mls-bridge chat`` in a real terminal: a tmux session runs the command as a person
would (password from a 0600 file, the store under XDG_DATA_HOME), keys are typed with
``send-keys`` and the screen is read with ``capture-pane``; a Matrix peer on the other
side of the bridge."""

from __future__ import annotations

import secrets
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.chat import messages
from bridge.chat.membership import short
from bridge.devservers.ports import ServerSetupError, run_checked
from tests.chat.conftest import Accounts, bodies, eventually, only_room

REPO = Path(__file__).resolve().parents[2]


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

    def __init__(self, command: str) -> None:
        self.tmux = tmux()
        self.name = f"chat-{secrets.token_hex(4)}"
        subprocess.run([self.tmux, "new-session", "-d", "-s", self.name, "-x", "160",
                        "-y", "45", command], check=True)

    def screen(self) -> str:
        done = subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True, check=False)
        return done.stdout

    def type(self, line: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.name, "-l", line], check=True)
        subprocess.run([self.tmux, "send-keys", "-t", self.name, "Enter"], check=True)

    def alive(self) -> bool:
        return subprocess.run([self.tmux, "has-session", "-t", self.name],
                              capture_output=True, check=False).returncode == 0

    def close(self) -> None:
        if self.alive():
            subprocess.run([self.tmux, "kill-session", "-t", self.name], check=False)


async def test_in_a_real_terminal(accounts: Accounts, tmp_path: Path) -> None:
    bob = await accounts.started(accounts.new("matrix", "bob"))
    alice = accounts.new("xmpp", "alice")
    password = tmp_path / "alice.password"
    password.write_text(alice.password + "\n", encoding="utf-8")
    password.chmod(0o600)
    prosody = accounts.prosody
    command = [sys.executable, "-m", "bridge.app.cli", "chat", "--xmpp", alice.address,
               "--host", prosody.host, "--port", str(prosody.c2s_port),
               "--cafile", str(prosody.cafile), "--password-file", str(password)]
    exit_file = tmp_path / "exit-code"
    terminal = Terminal(f"cd {shlex.quote(str(REPO))} && env -u COLUMNS -u LINES "
                        f"XDG_DATA_HOME={shlex.quote(str(tmp_path / 'xdg'))} "
                        f"{shlex.join(command)}; echo $? > {shlex.quote(str(exit_file))}")
    try:
        await eventually(lambda: "● connected as" in terminal.screen(), "the login")
        terminal.type("/create ttyroom")
        await eventually(lambda: "you created ttyroom@" in terminal.screen(), "/create")
        terminal.type(f"/add {short(bob.me)}")
        await eventually(lambda: bob.rooms, "Bob to join")
        terminal.type("hello from a real terminal")
        await eventually(lambda: bodies(bob) == ["hello from a real terminal"],
                         "Bob to receive")
        await messages.text(bob, only_room(bob), "hello, terminal", reply_to=1)
        try:
            await eventually(lambda: "hello, terminal" in terminal.screen(), "Bob's reply")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{terminal.screen()}") from None
        terminal.type("/quit")
        await eventually(lambda: exit_file.exists(), "the program to end")
        assert exit_file.read_text().strip() == "0"
    finally:
        terminal.close()
    (store,) = (tmp_path / "xdg" / "mls-bridge" / "chat").glob("*.sqlite3")
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
