"""The component against a real Prosody: authentication, disco, IQ errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from slixmpp import JID

from bridge.devservers.prosody import ProsodyServer
from tests.xmpp.conftest import HubProcess, InProcessHub, connect_client
from transports.interface import Inbound, Op
from transports.xmpp.component import ComponentConfig, MLSComponent
from transports.xmpp.errors import ComponentAuthError
from transports.xmpp.namespace import FEATURE


async def test_wrong_component_secret_is_rejected(prosody_server: ProsodyServer) -> None:
    component = MLSComponent(ComponentConfig(
        jid=prosody_server.component_name, secret="not-the-secret",
        host=prosody_server.host, port=prosody_server.component_port))
    began = time.monotonic()
    with pytest.raises(ComponentAuthError, match="refused component"):
        await component.start(timeout=10)
    assert time.monotonic() - began < 10
    assert not component.connected


async def test_disco_and_refusals(prosody_server: ProsodyServer,
                                  hub_in_process: InProcessHub) -> None:
    jid, password = prosody_server.new_user("disco")
    client, plugin = await connect_client(prosody_server, jid, password)
    try:
        info = await client.plugin["xep_0030"].get_info(jid=JID(prosody_server.component_name))
        assert FEATURE in info["disco_info"]["features"]
        # a request the hub refuses comes back as a refusal reply, code preserved
        reply = await plugin.request(Inbound(op=Op.FETCH_LOG.value, sender="ignored",
                                             group_id=b"\x01" * 32, request_id="q1"))
        assert not reply.ok and reply.code == "unknown-group"
        reply = await plugin.request(Inbound(op=Op.CLAIM_KEY_PACKAGE.value, sender="x",
                                             target="xmpp:nobody@localhost", cipher_suite=1))
        assert not reply.ok and reply.code == "malformed"  # a claim names its group
        # the sender is what the server authenticated, not what the request says
        reply = await plugin.request(Inbound(op=Op.LIST_KEY_PACKAGES.value,
                                             sender="xmpp:mallory@localhost"))
        assert reply.ok and reply.key_packages == ()
    finally:
        await client.disconnect(wait=1.0)
        await asyncio.sleep(0)


async def test_service_exits_on_wrong_secret(prosody_server: ProsodyServer,
                                             tmp_path: Path) -> None:
    process = HubProcess(prosody_server, tmp_path)
    with pytest.raises(RuntimeError, match="exited 2"):
        await process.start(secret="wrong-secret")
    assert "refused component" in process.log_path.read_text()
