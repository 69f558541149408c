"""The binding's content formats (no server) and the media repository (real Synapse)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bridge.devservers.synapse import SynapseServer
from tests.matrix.conftest import login
from transports.interface import Inbound, KeyPackageListing, Kind, Op, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.errors import MalformedEvent, MediaError
from transports.matrix.media import MediaRef, MediaRepository, pack


def test_base64_is_unpadded_and_strict() -> None:
    assert events.b64encode(b"ab") == "YWI"
    assert events.b64decode("YWI") == events.b64decode("YWI=") == b"ab"
    for bad in ("Y", "YW I", "YW-I", "@@@@"):
        with pytest.raises(MalformedEvent):
            events.b64decode(bad)
    assert events.user_uri("@alice:example.org") == "matrix:u/alice:example.org"
    assert events.uri_user("matrix:u/alice:example.org") == "@alice:example.org"
    assert events.uri_user("xmpp:alice@example.org") is None


async def test_request_round_trip_takes_sender_from_the_network() -> None:
    request = Inbound(str(Op.SUBMIT_COMMIT), "matrix:u/mallory:x", "r1", b"g" * 32,
                      b"commit", b"welcome", b"info", b"tree", cipher_suite=3)
    content = await pack(events.request_content(request, "DEV"), None)
    assert "sender" not in content and json.loads(json.dumps(content)) == content
    parsed = await events.parse_request(content, "matrix:u/alice:x", events.inline_blob)
    assert parsed.reply_device == "DEV"
    assert parsed.inbound == Inbound(str(Op.SUBMIT_COMMIT), "matrix:u/alice:x", "r1",
                                     b"g" * 32, b"commit", b"welcome", b"info", b"tree",
                                     cipher_suite=3)
    with pytest.raises(MalformedEvent):
        await events.parse_request({**content, ns.K_VERSION: 2}, "matrix:u/a:x",
                                   events.inline_blob)
    report = Inbound(str(Op.REPORT), "", "r2", b"g", seq=17, reason="confirmation-tag")
    content = await pack(events.request_content(report, "DEV"), None)
    assert (content[ns.K_SEQ], content[ns.K_REASON]) == (17, "confirmation-tag")
    parsed = await events.parse_request(content, "matrix:u/bob:x", events.inline_blob)
    assert parsed.inbound == dataclasses.replace(report, sender="matrix:u/bob:x")
    for bad in ({ns.K_SEQ: -1}, {ns.K_SEQ: "7"}, {ns.K_REASON: 3}):
        with pytest.raises(MalformedEvent):
            await events.parse_request({**content, **bad}, "matrix:u/bob:x",
                                       events.inline_blob)


async def test_response_and_deliveries_round_trip() -> None:
    entry = Outbound(str(Kind.APPLICATION), group_id=b"g", seq=4, epoch=2, sender="s",
                     payload=b"m")
    listing = KeyPackageListing(b"ref", "matrix:u/a:x", "d", 1, 99, True)
    reply = Outbound(str(Kind.REPLY), request_id="r", group_id=b"g", seq=5, epoch=2,
                     ok=False, code="wrong-epoch", reason="wrong epoch (current 2)",
                     entries=(entry,), key_packages=(listing,))
    content = await pack(events.response_content(reply), None)
    assert await events.parse_response(content, events.inline_blob) == reply
    event_type, room = events.room_event(entry)
    room = await pack(room, None)
    assert event_type == ns.ENCRYPTED_EVENT and room[ns.K_ALGORITHM] == ns.MLS_ALGORITHM
    assert events.is_mls_room_event(event_type, room)
    assert not events.is_mls_room_event(event_type, {"algorithm": "m.megolm.v1.aes-sha2"})
    assert await events.parse_room_event(event_type, room, events.inline_blob) == entry
    welcome = Outbound(str(Kind.WELCOME), group_id=b"g", seq=3, epoch=1, payload=b"w",
                       ratchet_tree=b"t", rooms=(("matrix", "!r:x"),))
    packed = await pack(events.welcome_content(welcome), None)
    assert await events.parse_welcome(packed, events.inline_blob) == welcome


async def test_large_payloads_go_through_media_with_sha256(
        synapse_server: SynapseServer) -> None:
    user_id, password = synapse_server.new_user("media")
    client = await login(synapse_server, user_id, password)
    media = MediaRepository(synapse_server.url, client.access_token)
    try:
        big = bytes(range(256)) * 400  # 100 KiB
        entry = Outbound(str(Kind.COMMIT), group_id=b"g", seq=1, payload=big)
        _, content = events.room_event(entry)
        packed = await pack(content, media.upload)
        assert len(json.dumps(packed)) < ns.INLINE_BUDGET and media.uploads == 1
        ref = MediaRef.from_json(packed[ns.K_COMMIT])
        assert ref.size == len(big)
        parsed = await events.parse_room_event(ns.COMMIT_EVENT, packed, media.read_blob)
        assert parsed.payload == big
        tampered = {**packed[ns.K_COMMIT], ns.K_MEDIA_SHA256: events.b64encode(b"\0" * 32)}
        with pytest.raises(MediaError):
            await media.read_blob(tampered)
        with pytest.raises(MediaError):
            await pack(events.room_event(entry)[1], None)
    finally:
        await media.close()
        await client.close()
