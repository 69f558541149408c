"""``mls-bridge devservers``: servers to try ``mls-bridge chat`` with, left running.

Starts Prosody (with an XEP-0363 upload service) and Synapse on 127.0.0.1 (installing
them when missing, like the demo), registers three people -- ``alice@localhost`` on XMPP
and ``@bob:localhost`` on Matrix, with random passwords in 0600 files, and
``carol@localhost`` on XMPP for poezio with the MLS plugin (docs/POEZIO.md) -- and a Matrix
room of Bob's paired with the XMPP room ``lobby@mls.localhost`` (Alice administers the
pair; whoever is in one of its rooms may join its group by external commit), runs the bridge (the
code of ``mls-bridge run``) and prints the two ``mls-bridge chat`` command lines. Runs
until SIGINT/SIGTERM (Ctrl-C), then stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import sys
import tempfile
from pathlib import Path

import nio

from bridge.app.config import load_config
from bridge.app.demo import DemoError, matrix_room, say, serving, start_servers, write_config
from bridge.app.logs import setup_logging
from bridge.app.runtime import serve
from bridge.app.signals import stop_on_signals
from bridge.devservers.ports import ServerSetupError
from bridge.member.sqlite_store import create_private

UPLOAD_LIMIT = 16 * 1024 * 1024
XMPP_ROOM = "lobby"


def secret_file(path: Path) -> str:
    """A fresh password, written to ``path`` (mode 0600)."""
    value = secrets.token_urlsafe(12)
    create_private(path)
    path.write_text(value + "\n", encoding="utf-8")
    return value


async def bob_room(url: str, bob: str, password: str, hub_user: str) -> str:
    client = nio.AsyncClient(url, bob)
    try:
        response = await client.login(password, device_name="devservers setup")
        if not isinstance(response, nio.LoginResponse):
            raise DemoError(f"{bob}: login failed: {response}")
        return await matrix_room(client, hub_user)
    finally:
        await client.close()  # type: ignore[no-untyped-call]


async def run(workdir: Path) -> int:
    say(f"devservers: working directory {workdir}; starting Prosody and Synapse ...")
    prosody, synapse = await start_servers(workdir, upload_limit=UPLOAD_LIMIT)
    stop = asyncio.Event()
    bridge: asyncio.Task[int] | None = None
    try:
        hub_password = secrets.token_urlsafe(12)
        hub_user = synapse.register_user("mlsbridge", hub_password)
        alice = prosody.register("alice", secret_file(workdir / "alice.password"))
        carol = prosody.register("carol", secret_file(workdir / "carol.password"))
        bob = synapse.register_user("bob", secret_file(workdir / "bob.password"))
        room = await bob_room(synapse.url, bob, (workdir / "bob.password").read_text(
            "utf-8").strip(), hub_user)
        xmpp_room = f"{XMPP_ROOM}@{prosody.component_name}"
        config = load_config(write_config(workdir, prosody, synapse, hub_user, hub_password,
                                          xmpp_room, room, f"xmpp:{alice}", join="room"))
        setup_logging(config.log.level, config.log.format, config.log.file,
                      config.secrets())
        ready = asyncio.Event()
        bridge = asyncio.create_task(serve(config, stop, ready=ready))
        if not await serving(bridge, ready):
            raise DemoError(f"the bridge did not start; see {workdir / 'bridge.log'}")
        script = Path(sys.executable).parent / "mls-bridge"
        chat = [str(script), "chat"] if script.exists() else \
            [sys.executable, "-m", "bridge.app.cli", "chat"]
        say("devservers: ready. In two terminals:")
        say("  " + shlex.join([*chat, "--xmpp", alice, "--host", prosody.host, "--port",
                               str(prosody.c2s_port), "--cafile", str(prosody.cafile),
                               "--password-file", str(workdir / "alice.password")]))
        say("  " + shlex.join([*chat, "--matrix", bob, "--homeserver", synapse.url,
                               "--hub-user", hub_user,
                               "--password-file", str(workdir / "bob.password")]))
        say(f"devservers: {carol} (password in {workdir / 'carol.password'}) is for poezio "
            f"on {prosody.host}:{prosody.c2s_port}, CA {prosody.cafile} (docs/POEZIO.md)")
        say(f"devservers: the XMPP room {xmpp_room} is paired with Bob's Matrix room "
            f"{room}; Ctrl-C stops everything")
        stop_on_signals(stop)
        return await bridge
    finally:
        stop.set()
        if bridge is not None:
            with contextlib.suppress(Exception):  # its failure was reported
                await asyncio.wait_for(bridge, 15)
        await asyncio.gather(asyncio.to_thread(prosody.stop), asyncio.to_thread(synapse.stop))
        say("devservers: stopped")


def main(workdir: str = "") -> int:
    path = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mls-bridge-dev-"))
    path.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(run(path))
    except (DemoError, ServerSetupError, OSError) as exc:
        print(f"devservers: FAILED — {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
