"""Forged senders and powers, as each network lets a hostile client try them, over the
real Prosody and Synapse: the hub's requester is always the one the network
authenticated (docs/SECURITY.md, "Principals"), and a room's powers are the room's.

In each, mallory submits a commit xa staged (and never sent) while claiming to be xa:
were the claim believed, the commit would be accepted as xa's."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from typing import Any

import nio
from slixmpp import JID
from slixmpp.exceptions import IqError

from bridge.app.services.bridge import BridgeService
from bridge.devservers.prosody import ProsodyServer
from mls import MLSMessage, encode
from tests.attacks.conftest import Scene, bridged_scene, hub_state
from tests.bridging.conftest import converge, roster, until
from transports.interface import Inbound, Op, Outbound
from transports.matrix import events
from transports.matrix import namespace as matrix_ns
from transports.matrix.media import pack
from transports.xmpp import namespace as xmpp_ns
from transports.xmpp.stanzas import blobs_of, decode_rejected, decode_reply, encode_request, find
from transports.xmpp.upload import placements, resolver


async def scene_and_xas_commit(service: BridgeService, people: Any, prosody: ProsodyServer,
                               network: str) -> tuple[Scene, Inbound, tuple[Any, ...]]:
    scene = await bridged_scene(service, people, prosody, hostile=network)
    await converge(scene.members, scene.group_id)
    staged = scene.xa.member.group(scene.group_id).commit(rng=os.urandom, force_path=True)
    request = Inbound(Op.SUBMIT_COMMIT, scene.xa.identity, secrets.token_hex(6),
                      group_id=scene.group_id, payload=encode(staged.message),
                      group_info=encode(MLSMessage.wrap(staged.group_info)))
    return scene, request, await hub_state(service, scene.group_id)


async def test_a_matrix_request_claiming_an_xmpp_identity_is_its_senders(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """Mallory's to-device request carries xa's identity (and JID) in its content:
    the bot reads the sender Synapse set, so the commit is not hers: not-member."""
    scene, request, before = await scene_and_xas_commit(bridge_service, people,
                                                        prosody_server, "matrix")
    link = scene.attacker.member.link
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    link._pending[request.request_id] = future  # type: ignore[attr-defined]
    content = await pack(events.request_content(request, str(link.client.device_id)),  # type: ignore[attr-defined]
                         link.media.upload)  # type: ignore[attr-defined]
    content.update({"sender": scene.xa.identity, "user_id": scene.xa.identity,
                    "from": scene.xa.identity.removeprefix("xmpp:")})
    sent = await link.client.to_device(nio.ToDeviceMessage(  # type: ignore[attr-defined]
        matrix_ns.REQUEST_TO_DEVICE, link.hub_user, link.hub_device, content),  # type: ignore[attr-defined]
        uuid.uuid4().hex)
    assert isinstance(sent, nio.ToDeviceResponse), sent
    reply = await events.parse_response(await asyncio.wait_for(future, 30),
                                        link.media.read_blob)  # type: ignore[attr-defined]
    assert (reply.ok, reply.code) == (False, "not-member"), reply
    assert await hub_state(bridge_service, scene.group_id) == before
    await scene.chat("xa speaks for itself")


async def test_an_xmpp_request_with_a_spoofed_from_is_its_senders(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """Mallory's IQ says it is from xa's full JID: Prosody stamps her own, so the
    hub sees mallory, and the commit is not hers: not-member."""
    scene, request, before = await scene_and_xas_commit(bridge_service, people,
                                                        prosody_server, "xmpp")
    plugin = scene.attacker.plugin  # type: ignore[attr-defined]
    iq = plugin.xmpp.Iq()
    iq["to"] = JID(plugin.hub)
    iq["type"] = "set"
    iq["from"] = JID(scene.xa.plugin.xmpp.boundjid.full)  # type: ignore[attr-defined]
    iq.xml.append(encode_request(request, await placements(
        plugin.uploader, list(blobs_of(request)), plugin.stanza_limit)))
    try:
        result = await iq.send(timeout=30)
        reply_el = find(result, xmpp_ns.REPLY)
        reply: Outbound = decode_reply(reply_el, await resolver(plugin.uploader, reply_el))
    except IqError as exc:
        error = exc.iq["error"]
        rejected = error.xml.find(f"{{{xmpp_ns.NS}}}{xmpp_ns.REJECTED}")
        assert rejected is not None, f"not the hub's refusal: {error['condition']}"
        reply = decode_rejected(rejected, error["text"], error["condition"],
                                request.request_id)
    assert (reply.ok, reply.code) == (False, "not-member"), reply
    assert await hub_state(bridge_service, scene.group_id) == before
    await scene.chat("xa speaks for itself")


async def test_a_matrix_kick_without_power_is_refused_by_the_room(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """Mallory, a member of the group's Matrix room at power 0, kicks and bans ma:
    Synapse refuses (M_FORBIDDEN), no network event reaches the hub, ma stays."""
    scene = await bridged_scene(bridge_service, people, prosody_server, hostile="matrix")
    await converge(scene.members, scene.group_id)
    room = scene.pair.matrix_room
    mallory = scene.attacker
    await until(lambda: room in mallory.client.rooms, "mallory in the Matrix room")  # type: ignore[attr-defined]
    before = await hub_state(bridge_service, scene.group_id)
    target = scene.ma.client.user_id  # type: ignore[attr-defined]
    for attempt in (mallory.client.room_kick(room, target),  # type: ignore[attr-defined]
                    mallory.client.room_ban(room, target)):  # type: ignore[attr-defined]
        response = await attempt
        assert isinstance(response, nio.ErrorResponse), response
        assert response.status_code == "M_FORBIDDEN", response
    assert await hub_state(bridge_service, scene.group_id) == before
    assert scene.ma.identity in roster(scene.xa, scene.group_id)
    await scene.chat("ma is still here")
