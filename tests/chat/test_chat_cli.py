"""The command line: no password on argv, a clear refusal without one, a store in use
refused, the XDG data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.chat.app import ChatApp
from bridge.chat.main import build_parser, store_path
from bridge.member import SqliteMemberStore
from tests.chat.conftest import Accounts, eventually

REPO = Path(__file__).resolve().parents[2]


def chat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.app.cli", "chat", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          stdin=subprocess.DEVNULL, check=False,
                          env={**os.environ, "MLS_CHAT_PASSWORD": "", **(env or {})})


def test_no_password_option_on_the_command_line() -> None:
    options = {o for action in build_parser()._actions for o in action.option_strings}
    assert not {o for o in options if "password" in o} - {"--password-env",
                                                           "--password-file"}


def test_without_a_password_it_says_where_one_can_come_from() -> None:
    done = chat("--xmpp", "alice@localhost")
    assert done.returncode == 2
    assert "MLS_CHAT_PASSWORD" in done.stderr and "--password-file" in done.stderr


async def test_a_store_in_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dev.sqlite3"
    store = await SqliteMemberStore.open(path)
    try:
        done = chat("--xmpp", "alice@localhost", "--store", str(path),
                    env={"MLS_CHAT_PASSWORD": "x"})
    finally:
        await store.close()
    assert done.returncode == 1 and "in use by another process" in done.stderr


def test_the_store_lives_under_xdg_data_home(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store_path("@bob:example.org") == \
        tmp_path / "mls-bridge" / "chat" / "bob_example.org.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    assert store_path("alice@example.org") == \
        Path.home() / ".local" / "share" / "mls-bridge" / "chat" / "alice@example.org.sqlite3"


async def test_a_refused_password_ends_the_app_with_the_reason(accounts: Accounts) -> None:
    for network in ("xmpp", "matrix"):
        account = accounts.new(network, f"wrong{network}")
        account.password = "not-the-password"
        app = ChatApp(await accounts.client(account))
        async with app.run_test(size=(120, 40)) as pilot:
            await eventually(lambda app=app: app.failure, f"the {network} login to fail")
            await pilot.pause()
        assert app.return_code == 1
        assert ("refused the password" if network == "xmpp" else "login refused") \
            in app.failure
