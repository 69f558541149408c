"""Payloads over the stanza limit: XEP-0363 upload when the server offers it (Prosody's
mod_http_file_share on 127.0.0.1), a clear refusal when it does not; never truncated."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bridge.devservers.prosody import ProsodyServer
from tests.xmpp.conftest import Peer, UploadProsody, new_peer, start_hub
from tests.xmpp.helpers import converge, in_group, room_jid, texts, until
from transports.xmpp.errors import PayloadTooLarge, UploadError
from transports.xmpp.stanzas import UploadRef

LIMIT = 16 * 1024  # a small stanza limit so that a 40 KiB message must be uploaded


async def _pair(server: ProsodyServer, **config: object) -> tuple[Peer, Peer, bytes]:
    alice = await new_peer(server, "la", stanza_limit=LIMIT, **config)
    bob = await new_peer(server, "lb", stanza_limit=LIMIT, **config)
    await bob.member.publish_key_packages(1)
    group_id = await alice.member.create_group(
        transport="xmpp", room_id=room_jid(server.component_name))
    await alice.member.add_members(group_id, [bob.identity])
    await until(lambda: in_group(bob, group_id), "bob's Welcome")
    await converge([alice, bob], group_id)
    return alice, bob, group_id


async def test_large_message_travels_by_http_upload(upload_prosody: UploadProsody,
                                                    tmp_path: Path) -> None:
    hub = await start_hub(upload_prosody, tmp_path / "hub.db", stanza_limit=LIMIT)
    alice = bob = None
    try:
        alice, bob, group_id = await _pair(upload_prosody)
        await until(lambda: bool(bob.plugin.rooms), "bob to enter the room")
        big = "x" * (40 * 1024) + "end"
        await alice.member.send_text(group_id, big)
        await until(lambda: len(texts(bob, group_id)) == 1, "the large message")
        assert texts(bob, group_id) == [(alice.identity, big)]
        service = await alice.plugin.uploader.service()
        assert service is not None and service.jid == f"upload.{upload_prosody.domain}"
        assert alice.plugin.uploader._known, "the payload was not uploaded"
        # a reference whose bytes do not match its SHA-256 is refused on download
        ref = next(iter(alice.plugin.uploader._known.values()))
        forged = UploadRef(ref.url, hashlib.sha256(b"other").hexdigest(), ref.size)
        with pytest.raises(UploadError, match="SHA-256"):
            await bob.plugin.uploader.download(forged)
    finally:
        for peer in (alice, bob):
            if peer is not None:
                await peer.close()
        await hub.close()


async def test_large_message_without_upload_service_is_refused(
        prosody_server: ProsodyServer, tmp_path: Path) -> None:
    hub = await start_hub(prosody_server, tmp_path / "hub.db", stanza_limit=LIMIT)
    alice = bob = None
    try:
        alice, bob, group_id = await _pair(prosody_server)
        assert await alice.plugin.uploader.service() is None
        with pytest.raises(PayloadTooLarge, match="no XEP-0363 upload service"):
            await alice.member.send_text(group_id, "y" * (40 * 1024))
        await alice.member.send_text(group_id, "small")
        await until(lambda: len(texts(bob, group_id)) == 1, "the small message")
        assert texts(bob, group_id) == [(alice.identity, "small")]
    finally:
        for peer in (alice, bob):
            if peer is not None:
                await peer.close()
        await hub.close()
