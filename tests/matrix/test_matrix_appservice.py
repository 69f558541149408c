"""Application-service mode: the hub bot is the AS sender, fed by pushed transactions
(room events and MSC2409 to-device messages), and generate-registration writes a file
the service reads back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.app.services.matrix import MatrixService, MatrixServiceConfig
from bridge.devservers.synapse import AppServiceSpec, SynapseServer
from bridge.hub.store import SqliteStore
from tests.matrix.conftest import MatrixMember, eventually, room_with_hub
from transports.matrix import namespace as ns
from transports.matrix.appservice import load_registration

SPEC = AppServiceSpec(receive_ephemeral=True)


@pytest.mark.parametrize("synapse_server", [SPEC], indirect=True)
async def test_bot_under_appservice_answers_requests(
        synapse_server: SynapseServer, members: Any, tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db")
    service = MatrixService(store, None, MatrixServiceConfig(
        homeserver=synapse_server.url, appservice=str(synapse_server.appservice_registration_path),
        listen_port=synapse_server.appservice_port, server_name=synapse_server.server_name))
    await service.start()
    try:
        assert service.bot is not None and service.listener is not None
        hub_user = service.bot.user_id
        assert hub_user == synapse_server.user_id(SPEC.sender_localpart)
        alice: MatrixMember = await members("alice", hub_user)
        room_id = await room_with_hub(alice, hub_user)  # the invite came by transaction
        group_id = await alice.member.create_group(transport=ns.TRANSPORT_NAME,
                                                   room_id=room_id)  # to-device request
        state = await alice.link.group_state(room_id)
        assert (state.group_id, state.hub_user) == (group_id, hub_user)
        assert service.listener.transactions >= 2
        assert service.bot.handled_requests >= 2  # hub-info and create-group
        await alice.member.send_text(group_id, "via the appservice")
        await eventually(lambda: any(m.seq == 1 for m in alice.link.delivered),
                         what="the relayed message")
    finally:
        await service.stop()
        await store.close()


def test_generate_registration_command(tmp_path: Path) -> None:
    out = tmp_path / "registration.yaml"
    subprocess.run([sys.executable, "-m", "transports.matrix.appservice",
                    "generate-registration", "--url", "http://127.0.0.1:9009",
                    "--out", str(out), "--sender-localpart", "hubbot"], check=True,
                   capture_output=True)
    assert out.stat().st_mode & 0o777 == 0o600
    registration = load_registration(out)
    assert registration.url == "http://127.0.0.1:9009"
    assert registration.sender == "@hubbot:localhost"
    assert registration.receive_ephemeral
    assert len(registration.as_token) >= 32 and registration.as_token != registration.hs_token
    text = out.read_text()
    assert "@mlsbridge_.*:localhost" in text and "de.sorunome.msc2409.push_ephemeral: true" in text
