"""The hub as its own process (``python -m bridge.app.services.matrix``), stopped and
restarted mid-conversation: requests sent while it is down are answered after the
restart (its sync token and device inbox survive), nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bridge.devservers.synapse import SynapseServer
from tests.matrix.conftest import TIMEOUT, MatrixMember, eventually, room_with_hub
from transports.interface import Kind
from transports.matrix import namespace as ns

REPO = Path(__file__).resolve().parents[2]


class HubProcess:
    def __init__(self, server: SynapseServer, store: Path, user: str, password: str) -> None:
        self.args = [sys.executable, "-m", "bridge.app.services.matrix",
                     "--store", f"sqlite:///{store}", "--homeserver", server.url,
                     "--user", user, "--sync-timeout-ms", "1000", "--log-level", "WARNING"]
        self.env = {**os.environ, "MLS_BRIDGE_MATRIX_PASSWORD": password}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, cwd=REPO, env=self.env, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)
        assert line.startswith(b"READY "), line
        return line.decode().split()[2]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(self.proc.wait(), TIMEOUT) == 0


async def test_hub_restart_loses_and_duplicates_nothing(
        synapse_server: SynapseServer, members: Any, tmp_path: Path) -> None:
    hub_user, password = synapse_server.new_user("hubproc")
    hub = HubProcess(synapse_server, tmp_path / "hub.db", hub_user, password)
    device = await hub.start()
    try:
        alice: MatrixMember = await members("alice", hub_user, request_timeout=60.0)
        bob: MatrixMember = await members("bob", hub_user, request_timeout=60.0)
        room_id = await room_with_hub(alice, hub_user)
        await bob.member.publish_key_packages(1)
        group_id = await alice.member.create_group(transport=ns.TRANSPORT_NAME,
                                                   room_id=room_id)
        await alice.member.add_members(group_id, [bob.identity])
        await eventually(lambda: group_id in bob.member.group_ids(), what="bob joining")
        await alice.member.send_text(group_id, "before 1")
        await bob.member.send_text(group_id, "before 2")
        await eventually(lambda: len(alice.texts(group_id)) == 1 and
                         len(bob.texts(group_id)) == 1, what="chat before the restart")

        await hub.stop()
        during = [asyncio.ensure_future(alice.member.send_text(group_id, "while down A")),
                  asyncio.ensure_future(bob.member.send_text(group_id, "while down B"))]
        await asyncio.sleep(1.5)
        assert not any(task.done() for task in during)
        assert await hub.start() == device  # the same device: its inbox kept the requests
        await asyncio.wait_for(asyncio.gather(*during), TIMEOUT)
        await bob.member.update(group_id)
        await alice.member.send_text(group_id, "after")

        await eventually(lambda: [t for _, t in bob.texts(group_id)] ==
                         ["before 1", "while down A", "after"], what="bob's messages")
        await eventually(lambda: [t for _, t in alice.texts(group_id)] ==
                         ["before 2", "while down B"], what="alice's messages")
        assert alice.member.group(group_id).epoch == bob.member.group(group_id).epoch == 2
        for person in (alice, bob):
            seqs = [m.seq for m in person.link.delivered if m.kind != Kind.WELCOME]
            assert seqs == sorted(set(seqs)), seqs
    finally:
        await hub.stop()
