"""End-to-end encrypted files: what is uploaded is ciphertext, a received file is
checked (hash, tag, size) before it is returned, and the size limit holds."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest

from bridge.errors import FileError
from bridge.member.attachments import TAG_SIZE, fetch_file, open_sealed, send_file
from bridge.member.content import ExternalPart

DATA = b"\x89PNG\r\n" + os.urandom(3000)


class Server:
    """An upload store: what was uploaded, by URL."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def upload(self, data: bytes) -> str:
        url = f"https://files.example/{len(self.blobs)}"
        self.blobs[url] = data
        return url

    async def download(self, url: str, size: int, sha256: bytes) -> bytes:
        data = self.blobs[url]
        assert len(data) == size and hashlib.sha256(data).digest() == sha256
        return data


async def _sent(server: Server) -> ExternalPart:
    return await send_file(DATA, name="cat.png", media_type="image/png",
                           upload=server.upload, limit=1 << 20)


async def test_round_trip_uploads_only_ciphertext() -> None:
    server = Server()
    part = await _sent(server)
    (blob,) = server.blobs.values()
    assert DATA not in blob and DATA[:64] not in blob
    assert len(blob) == len(DATA) + TAG_SIZE
    assert part.sha256 == hashlib.sha256(blob).digest()
    assert part.plaintext_sha256 == hashlib.sha256(DATA).digest()
    assert (part.size, part.media_type, part.name) == (len(DATA), "image/png", "cat.png")
    assert await fetch_file(part, download=server.download, limit=1 << 20) == DATA


async def test_each_file_gets_its_own_key_and_nonce() -> None:
    server = Server()
    first, second = await _sent(server), await _sent(server)
    assert first.key != second.key and first.nonce != second.nonce
    assert first.sha256 != second.sha256


async def test_tampered_ciphertext_is_rejected() -> None:
    server = Server()
    part = await _sent(server)
    blob = bytearray(server.blobs[part.url])
    blob[10] ^= 1
    # the attacker also fixes up the ciphertext hash: the AEAD tag still catches it
    forged = dataclasses.replace(part, sha256=hashlib.sha256(bytes(blob)).digest())
    with pytest.raises(FileError, match="tampered"):
        open_sealed(forged, bytes(blob), limit=1 << 20)
    with pytest.raises(FileError, match="SHA-256"):
        open_sealed(part, bytes(blob), limit=1 << 20)


async def test_wrong_hashes_are_rejected() -> None:
    server = Server()
    part = await _sent(server)
    blob = server.blobs[part.url]
    with pytest.raises(FileError, match="SHA-256"):
        open_sealed(dataclasses.replace(part, sha256=b"\0" * 32), blob, limit=1 << 20)
    with pytest.raises(FileError, match="SHA-256"):
        open_sealed(dataclasses.replace(part, plaintext_sha256=b"\0" * 32), blob,
                    limit=1 << 20)
    with pytest.raises(FileError, match="length"):
        open_sealed(part, blob + b"\0", limit=1 << 20)


async def test_wrong_key_is_rejected() -> None:
    server = Server()
    part = await _sent(server)
    with pytest.raises(FileError, match="tampered"):
        open_sealed(dataclasses.replace(part, key=bytes(32)), server.blobs[part.url],
                    limit=1 << 20)


async def test_size_limit_on_send_uploads_nothing() -> None:
    server = Server()
    with pytest.raises(FileError, match="limit"):
        await send_file(DATA, name="cat.png", media_type="image/png", upload=server.upload,
                        limit=len(DATA) + TAG_SIZE - 1)
    assert server.blobs == {}
    part = await send_file(DATA, name="cat.png", media_type="image/png",
                           upload=server.upload, limit=len(DATA) + TAG_SIZE)
    assert part.size == len(DATA)


async def test_size_limit_on_receive_downloads_nothing() -> None:
    server = Server()
    part = await _sent(server)

    async def no_download(url: str, size: int, sha256: bytes) -> bytes:
        raise AssertionError("must not download")

    with pytest.raises(FileError, match="limit"):
        await fetch_file(part, download=no_download, limit=len(DATA) - 1)
