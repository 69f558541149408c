"""Three people in three real terminals, across the bridge (issue 18).

``mls-bridge devservers`` runs real Prosody (with XEP-0363 upload), real Synapse and
the bridge on 127.0.0.1, as a process. In tmux: Alice in ``mls-bridge chat`` on XMPP,
Bob in ``mls-bridge chat`` on Matrix, Carol in real poezio with the ``mls`` plugin, as
a throw-away non-root user (poezio refuses root). Each types messages with
``send-keys``; Bob sends a file (stored on Synapse as ``mxc://``: Alice and Carol, on
XMPP, get its ciphertext through the bridge, rule A23). Every screen is read with
``capture-pane`` (polled against a deadline) and must show every message and the
file; the saved files must equal the original. Then the devservers' whole working
directory -- the bridge's SQLite store and its WAL, Prosody's data, Synapse's
database and media store, the logs -- must hold none of the messages and none of the
file's bytes.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.terminal import Terminal

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CAROL_USER = "mlsbridge-pz"
START_TIMEOUT = 600.0  # the first run installs Prosody and Synapse
TIMEOUT = 60.0


def until(check: Callable[[], object], what: str, timeout: float = TIMEOUT,
          screen: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    shown = f"; the screen:\n{screen()}" if screen is not None else ""
    raise AssertionError(f"timed out waiting for {what}{shown}")


def poezio(user: pwd.struct_passwd) -> Path:
    """poezio with the plugin, installed through the project's extra, runnable by
    ``user``: this venv's when its interpreter is (``/root/...`` is not), else a venv
    of the system's Python 3.11 in the user's home (made once, then reused)."""
    if runs_as(user, [sys.executable, "-c", "import bridge.poezio.plugin"]):
        python = Path(sys.executable)
    else:
        venv = Path(user.pw_dir) / "mls-bridge-venv"
        python = venv / "bin" / "python"
        if not runs_as(user, [str(python), "-c", "import bridge.poezio.plugin"]):
            system = shutil.which("python3.11", path="/usr/bin:/usr/local/bin")
            if system is None:
                pytest.fail("no Python 3.11 that the poezio user may run", pytrace=False)
            install([system, "-m", "venv", "--clear", str(venv)])
    binary = python.parent / "poezio"
    if python != Path(sys.executable):
        # a copy of this checkout, not an editable link: the user may not read the
        # checkout itself (a clone under /root); reinstalled every run, so it is current
        install([str(python), "-m", "pip", "install", "-q", "--force-reinstall",
                 "--no-deps", str(REPO)])
    if not runs_as(user, [str(python), "-c", "import bridge.poezio.plugin, poezio"]):
        install([str(python), "-m", "pip", "install", "-q", f"{REPO}[poezio]"])
    return binary


def runs_as(user: pwd.struct_passwd, command: list[str]) -> bool:
    return subprocess.run(["runuser", "-u", user.pw_name, "--", *command], cwd="/",
                          capture_output=True, check=False).returncode == 0


def install(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot install poezio ({shlex.join(command)}): {done.stderr[-2000:]}",
                    pytrace=False)


def throwaway_user() -> pwd.struct_passwd:
    """A non-root user for poezio (it refuses to run as root)."""
    try:
        return pwd.getpwnam(CAROL_USER)
    except KeyError:
        done = subprocess.run(["useradd", "-m", CAROL_USER], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"cannot create the user {CAROL_USER} for poezio: {done.stderr}",
                        pytrace=False)
        return pwd.getpwnam(CAROL_USER)


class DevServers:
    """``mls-bridge devservers`` as a process; its output kept line by line."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "mls-bridge"), "devservers", "--workdir", str(workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("devservers ended:\n" + "\n".join(self.lines[-40:]))
        return any("devservers: ready" in line for line in self.lines)

    def command(self, flag: str) -> list[str]:
        line = next(line for line in self.lines if f" {flag} " in line and " chat " in line)
        return shlex.split(line)

    def matrix_room(self) -> str:
        """Bob's Matrix room, paired with ``lobby`` (devservers prints it)."""
        match = next(filter(None, (re.search(r"Matrix room (!\S+?);", line)
                                   for line in self.lines)))
        return match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def devservers(tmp_path: Path) -> Iterator[DevServers]:
    servers = DevServers(tmp_path / "servers")
    try:
        until(servers.ready, "mls-bridge devservers", START_TIMEOUT,
              lambda: "\n".join(servers.lines[-40:]))
        yield servers
    finally:
        servers.stop()


def chat_terminal(command: list[str], xdg: Path) -> Terminal:
    return Terminal(f"cd {shlex.quote(str(REPO))} && env -u COLUMNS -u LINES "
                    f"XDG_DATA_HOME={shlex.quote(str(xdg))} {shlex.join(command)}")


def carol_terminal(servers: DevServers, user: pwd.struct_passwd, home: Path,
                   binary: Path) -> Terminal:
    """Carol's poezio: a config of her own (the plugin autoloaded), run as ``user``."""
    text = servers.workdir.joinpath("carol.password").read_text("utf-8").strip()
    line = next(line for line in servers.lines if "carol@" in line and " poezio " in line)
    match = re.search(r"(carol@\S+) .* on ([\d.]+):(\d+), CA (\S+) ", line)
    assert match is not None, line
    jid, host, port, cafile = match.groups()
    config = home / "config" / "poezio"
    config.mkdir(parents=True)
    ca = home / "ca.pem"  # the servers' directory is not the user's to read
    ca.write_bytes(Path(cafile).read_bytes())
    (config / "poezio.cfg").write_text(
        "[Poezio]\n"
        f"jid = {jid}\npassword = {text}\ncustom_host = {host}\ncustom_port = {port}\n"
        f"ca_cert_path = {ca}\nplugins_autoload = mls\nresource = poezio\n"
        "use_bookmarks = false\nuse_remote_bookmarks = false\nenable_carbons = false\n"
        "send_poezio_info = false\nenable_vcard = false\nshow_tab_names = true\n",
        encoding="utf-8")
    for path in [home, *home.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    environment = {"HOME": user.pw_dir, "XDG_CONFIG_HOME": str(home / "config"),
                   "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
                   "TERM": "screen-256color", "LANG": "C.UTF-8",
                   "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items())
    return Terminal(f"cd / && runuser -u {user.pw_name} -- env -i {env} "
                    f"{shlex.quote(str(binary))}", width=180, height=50)


def found_in(root: Path, needles: dict[str, bytes]) -> list[str]:
    """``name: path`` for every needle found in a file under ``root``."""
    hits: list[str] = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits.extend(f"{name}: {path}" for name, needle in needles.items()
                        if needle in data)
    return hits


def test_alice_bob_and_carol_in_three_terminals(devservers: DevServers,
                                                 tmp_path: Path) -> None:
    user = throwaway_user()
    binary = poezio(user)
    tag = secrets.token_hex(4)
    said = {who: f"{who} says {secrets.token_hex(6)}" for who in ("alice", "bob", "carol")}
    payload = secrets.token_bytes(3000)
    original = tmp_path / f"report-{tag}.bin"
    original.write_bytes(payload)
    carol_home = Path(user.pw_dir) / f"e2e-{tag}"  # hers: pytest's tmp is root's only
    carol_home.mkdir()
    alice = chat_terminal(devservers.command("--xmpp"), tmp_path / "alice-xdg")
    bob = chat_terminal(devservers.command("--matrix"), tmp_path / "bob-xdg")
    carol = carol_terminal(devservers, user, carol_home, binary)
    terminals = {"alice": alice, "bob": bob, "carol": carol}

    def shows(who: str, text: str, what: str = "") -> None:
        until(lambda: text in terminals[who].screen(), f"{who} to see {what or text!r}",
              screen=lambda: "\n".join(f"-- {name}'s screen:\n{terminal.screen()}"
                                       for name, terminal in terminals.items()))

    try:
        shows("alice", "● connected as", "the login")
        shows("bob", "● connected as", "the login")
        shows("carol", "MLS: ready as xmpp:carol@", "poezio's MLS plugin")
        alice.type("/create lobby")
        shows("alice", "you created lobby@")
        alice.type("/add @bob:localhost")
        shows("alice", "you added @bob:localhost")
        matrix_room = devservers.matrix_room()
        shows("bob", matrix_room[:8], "the paired Matrix room in the room list")
        bob.type(f"/room {matrix_room}")
        shows("bob", "you joined", "the Welcome")
        carol.type("/join lobby@mls.localhost")  # the room's policy: members add people
        shows("carol", "MLS: waiting for an invitation (Welcome)")
        alice.type("/add carol@localhost")
        shows("alice", "you added carol@localhost")
        shows("carol", "you joined lobby@mls.localhost from a Welcome")
        carol.type("/mls info")
        shows("carol", "safety number of lobby@mls.localhost")
        shows("carol", "credential mode: x509 (identities attested by the hub's CA")
        for who in ("alice", "bob", "carol"):
            terminals[who].type(said[who])
            for other in terminals:
                shows(other, said[who], f"{who}'s message")
        bob.type(f"/file {original}")
        for who in terminals:
            shows(who, f"[file] {original.name}")
        saved = {"alice": tmp_path / "alice-saved", "carol": carol_home / "saved"}
        for folder in saved.values():
            folder.mkdir()
        os.chown(saved["carol"], user.pw_uid, user.pw_gid)
        alice.type(f"/save 4 {saved['alice']}")
        carol.type(f"/mls save 4 {saved['carol']}")
        for who, folder in saved.items():
            shows(who, f"saved to {folder / original.name}")
            assert (folder / original.name).read_bytes() == payload
    finally:
        for terminal in terminals.values():
            terminal.close()
        shutil.rmtree(carol_home, ignore_errors=True)
    needles = {name: text.encode() for name, text in said.items()}
    needles["the file"] = payload[:64]
    needles["the file's end"] = payload[-64:]
    root = devservers.workdir
    assert found_in(root, needles) == []  # running: the SQLite WAL files included
    devservers.stop()
    assert found_in(root, needles) == []
    # the search reads what it should: the bridge's store names its users, and
    # Synapse's media store holds Bob's file -- as ciphertext (16 bytes of GCM tag more)
    assert any("bridge.db" in hit for hit in found_in(root, {"": b"carol@localhost"}))
    media = [p for p in (root / "synapse" / "media_store").rglob("*") if p.is_file()]
    assert len(payload) + 16 in {p.stat().st_size for p in media}
