"""End-to-end encrypted files: the bytes go out of band (XEP-0363 upload, the Matrix
media repository), the key to them inside the MLS message.

Each file gets a fresh random 256-bit key and 96-bit nonce and is encrypted with
AES-256-GCM (RFC 5116 §5.2, via ``cryptography``). Only the ciphertext is uploaded;
the :class:`bridge.member.content.ExternalPart` that the sender puts in its MLS
application message carries the URL, key, nonce, the SHA-256 of the ciphertext and of
the plaintext, the size, media type and name (as MIMI content's external parts do).
A receiver checks, in this order: the size announced against its limit, the
ciphertext's length and SHA-256, the AEAD tag, the plaintext's size and SHA-256 --
any mismatch raises :class:`bridge.errors.FileError` and nothing is returned.

Upload and download are callables the client passes in (each network has its own
store), so this module does no I/O: ``upload(ciphertext) -> url`` and
``download(url, size, sha256) -> ciphertext`` (the exact size and hash of the
ciphertext, which the transports' own downloads check as well).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.errors import ContentError, FileError
from bridge.member.content import FILE_KEY_SIZE, FILE_NONCE_SIZE, ExternalPart

TAG_SIZE = 16
Upload = Callable[[bytes], Awaitable[str]]
Download = Callable[[str, int, bytes], Awaitable[bytes]]
Rng = Callable[[int], bytes]


def seal(data: bytes, *, rng: Rng = os.urandom) -> tuple[bytes, bytes, bytes]:
    """Encrypt ``data`` under a fresh key and nonce: (ciphertext, key, nonce)."""
    key, nonce = rng(FILE_KEY_SIZE), rng(FILE_NONCE_SIZE)
    return AESGCM(key).encrypt(nonce, data, None), key, nonce


def open_sealed(part: ExternalPart, ciphertext: bytes, *, limit: int) -> bytes:
    """The file's bytes, after every check of the module docstring."""
    if part.size > limit:
        raise FileError(f"file of {part.size} bytes exceeds the limit of {limit} bytes")
    if len(ciphertext) != part.size + TAG_SIZE:
        raise FileError("encrypted file has the wrong length")
    if not hmac.compare_digest(hashlib.sha256(ciphertext).digest(), part.sha256):
        raise FileError("encrypted file does not match its SHA-256")
    try:
        data = AESGCM(part.key).decrypt(part.nonce, ciphertext, None)
    except InvalidTag:
        raise FileError("encrypted file failed authentication (tampered)") from None
    if len(data) != part.size or not hmac.compare_digest(hashlib.sha256(data).digest(),
                                                         part.plaintext_sha256):
        raise FileError("decrypted file does not match its size and SHA-256")
    return data


async def send_file(data: bytes, *, name: str, media_type: str, upload: Upload, limit: int,
                    rng: Rng = os.urandom) -> ExternalPart:
    """Encrypt ``data``, upload the ciphertext, return the part to send in a message.

    ``limit`` is the largest file the server accepts (the ciphertext is 16 bytes
    longer): a larger file raises :class:`FileError` before anything is uploaded."""
    if len(data) + TAG_SIZE > limit:
        raise FileError(f"file of {len(data)} bytes exceeds the server's upload limit "
                        f"of {limit} bytes")
    ciphertext, key, nonce = seal(data, rng=rng)
    url = await upload(ciphertext)
    try:
        return ExternalPart(url, hashlib.sha256(ciphertext).digest(), len(data), media_type,
                            key, nonce, hashlib.sha256(data).digest(), name)
    except ContentError as exc:
        raise FileError(f"cannot describe the file: {exc}") from exc


async def fetch_file(part: ExternalPart, *, download: Download, limit: int) -> bytes:
    """Download and open a received file (:func:`open_sealed`'s checks)."""
    if part.size > limit:
        raise FileError(f"file of {part.size} bytes exceeds the limit of {limit} bytes")
    ciphertext = await download(part.url, part.size + TAG_SIZE, part.sha256)
    return open_sealed(part, ciphertext, limit=limit)
