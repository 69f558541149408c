"""Files in a relayed Megolm room over real Synapse and Prosody (XEP-0363): a stock
end-to-end encrypting Matrix client's encrypted attachment (``file``, an
EncryptedFile) reaches an MLS member as an ExternalPart and a stock XMPP user as an
OOB URL with the same bytes; a stock XMPP user's file reaches the Matrix user as an
encrypted attachment in a Megolm event -- no plain ``url`` -- that decrypts to the
same bytes."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import nio
import pytest

from benchmarks.bridge_run import plain_xmpp
from bridge.app.services.bridge import BridgeService
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import relay_identity
from tests.bridging.conftest import until
from tests.bridging.test_relay_files import (
    LIMIT,
    http_get,
    media,
    oob_urls,
    parts,
    read_as_members,
    share,
)
from tests.bridging.test_relay_megolm import bridge_service, megolm_relayed_rooms, stock_e2e
from tests.xmpp.conftest import UploadProsody, upload_prosody
from transports.matrix.e2e import MEGOLM
from transports.matrix.media import decrypt_attachment
from transports.xmpp.upload import Uploader

__all__ = ["bridge_service", "upload_prosody"]  # fixtures used here


@pytest.fixture(scope="session")
def prosody_server(upload_prosody: UploadProsody) -> UploadProsody:
    return upload_prosody


async def test_files_in_a_megolm_room(bridge_service: BridgeService, people: Any,
                                      prosody_server: ProsodyServer,
                                      synapse_server: SynapseServer, tmp_path: Path) -> None:
    service = bridge_service
    assert service.bot is not None and service.bot.megolm is not None
    bot = service.bot
    stock = await stock_e2e(synapse_server, "element", tmp_path / "stock")
    plain_x = await plain_xmpp(prosody_server, "legx")
    stock_media = media(stock)
    try:
        owner, xmember, room, xmpp_room, group_id = await megolm_relayed_rooms(
            service, people, prosody_server, stock, plain_x)
        await until(lambda: bot.device_id in stock.client.device_store[bot.user_id],
                    "the stock client knowing the bot's device")

        # the stock client's encrypted attachment -> the MLS members and the XMPP user
        picture = os.urandom(30_000)
        uploaded, keys = await stock.client.upload(
            io.BytesIO(picture), content_type="image/jpeg", filename="pic.jpg",
            encrypt=True, filesize=len(picture))
        assert isinstance(uploaded, nio.UploadResponse) and keys is not None, uploaded
        sent = await stock.client.room_send(room, "m.room.message", {
            "msgtype": "m.image", "body": "pic.jpg",
            "info": {"mimetype": "image/jpeg", "size": len(picture)},
            "file": {**keys, "url": uploaded.content_uri}}, ignore_unverified_devices=True)
        assert isinstance(sent, nio.RoomSendResponse), sent
        part = (await until(lambda: parts(owner, group_id, relay_identity(stock.identity)),
                            "the ExternalPart"))[0]
        assert (part.name, part.media_type) == ("pic.jpg", "image/jpeg")
        assert await read_as_members(owner, xmember, group_id, part) == (picture, picture)
        urls = await until(lambda: oob_urls(plain_x, xmpp_room), "the OOB URL on XMPP")
        assert await http_get(urls[0]) == picture

        # a stock XMPP user's file -> an encrypted attachment in a Megolm event
        sheet = os.urandom(20_000)
        ref = await Uploader(plain_x.client, domain=prosody_server.domain).upload(
            sheet, name="sheet.ods", content_type="application/octet-stream")
        share(plain_x, xmpp_room, ref.url)

        def from_bot() -> list[nio.RoomMessage]:
            return [e for e in stock.decrypted(room) if e.sender == bot.user_id
                    and isinstance(e, nio.RoomEncryptedMedia)]
        event = (await until(from_bot, "the stock user decrypting the file event"))[0]
        content = event.source["content"]
        assert content["msgtype"] == "m.file" and content["filename"] == "sheet.ods"
        assert "url" not in content  # only the encrypted attachment
        ciphertext = await stock_media.fetch(content["file"]["url"], LIMIT)
        assert ciphertext != sheet
        assert decrypt_attachment(ciphertext, content["file"]) == sheet
        raw = await owner.client.room_get_event(room, event.event_id)
        assert isinstance(raw, nio.RoomGetEventResponse), raw
        assert raw.event.source["type"] == "m.room.encrypted"
        assert raw.event.source["content"]["algorithm"] == MEGOLM
    finally:
        await stock_media.close()
        await plain_x.close()
        await stock.close()
