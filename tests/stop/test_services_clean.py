"""The two single-network services (``python -m bridge.app.services.xmpp`` and
``... .matrix``) under asyncio's debug mode with ResourceWarnings as errors: after a
member's requests, SIGTERM ends them with exit 0 and nothing on their stderr names a
forgotten resource (unclosed sessions, pending or failed tasks, ResourceWarnings)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.bridge_run import LEAK_MARKERS, REPO, Person, matrix_person, xmpp_person
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer

TIMEOUT = 60.0


async def serve_then_stop(args: list[str], ready: bytes, env: dict[str, str],
                          make_person: Callable[[], Awaitable[Person]],
                          transport: str = "", room_id: str = "") -> None:
    """Run the service, let a member publish a KeyPackage and create a group through
    it, then SIGTERM it: exit 0, and no line of its stderr names a leaked resource."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error::ResourceWarning", *args, cwd=REPO,
        env={**os.environ, "PYTHONASYNCIODEBUG": "1", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert line.startswith(ready), line
        person = await make_person()
        try:
            await person.member.publish_key_packages(1)
            await person.member.create_group(transport=transport, room_id=room_id)
        finally:
            await person.close()
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, output
    leaks = [line for line in output.splitlines() if any(m in line for m in LEAK_MARKERS)]
    assert not leaks, output


async def test_xmpp_service_stops_without_leaks(prosody_server: ProsodyServer,
                                                tmp_path: Path) -> None:
    await serve_then_stop(
        ["-m", "bridge.app.services.xmpp", "--store", f"sqlite:///{tmp_path / 'hub.db'}",
         "--jid", prosody_server.component_name, "--host", prosody_server.host,
         "--port", str(prosody_server.component_port)], b"ready",
        {"MLS_BRIDGE_COMPONENT_SECRET": prosody_server.component_secret},
        lambda: xmpp_person(prosody_server, "svcx_"),
        transport="xmpp", room_id=f"svc@{prosody_server.component_name}")


async def test_matrix_service_stops_without_leaks(synapse_server: SynapseServer,
                                                  tmp_path: Path) -> None:
    hub_user, password = synapse_server.new_user("svchub")
    await serve_then_stop(
        ["-m", "bridge.app.services.matrix", "--store", f"sqlite:///{tmp_path / 'hub.db'}",
         "--homeserver", synapse_server.url, "--user", hub_user, "--sync-timeout-ms", "1000"],
        b"READY", {"MLS_BRIDGE_MATRIX_PASSWORD": password},
        lambda: matrix_person(synapse_server, "svcm_", hub_user))
