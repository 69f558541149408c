"""``mls-bridge chat`` in a real terminal: a tmux session runs the command as a person
would (password from a 0600 file, the store under XDG_DATA_HOME), keys are typed with
``send-keys`` and the screen is read with ``capture-pane``; a Matrix peer on the other
side of the bridge."""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

from bridge.chat import messages
from bridge.chat.membership import short
from tests.chat.conftest import Accounts, bodies, eventually, only_room
from tests.terminal import Terminal

REPO = Path(__file__).resolve().parents[2]


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
