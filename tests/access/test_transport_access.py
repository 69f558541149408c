"""Access control in the transports, against the real servers (tests/servers).

* XMPP: Prosody refuses a component that presents a wrong XEP-0114 secret; the error
  does not echo the secret; the right secret still connects afterwards.
* Matrix: the hub binds a room to a group only for a moderator of that room (its
  power levels, read by the bot); nobody attaches a room by request;
  binding events (commit, proposal, encrypted MLS, group state) not sent by the bot
  itself are ignored by the bot and by members; a user outside the group gets nothing
  from the hub.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import nio
import pytest

from bridge.app.services.matrix import MatrixService
from bridge.devservers.prosody import ProsodyServer
from bridge.errors import HubRefused
from tests.matrix.conftest import MatrixMember, eventually, room_with_hub
from transports.interface import Inbound, Op
from transports.matrix import namespace as ns
from transports.matrix.events import b64encode
from transports.xmpp.component import ComponentConfig, MLSComponent
from transports.xmpp.errors import ComponentAuthError


async def test_xmpp_component_wrong_secret(prosody_server: ProsodyServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + random.Random(1).randbytes(8).hex()
    config = dict(jid=prosody_server.component_name, host=prosody_server.host,
                  port=prosody_server.component_port)
    intruder = MLSComponent(ComponentConfig(secret=wrong, **config))
    with pytest.raises(ComponentAuthError) as info:
        await intruder.start(timeout=10)
    assert not intruder.connected
    assert wrong not in str(info.value)
    assert prosody_server.component_secret not in str(info.value)
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    assert wrong not in log_text and prosody_server.component_secret not in log_text
    genuine = MLSComponent(ComponentConfig(secret=prosody_server.component_secret, **config))
    await genuine.start(timeout=10)
    try:
        assert genuine.connected
    finally:
        await genuine.stop()


async def test_matrix_bot_access(hub: MatrixService, members: Any) -> None:
    assert hub.bot is not None
    bot = hub.bot
    hub_user = bot.user_id
    alice: MatrixMember = await members("alice", hub_user)
    bob: MatrixMember = await members("bob", hub_user)
    mallory: MatrixMember = await members("mallory", hub_user)
    room_id = await room_with_hub(alice, hub_user)
    await bob.member.publish_key_packages(1)

    # Mallory is not in the room: she may not bind it to her group.
    with pytest.raises(HubRefused) as info:
        await mallory.member.create_group(transport=ns.TRANSPORT_NAME, room_id=room_id)
    assert info.value.code == "not-moderator"
    own_group = await mallory.member.create_group()
    reply = await mallory.link.request(Inbound(
        Op.ATTACH_ROOM, "ignored", request_id="m1", group_id=own_group,
        transport=ns.TRANSPORT_NAME, room_id=room_id))
    assert not reply.ok and reply.code == "forbidden"

    group_id = await alice.member.create_group(transport=ns.TRANSPORT_NAME, room_id=room_id)
    await alice.member.add_members(group_id, [bob.identity])
    await eventually(lambda: room_id in bob.client.rooms, what="bob in the Matrix room")
    await eventually(lambda: group_id in bob.member.group_ids(), what="bob joining")

    # Mallory, outside the group, may not read its log, claim for it, or fetch its
    # GroupInfo (the default join policy is "invite").
    reply = await mallory.link.request(Inbound(Op.FETCH_LOG, "ignored", request_id="m-log",
                                               group_id=group_id))
    assert not reply.ok and reply.code == "not-member", reply
    reply = await mallory.link.request(Inbound(
        Op.CLAIM_KEY_PACKAGE, "ignored", request_id="m-claim", group_id=group_id,
        target=alice.identity, cipher_suite=1))
    assert not reply.ok and reply.code == "not-member"
    reply = await mallory.link.request(Inbound(Op.GET_GROUP_INFO, "ignored",
                                               request_id="m-info", group_id=group_id))
    assert not reply.ok and reply.code == "join-policy"

    # Bob (a member, but not the hub) posts binding events in the room himself.
    group = alice.member.group(group_id)
    header = {ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(group_id),
              ns.K_SEQ: alice.member.next_seq(group_id), ns.K_EPOCH: group.epoch,
              ns.K_SENDER: alice.identity}
    forgeries = [
        (ns.COMMIT_EVENT, {**header, ns.K_COMMIT: b64encode(b"\x00\x01forged commit")}),
        (ns.PROPOSAL_EVENT, {**header, ns.K_PROPOSAL: b64encode(b"\x00\x01forged")}),
        (ns.ENCRYPTED_EVENT, {**header, ns.K_ALGORITHM: ns.MLS_ALGORITHM,
                              ns.K_SENDER_KEY: "", ns.K_CIPHERTEXT: b64encode(b"\x00")}),
    ]
    sent_ids = []
    for event_type, content in forgeries:
        sent = await bob.client.room_send(room_id, event_type, content)
        assert isinstance(sent, nio.RoomSendResponse), sent
        sent_ids.append(sent.event_id)
    state_sent = await bob.client.room_put_state(room_id, ns.GROUP_STATE, {
        ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(own_group)})
    if isinstance(state_sent, nio.RoomPutStateResponse):  # bob may lack the power level
        sent_ids.append(state_sent.event_id)
    for event_id in sent_ids:
        await eventually(lambda event_id=event_id: any(e == event_id for _, e in bot.ignored),
                         what="the bot ignoring a forged event")
    for event_id in sent_ids[:3]:
        await eventually(lambda event_id=event_id: any(
            e == event_id for _, e in alice.link.ignored), what="alice ignoring a forgery")
    assert alice.member.group(group_id).epoch == group.epoch
    assert not any(m.payload.startswith(b"\x00\x01forged") for m in alice.link.delivered)
