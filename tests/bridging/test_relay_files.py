"""Files cross a relayed room pair both ways, over real Prosody (with its XEP-0363
service) and Synapse (application service), through the group's end-to-end encrypted
attachment format: a stock XMPP client's upload (the URL as the body, XEP-0066 OOB)
reaches a stock Matrix user as an m.image with the same bytes and the MLS members as
an ExternalPart with the same bytes; a stock Matrix user's m.file reaches the stock
XMPP user as an OOB URL and the members likewise; an MLS member's file -- its
ciphertext in the Matrix media repository or on the XMPP server's XEP-0363 host --
reaches both stock users; no URL, key or file bytes are logged or stored. A file over
the relay's limit becomes a notice, a URL on a host the component does not allow is
never fetched."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from benchmarks.bridge_run import PlainXmpp
from bridge.app.services.bridge import BridgeService
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import display, relay_identity
from bridge.member import Content, ExternalPart, fetch_file, new_message_id, send_file
from tests.bridging.conftest import PlainMatrix, until
from tests.bridging.relayed import matrix_send, received, xmpp_ghost
from tests.bridging.test_relay_ghosts import SPEC, bridge_service, relayed_rooms
from tests.xmpp.conftest import UploadProsody, upload_prosody
from transports.matrix.media import MediaRef, MediaRepository
from transports.xmpp.markup import NS_FILE, NS_OOB, NS_SFS, NS_URL_DATA
from transports.xmpp.upload import Uploader

__all__ = ["bridge_service", "upload_prosody"]  # fixtures used here
pytestmark = pytest.mark.parametrize("synapse_server", [SPEC], indirect=True)

LIMIT = 1 << 20


@pytest.fixture(scope="session")
def prosody_server(upload_prosody: UploadProsody) -> UploadProsody:
    """These tests' Prosody has an XEP-0363 service (stock clients share files by it)."""
    return upload_prosody


def share(plain: PlainXmpp, room: str, url: str, child: ET.Element | None = None) -> None:
    """A groupchat message the way Conversations sends a file: the URL as the body and
    in XEP-0066 OOB (``child`` replaces the OOB element)."""
    message = plain.client.make_message(mto=room, mtype="groupchat", mbody=url)
    message["id"] = f"file-{secrets.token_hex(4)}"
    if child is None:
        child = ET.Element(f"{{{NS_OOB}}}x")
        ET.SubElement(child, f"{{{NS_OOB}}}url").text = url
    message.xml.append(child)
    message.send()


def oob_urls(plain: PlainXmpp, room: str) -> list[str]:
    return [url.text or "" for s in received(plain, room)
            for url in s.findall(f"{{{NS_OOB}}}x/{{{NS_OOB}}}url")]


async def http_get(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, response.status
        return await response.read()


def media(person: Any) -> MediaRepository:
    """A media repository client with a Matrix account's own login."""
    return MediaRepository(person.client.homeserver, person.client.access_token)


def file_events(plain: PlainMatrix, room: str, sender: str) -> list[dict[str, Any]]:
    return [e for r, e in plain.events if r == room and e.get("type") == "m.room.message"
            and e["sender"] == sender
            and e["content"].get("msgtype") in ("m.image", "m.file", "m.video", "m.audio")]


def parts(person: Any, group_id: bytes, sender: str) -> list[ExternalPart]:
    return [r.content.file for r in person.member.received(group_id)
            if r.content.file is not None and r.sender == sender]


async def read_as_members(owner: Any, xmember: Any, group_id: bytes,
                          part: ExternalPart) -> tuple[bytes, bytes]:
    """The file as the Matrix member reads it (its own login to the media repository)
    and as the XMPP member does (the hub's fetch-media, rule A23)."""
    repository = media(owner)
    try:
        by_matrix = await fetch_file(part, limit=LIMIT, download=lambda url, size, sha:
                                     repository.download(MediaRef(url, sha, size)))
    finally:
        await repository.close()
    by_xmpp = await fetch_file(part, limit=LIMIT, download=lambda url, size, sha:
                               xmember.member.fetch_media(group_id, url, size, sha))
    return by_matrix, by_xmpp


def ours_logged(caplog: pytest.LogCaptureFixture) -> str:
    """What the bridge's own code logged (the test's stock clients log their events)."""
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith(("bridge", "transports")))


def kept_nowhere(caplog: pytest.LogCaptureFixture, tmp_path: Path,
                 texts: list[str], blobs: list[bytes]) -> None:
    """No URL, key or file bytes in the bridge's logs; no file bytes in the hub's
    store or the puppets' secrets file (they pass through memory only)."""
    logged = ours_logged(caplog)
    assert not [t for t in texts if t in logged]
    assert not [b for b in blobs if repr(b[:12])[2:-1] in logged or b[:12].hex() in logged]
    for path in [p for p in tmp_path.iterdir() if p.is_file()]:
        data = path.read_bytes()
        assert not [b for b in blobs if b[100:132] in data], path.name


async def test_files_cross_both_ways(bridge_service: BridgeService, people: Any,
                                     prosody_server: ProsodyServer,
                                     synapse_server: SynapseServer, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service = bridge_service
    owner, xmember, plain_x, plain_m, xmpp_room, matrix_room, group_id = \
        await relayed_rooms(service, people, prosody_server, synapse_server)
    assert service.bot is not None
    ghost_x = xmpp_ghost(service, plain_x.jid)
    stock_upload = Uploader(plain_x.client, domain=prosody_server.domain)
    plain_media = media(plain_m)
    try:
        # a stock XMPP client uploads (XEP-0363) and shares the URL (XEP-0066)
        photo = b"\x89PNG\r\n\x1a\n" + os.urandom(40_000)
        ref = await stock_upload.upload(photo, name="photo.png", content_type="image/png")
        share(plain_x, xmpp_room, ref.url)
        shown = await until(lambda: file_events(plain_m, matrix_room, ghost_x),
                            "the m.image on Matrix")
        content = shown[0]["content"]
        assert content["msgtype"] == "m.image" and content["filename"] == "photo.png"
        assert content["info"] == {"mimetype": "image/png", "size": len(photo)}
        assert await plain_media.fetch(content["url"], LIMIT) == photo
        part = (await until(lambda: parts(owner, group_id, relay_identity(plain_x.identity)),
                            "the MLS member's ExternalPart"))[0]
        assert (part.name, part.media_type, part.size) == ("photo.png", "image/png",
                                                          len(photo))
        assert part.url.startswith("mxc://")  # the relay stores ciphertext on Matrix
        assert await read_as_members(owner, xmember, group_id, part) == (photo, photo)
        # the plain body (the URL) was not relayed as text besides the file
        assert not [r for r in owner.member.received(group_id) if r.content.body == ref.url]

        # a stock Matrix user posts an m.file (a plain mxc upload)
        notes = b"notes " + os.urandom(3000)
        uploaded = await plain_media.upload(notes, name="notes.txt", content_type="text/plain")
        await matrix_send(plain_m, matrix_room, {
            "msgtype": "m.file", "body": "notes.txt", "url": uploaded.url,
            "info": {"mimetype": "text/plain", "size": len(notes)}})
        urls = await until(lambda: oob_urls(plain_x, xmpp_room), "the OOB URL on XMPP")
        assert await http_get(urls[0]) == notes
        assert urls[0].startswith(f"http://{prosody_server.host}:")  # by XEP-0363
        from_m = (await until(lambda: parts(owner, group_id, relay_identity(plain_m.identity)),
                              "the Matrix user's file in the group"))[0]
        assert (from_m.name, from_m.media_type) == ("notes.txt", "text/plain")
        assert await read_as_members(owner, xmember, group_id, from_m) == (notes, notes)

        # an MLS member's ExternalPart reaches both stock users
        report = b"%PDF-1.4 " + os.urandom(5000)
        owner_media = media(owner)
        try:
            mine = await send_file(report, name="report.pdf", media_type="application/pdf",
                                   limit=LIMIT, upload=lambda data: _url(owner_media, data))
        finally:
            await owner_media.close()
        await owner.member.send_content(group_id, Content(new_message_id(), file=mine))
        from_bot = await until(lambda: file_events(plain_m, matrix_room, service.bot.user_id
                                                   if service.bot else ""), "the bot's m.file")
        assert from_bot[0]["content"]["msgtype"] == "m.file"
        assert from_bot[0]["content"]["filename"] == "report.pdf"
        assert await plain_media.fetch(from_bot[0]["content"]["url"], LIMIT) == report
        urls = await until(lambda: oob_urls(plain_x, xmpp_room)[1:], "the member's file on XMPP")
        assert await http_get(urls[0]) == report
        # an XMPP MLS member's file (its ciphertext on the XMPP server's XEP-0363 host)
        sheet = b"PK\x03\x04" + os.urandom(7000)
        theirs = await send_file(sheet, name="sheet.ods", media_type="application/zip",
                                 limit=LIMIT, upload=lambda data: _http_url(xmember, data))
        assert theirs.url.startswith("http://")
        await xmember.member.send_content(group_id, Content(new_message_id(), file=theirs))
        ghost_xm = xmpp_ghost(service, display(xmember.identity))
        from_xm = await until(lambda: file_events(plain_m, matrix_room, ghost_xm),
                              "the XMPP member's file on Matrix")
        assert from_xm[0]["content"]["filename"] == "sheet.ods"
        assert await plain_media.fetch(from_xm[0]["content"]["url"], LIMIT) == sheet
        urls = await until(lambda: oob_urls(plain_x, xmpp_room)[2:],
                           "the XMPP member's file on XMPP")
        assert await http_get(urls[0]) == sheet
        # the stock XMPP user is not sent its own file back
        assert len(oob_urls(plain_x, xmpp_room)) == 3
        keys = [p.key for p in (part, from_m, mine, theirs)]
        kept_nowhere(caplog, tmp_path, [ref.url, uploaded.url, part.url, from_m.url,
                                        mine.url, theirs.url, *urls, content["url"],
                                        *[k.hex() for k in keys],
                                        *[base64.b64encode(k).decode() for k in keys]],
                     [photo, notes, report, sheet])
    finally:
        await plain_media.close()
        await plain_x.close()
        await plain_m.close()


async def _url(repository: MediaRepository, data: bytes) -> str:
    return (await repository.upload(data)).url


async def _http_url(peer: Any, data: bytes) -> str:
    """An XMPP member's upload (XEP-0363, as ``mls-bridge chat`` on XMPP does)."""
    return (await peer.plugin.uploader.upload(data)).url


@pytest.fixture
async def counting_server() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.2 -- a host the component does not allow -- that
    counts the requests it gets."""
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"never fetched")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.2:{port}", hits
    finally:
        await runner.cleanup()


async def test_files_over_the_limit_or_from_elsewhere(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer, counting_server: tuple[str, list[str]],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service = bridge_service
    owner, _xmember, plain_x, plain_m, xmpp_room, matrix_room, group_id = \
        await relayed_rooms(service, people, prosody_server, synapse_server)
    ghost_x = xmpp_ghost(service, plain_x.jid)
    service.relay.mapper.files.configured = 10_000
    stock_upload = Uploader(plain_x.client, domain=prosody_server.domain)
    plain_media = media(plain_m)
    base, hits = counting_server
    puppet_x = relay_identity(plain_x.identity)

    def notices(text: str) -> list[str]:
        return [r.content.body or "" for r in owner.member.received(group_id)
                if r.sender == puppet_x and text in (r.content.body or "")]

    try:
        # over the limit (no size declared: the download stops past it): a notice
        big = os.urandom(20_000)
        ref = await stock_upload.upload(big, name="big.bin")
        share(plain_x, xmpp_room, ref.url)
        said = await until(lambda: notices("big.bin"), "the notice in the group")
        assert said[0] == "[a file, big.bin, was not relayed: it is over the bridge's " \
            "limit of 10.0 kB]"
        await until(lambda: [e for e in plain_m.messages(matrix_room)
                             if e["sender"] == ghost_x and "big.bin" in e["content"]["body"]],
                    "the notice on Matrix")
        assert not parts(owner, group_id, puppet_x)

        # XEP-0447 declaring a size over the limit: a notice, and nothing fetched
        sharing = ET.Element(f"{{{NS_SFS}}}file-sharing")
        meta = ET.SubElement(sharing, f"{{{NS_FILE}}}file")
        ET.SubElement(meta, f"{{{NS_FILE}}}name").text = "declared.iso"
        ET.SubElement(meta, f"{{{NS_FILE}}}size").text = str(50_000_000)
        sources = ET.SubElement(sharing, f"{{{NS_SFS}}}sources")
        ET.SubElement(sources, f"{{{NS_URL_DATA}}}url-data",
                      {"target": ref.url.replace("big", "declared")})
        share(plain_x, xmpp_room, "", sharing)
        said = await until(lambda: notices("declared.iso"), "the declared-size notice")
        assert said[0] == "[a file, declared.iso, 50.0 MB, was not relayed: it is over " \
            "the bridge's limit of 10.0 kB]"

        # a URL on a host the component does not allow: never fetched, nothing relayed
        share(plain_x, xmpp_room, f"{base}/elsewhere.png")
        marker = f"after {secrets.token_hex(4)}"
        plain_x.say(xmpp_room, marker)  # input is handled in order: this comes after
        await until(lambda: [r for r in owner.member.received(group_id)
                             if r.content.body == marker], "the marker")
        assert hits == []
        assert service.relay.mapper.files.failed == 1  # refused (the host), logged
        assert "relay: a file from xmpp was not relayed: UploadError" in ours_logged(caplog)
        assert "elsewhere" not in ours_logged(caplog) and ref.url not in ours_logged(caplog)
        assert not [r for r in owner.member.received(group_id)
                    if r.sender == puppet_x and (r.content.file is not None or
                                                 "elsewhere" in (r.content.body or ""))]

        # a Matrix file over the limit reaches XMPP as a notice, not a URL
        huge = os.urandom(30_000)
        uploaded = await plain_media.upload(huge, name="huge.bin")
        await matrix_send(plain_m, matrix_room, {
            "msgtype": "m.file", "body": "huge.bin", "url": uploaded.url,
            "info": {"size": len(huge)}})
        await until(lambda: [b for _, b in plain_x.messages
                             if "huge.bin" in b and "not relayed" in b], "the notice on XMPP")
        await asyncio.sleep(0)
        assert not oob_urls(plain_x, xmpp_room)
    finally:
        await plain_media.close()
        await plain_x.close()
        await plain_m.close()
