"""Large payloads through the Matrix media repository, referenced by SHA-256.

A Matrix event is limited to 64 KiB of JSON (the whole PDU). :func:`pack` turns the
``bytes`` fields of a content ``dict`` built by :mod:`transports.matrix.events` into
unpadded base64, and when the result would exceed :data:`~transports.matrix.namespace.INLINE_BUDGET`
it uploads the largest fields, replacing each with ``{"url": "mxc://...", "sha256":
"<unpadded base64>", "size": n}``. :meth:`MediaRepository.read_blob` is the matching
:data:`~transports.matrix.events.BlobReader`: inline base64 is decoded; a reference is
downloaded (authenticated media API), streamed with a hard cap at the size the
reference declares (the bot checked the declared sizes of a request against its limit
before fetching anything: :func:`transports.matrix.events.parse_request`), and its
SHA-256 checked before use.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from nio.crypto import attachments as nio_attachments
from nio.exceptions import EncryptionError

from transports.matrix import namespace as ns
from transports.matrix.errors import (
    MalformedEvent,
    MatrixTransportError,
    MediaError,
    RequestTooLarge,
)
from transports.matrix.events import Content, b64decode, b64encode

MAX_MEDIA_SIZE = 32 * 1024 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Where a payload lives in the media repository, and what it must hash to."""

    url: str
    sha256: bytes
    size: int

    def to_json(self) -> dict[str, Any]:
        return {ns.K_MEDIA_URL: self.url, ns.K_MEDIA_SHA256: b64encode(self.sha256),
                ns.K_MEDIA_SIZE: self.size}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> MediaRef:
        url, digest, size = (value.get(ns.K_MEDIA_URL), value.get(ns.K_MEDIA_SHA256),
                             value.get(ns.K_MEDIA_SIZE))
        if not isinstance(url, str) or not url.startswith("mxc://") or url.count("/") != 3:
            raise MalformedEvent("media reference needs an mxc:// url")
        if not isinstance(digest, str) or type(size) is not int or not 0 <= size <= MAX_MEDIA_SIZE:
            raise MalformedEvent("media reference needs sha256 and a size")
        sha256 = b64decode(digest)
        if len(sha256) != 32:
            raise MalformedEvent("media reference sha256 must be 32 bytes")
        return cls(url, sha256, size)


Uploader = Callable[[bytes], Awaitable[MediaRef]]


class MediaRepository:
    """Upload/download through one homeserver's media API with one access token."""

    def __init__(self, homeserver: str, access_token: str) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.access_token = access_token
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.uploads = 0  # how many payloads went out of band (for tests and metrics)
        self.downloads = 0

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise MediaError("the media repository is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self._session

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    async def close(self) -> None:
        """Close the HTTP session for good (a later call raises :class:`MediaError`
        rather than open a session nobody would close)."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def upload(self, data: bytes, *, name: str = "mls.bin",
                     content_type: str = ns.MEDIA_CONTENT_TYPE) -> MediaRef:
        """Store ``data``; return its reference (mxc URI, SHA-256, size). ``name`` and
        ``content_type``: a file's, for a plain file shared with Matrix users."""
        url = f"{self.homeserver}/_matrix/media/v3/upload?filename={quote(name, safe='')}"
        headers = {**self._auth(), "Content-Type": content_type}
        try:
            async with self._http().post(url, data=data, headers=headers) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200 or not isinstance(body, dict):
                    raise MediaError(f"upload refused: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise MediaError(f"upload failed: {exc}") from exc
        content_uri = body.get("content_uri")
        if not isinstance(content_uri, str):
            raise MediaError("upload answer has no content_uri")
        self.uploads += 1
        return MediaRef(content_uri, hashlib.sha256(data).digest(), len(data))

    async def download(self, ref: MediaRef) -> bytes:
        """Fetch a referenced payload; :class:`MediaError` unless size and SHA-256 match."""
        server, media_id = ref.url[len("mxc://"):].split("/", 1)
        path = f"{quote(server, safe='')}/{quote(media_id, safe='')}"
        data = await self._get(f"{self.homeserver}/_matrix/client/v1/media/download/{path}",
                               ref.size)
        if len(data) != ref.size or not hmac.compare_digest(hashlib.sha256(data).digest(),
                                                            ref.sha256):
            raise MediaError("downloaded payload does not match its SHA-256 reference")
        self.downloads += 1
        return data

    async def fetch(self, mxc: str, limit: int) -> bytes:
        """A file a Matrix user shared (``m.file``, ``m.image``...: any server's
        ``mxc://``, through this homeserver's authenticated media API), of unknown
        hash: a ``Content-Length`` over ``limit`` refused before the body is read, the
        stream cut past it (:class:`RequestTooLarge` for both). The caller checks the
        size the event declares first."""
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        if not mxc.startswith("mxc://") or not server or not media_id or "/" in media_id:
            raise MediaError("not an mxc:// URI")
        path = f"{quote(server, safe='')}/{quote(media_id, safe='')}"
        data = await self._get(f"{self.homeserver}/_matrix/client/v1/media/download/{path}",
                               limit, RequestTooLarge)
        self.downloads += 1
        return data

    async def upload_limit(self) -> int:
        """The homeserver's ``m.upload.size`` (``/media/config``); 0 when it says none."""
        url = f"{self.homeserver}/_matrix/client/v1/media/config"
        try:
            async with self._http().get(url, headers=self._auth()) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise MediaError(f"media config unavailable: {type(exc).__name__}") from exc
        size = body.get("m.upload.size") if isinstance(body, dict) else None
        return size if type(size) is int and size > 0 else 0

    async def _get(self, url: str, size: int,
                   too_large: type[MatrixTransportError] = MediaError) -> bytes:
        try:
            async with self._http().get(url, headers=self._auth()) as resp:
                if resp.status != 200:
                    raise MediaError(f"download refused: HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > size:
                    raise too_large(f"the payload is larger than {size} bytes")
                chunks: list[bytes] = []
                received = 0
                async for chunk in resp.content.iter_chunked(65536):
                    chunks.append(chunk)
                    received += len(chunk)
                    if received > size:
                        raise too_large(f"the payload is larger than {size} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaError(f"download failed: {exc}") from exc
        return b"".join(chunks)

    async def read_blob(self, value: object) -> bytes:
        """The :data:`~transports.matrix.events.BlobReader`: inline base64 or a reference."""
        if isinstance(value, str):
            return b64decode(value)
        if isinstance(value, Mapping):
            return await self.download(MediaRef.from_json(value))
        raise MalformedEvent("a payload must be base64 or a media reference")


def encrypt_attachment(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """A file for an encrypted room: (ciphertext, the ``EncryptedFile`` fields but
    ``url``) -- AES-256-CTR under a fresh key, the SHA-256 of the ciphertext, ``v2``
    (the client-server API's "Sending encrypted attachments"; nio's helper)."""
    return nio_attachments.encrypt_attachment(data)


def decrypt_attachment(ciphertext: bytes, file: Mapping[str, Any]) -> bytes:
    """The plaintext of an ``EncryptedFile`` (client-server API, "Sending encrypted
    attachments"): version ``v2``, an ``A256CTR`` JSON Web Key, its IV, and the
    ciphertext's SHA-256 checked before decryption; :class:`MediaError` on any
    deviation (never naming the key)."""
    key, hashes, iv = file.get("key"), file.get("hashes"), file.get("iv")
    if file.get("v") != "v2" or not isinstance(key, Mapping) \
            or key.get("alg") != "A256CTR" or not isinstance(key.get("k"), str) \
            or not isinstance(hashes, Mapping) or not isinstance(hashes.get("sha256"), str) \
            or not isinstance(iv, str):
        raise MalformedEvent("not a v2 EncryptedFile with an A256CTR key and a SHA-256")
    try:
        return bytes(nio_attachments.decrypt_attachment(ciphertext, key["k"],
                                                        hashes["sha256"], iv))
    except (EncryptionError, ValueError, UnicodeError) as exc:
        raise MediaError(f"encrypted attachment refused: {type(exc).__name__}"
                         + (" (hash mismatch)" if "SHA-256" in str(exc) else "")) from None


def _blob_slots(node: Any, found: list[tuple[Any, Any, bytes]]) -> None:
    """Every ``bytes`` leaf of ``node`` as (container, key, value)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, bytes):
            found.append((node, key, value))
        elif isinstance(value, dict | list):
            _blob_slots(value, found)


def _inline_size(content: Content, slots: list[tuple[Any, Any, bytes]]) -> int:
    """The JSON size with every remaining bytes leaf inlined as base64."""
    skeleton = json.dumps(content, default=lambda _b: "", separators=(",", ":"))
    return len(skeleton) + sum((len(value) * 4 + 2) // 3 for _c, _k, value in slots)


async def pack(content: Content, upload: Uploader | None,
               budget: int = ns.INLINE_BUDGET) -> Content:
    """Replace ``bytes`` leaves (in place) by base64, moving the largest to media if needed.

    Without an uploader, content over the budget raises :class:`MediaError`.
    """
    slots: list[tuple[Any, Any, bytes]] = []
    _blob_slots(content, slots)
    slots.sort(key=lambda slot: len(slot[2]), reverse=True)
    while slots and _inline_size(content, slots) > budget:
        if upload is None:
            raise MediaError("content exceeds the event size budget and no media upload")
        container, key, value = slots.pop(0)
        container[key] = (await upload(value)).to_json()
    if _inline_size(content, slots) > budget:
        raise MediaError("content exceeds the event size budget even without payloads")
    for container, key, value in slots:
        container[key] = b64encode(value)
    return content


class MediaFetcher:
    """:class:`transports.interface.MediaSource` for the hub: media of the bridge's own
    homeserver (``mxc://<server_name>/...``), downloaded with the hub account's token
    (the authenticated media API) for a member of another network, who cannot log in
    here. Only the bytes are returned; nothing is stored. The size is bounded before
    the download starts (by the caller, against the hub's limit) and the stream is cut
    past it; the SHA-256 is checked (:meth:`MediaRepository.download`)."""

    def __init__(self, media: MediaRepository, server_name: str) -> None:
        self.media = media
        self.server_name = server_name

    def owns(self, url: str) -> bool:
        server, _, media_id = url.removeprefix("mxc://").partition("/")
        return (url.startswith("mxc://") and server == self.server_name and bool(media_id)
                and "/" not in media_id)

    async def fetch(self, url: str, size: int, sha256: bytes) -> bytes:
        if not self.owns(url) or not 0 <= size <= MAX_MEDIA_SIZE:
            raise MediaError("not media of this homeserver, or too large")
        return await self.media.download(MediaRef(url, sha256, size))
