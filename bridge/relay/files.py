"""Files in relayed rooms, both ways, through the group's end-to-end encrypted
attachment format (:mod:`bridge.member.attachments`, content's ``file``:
:class:`bridge.member.ExternalPart`).

In from a legacy user (:meth:`Files.content`):

* XMPP: a file shared the way Conversations, Gajim and Dino do -- an XEP-0363 upload,
  then a groupchat message whose body is the URL with an XEP-0066 ``<x
  xmlns='jabber:x:oob'><url/></x>`` -- or by XEP-0447 stateless file sharing with an
  ``<url-data/>`` source (:mod:`transports.xmpp.markup`). The relay GETs it only from
  the hosts the component's XEP-0363 client allows
  (:meth:`transports.xmpp.upload.Uploader.fetch`: ``upload_hosts``, loopback by
  default; anything else is refused before any request, and redirects are not
  followed). A SHA-256 that XEP-0447 declares must match.
* Matrix: an ``m.image`` / ``m.file`` / ``m.video`` / ``m.audio`` with an ``mxc://``
  ``url`` (a plain room), or with ``file``, an ``EncryptedFile`` (a Megolm room:
  AES-256-CTR, its ciphertext's SHA-256 checked before decryption:
  :func:`transports.matrix.media.decrypt_attachment`), downloaded through the bot's
  homeserver (:meth:`transports.matrix.media.MediaRepository.fetch`).

The size a message declares (XEP-0447 ``<size/>``, Matrix ``info.size``) is checked
against the limit before anything is fetched, then ``Content-Length`` before the body
is read, and the download stops past the limit. The file then goes into the group as
the legacy user's puppet: a fresh key, the ciphertext uploaded to the **Matrix media
repository through the bot** -- readable by Matrix members with their own login and by
XMPP members through the hub's ``fetch-media`` (rule A23), and always there, while an
XMPP server need not offer XEP-0363 at all.

Out to the other network's legacy users, for a legacy user's file and an MLS member's
alike (:meth:`Files.matrix_event`, :meth:`Files.xmpp_url`): the relay is a member and
holds the key, so it fetches and opens the :class:`~bridge.member.ExternalPart`
(:func:`bridge.member.fetch_file`: size, hashes, tag), then

* Matrix: uploads the plaintext to the media repository and posts ``m.image`` (an
  ``image/*`` file), ``m.video``, ``m.audio`` or ``m.file`` with ``url`` and ``info``;
  in a Megolm room it uploads the file encrypted as an ``EncryptedFile``
  (:func:`transports.matrix.media.encrypt_attachment`) and the event carries ``file``;
* XMPP: uploads the plaintext by XEP-0363 through the component and sends the URL as
  the body with XEP-0066 OOB (what every client shows as a file). Relayed rooms are
  not end to end (their notice says so); the URL is a capability to the plaintext. The
  other XMPP occupants get an XMPP user's own URL again (remembered, bounded).

Limit: ``limit`` (``[bridge.relay] file_limit``); 0 (the default) is the smaller of
the servers' own limits (the XEP-0363 service's ``max-file-size``, the homeserver's
``m.upload.size``), less the 16 bytes of the AEAD tag. A file over it is never
truncated: a text notice takes its place (into the group when a legacy user sent it;
into the rooms when a member did). Any other failure (a refused host, a failed
download, a hash mismatch) is logged by kind -- never the URL, a key or the bytes --
and nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import mimetypes
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.errors import BridgeError, FileError
from bridge.member import Content, ExternalPart, fetch_file, new_message_id, send_file
from bridge.member.attachments import TAG_SIZE
from transports.errors import TransportError
from transports.matrix.bot import MatrixHubBot
from transports.matrix.errors import RequestTooLarge as MatrixTooLarge
from transports.matrix.media import MediaRef, decrypt_attachment, encrypt_attachment
from transports.xmpp.component import MLSComponent
from transports.xmpp.errors import RequestTooLarge as XmppTooLarge
from transports.xmpp.stanzas import UploadRef

log = logging.getLogger(__name__)

FALLBACK_LIMIT = 16 * 1024 * 1024  # neither server says its limit
SHARED_KEPT = 1024  # XMPP users' own file URLs remembered for the other occupants
MSGTYPES = {"image": "m.image", "video": "m.video", "audio": "m.audio"}
FILE_MSGTYPES = frozenset({"m.image", "m.video", "m.audio", "m.file"})
OCTET_STREAM = "application/octet-stream"
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}"  # RFC 6838 §4.2 restricted-name
MEDIA_TYPE = re.compile(f"{_TOKEN}/{_TOKEN}")


@dataclass(frozen=True, slots=True)
class LegacyFile:
    """A file a legacy user shared, as its network described it (never logged)."""

    url: str = field(repr=False)
    name: str = field(default="file", repr=False)
    media_type: str = OCTET_STREAM
    size: int = 0  # declared; 0: not said
    sha256: bytes | None = None  # of the plaintext, declared (XEP-0447)
    encrypted: Mapping[str, Any] | None = field(default=None, repr=False)  # EncryptedFile


def legacy_file(url: str, name: str = "", media_type: str = "", size: int = 0,
                sha256: bytes | None = None,
                encrypted: Mapping[str, Any] | None = None) -> LegacyFile:
    """A :class:`LegacyFile` with a usable name (one the content format accepts and
    the other network can show: printable, no path separators, at most 255 characters;
    else the URL's last segment, else ``file``) and a media type (given, else guessed
    from the name)."""
    try:
        last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    except ValueError:  # a malformed URL: its fetch is refused later
        last = ""
    usable = next((c for c in (name.strip(), last) if c and len(c) <= 255 and c.isprintable()
                   and c not in (".", "..") and not set(c) & set("/\\")), "file")
    kind = clean_media_type(media_type or mimetypes.guess_type(usable)[0] or "")
    return LegacyFile(url, usable, kind, max(size, 0), sha256, encrypted)


def clean_media_type(value: str) -> str:
    """``value`` if it is a plain ``type/subtype`` (no parameters, nothing a header or
    an event should not carry), else ``application/octet-stream``."""
    return value.lower() if MEDIA_TYPE.fullmatch(value) else OCTET_STREAM


def too_large_notice(name: str, size: int, limit: int) -> str:
    """The text that takes the place of a file over the limit."""
    said = f"{name}, {_human(size)}," if size else f"{name},"
    return f"[a file, {said} was not relayed: it is over the bridge's limit of {_human(limit)}]"


def _human(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


class Files:
    """Files between the legacy users and the group (see the module docstring)."""

    def __init__(self, limit: int = 0) -> None:
        self.configured = limit  # 0: the smaller server limit
        self.component: MLSComponent | None = None
        self.bot: MatrixHubBot | None = None
        self._limit = 0
        self._shared: OrderedDict[bytes, str] = OrderedDict()  # message id -> HTTP URL
        self._opened: tuple[bytes, bytes] | None = None  # the last file opened, for the
        # other network (re-emits run one at a time): (ciphertext SHA-256, bytes)
        self.carried = self.failed = self.refused = 0  # counted, never logged by name

    async def limit(self) -> int:
        """The largest file relayed, in bytes (see the module docstring)."""
        if self.configured:
            return self.configured
        if not self._limit:
            limits = [await self._server_limit(self.component), await self._server_limit(self.bot)]
            known = [size for size in limits if size > 0]
            self._limit = min(known) - TAG_SIZE if known else FALLBACK_LIMIT
        return self._limit

    @staticmethod
    async def _server_limit(server: MLSComponent | MatrixHubBot | None) -> int:
        """A server's upload limit (0: none said, or not known now)."""
        try:
            if isinstance(server, MLSComponent):
                service = await server.uploader.service()
                return service.max_size if service is not None else 0
            return await server.media.upload_limit() if server is not None else 0
        except TransportError:
            return 0

    # -- in: a legacy user's file into the group ----------------------------------------

    async def content(self, network: str, file: LegacyFile) -> Content | None:
        """What to send into the group for ``file``: the file as an
        :class:`~bridge.member.ExternalPart`, a notice in its place when it is over the
        limit, None when it could not be carried (logged)."""
        limit = await self.limit()
        if file.size > limit:
            return self._over(file.name, file.size, limit)
        try:
            data = await self._download(network, file, limit)
            if len(data) > limit:
                return self._over(file.name, len(data), limit)
            if file.sha256 is not None and not hmac.compare_digest(
                    hashlib.sha256(data).digest(), file.sha256):
                raise FileError("the file does not match its declared SHA-256")
            part = await send_file(data, name=file.name, media_type=file.media_type,
                                   upload=self._store_ciphertext, limit=limit + TAG_SIZE)
        except (MatrixTooLarge, XmppTooLarge):
            return self._over(file.name, file.size, limit)
        except (BridgeError, TransportError) as exc:
            self.failed += 1
            log.warning("relay: a file from %s was not relayed: %s", network,
                        type(exc).__name__)
            return None
        self.carried += 1
        content = Content(new_message_id(), file=part)
        if network == "xmpp":  # the room's other XMPP users get the sender's own URL
            self.shared(content.message_id, file.url)
        return content

    def shared(self, message_id: bytes, url: str) -> None:
        """An XMPP user's own HTTP URL of the file sent as ``message_id`` (shown again to
        the room's other XMPP users)."""
        self._shared[message_id] = url
        while len(self._shared) > SHARED_KEPT:
            self._shared.popitem(last=False)

    def _over(self, name: str, size: int, limit: int) -> Content:
        self.refused += 1
        log.info("relay: a file over the limit became a notice")
        return Content(new_message_id(), too_large_notice(name, size, limit))

    async def _download(self, network: str, file: LegacyFile, limit: int) -> bytes:
        if network == "xmpp":
            if self.component is None:
                raise FileError("no XMPP component")
            return await self.component.uploader.fetch(file.url, limit)
        if self.bot is None:
            raise FileError("no Matrix bot")
        data = await self.bot.media.fetch(file.url, limit)
        return data if file.encrypted is None else decrypt_attachment(data, file.encrypted)

    async def _store_ciphertext(self, ciphertext: bytes) -> str:
        """Where the group's members fetch a relayed file's ciphertext from."""
        if self.bot is not None:
            return (await self.bot.media.upload(ciphertext)).url
        if self.component is not None:
            return (await self.component.uploader.upload(ciphertext)).url
        raise FileError("nowhere to store the file")

    # -- out: a file of the group to the legacy users ------------------------------------

    async def _open(self, part: ExternalPart) -> bytes | str:
        """The file's bytes, or the notice that takes its place (over the limit);
        :class:`FileError` / :class:`TransportError` when it cannot be had."""
        limit = await self.limit()
        if part.size > limit:
            self.refused += 1
            return too_large_notice(part.name, part.size, limit)
        if self._opened is not None and self._opened[0] == part.sha256:
            return self._opened[1]  # shown on the other network a moment ago
        data = await fetch_file(part, download=self._fetch_ciphertext, limit=limit)
        self._opened = (part.sha256, data)
        return data

    async def _fetch_ciphertext(self, url: str, size: int, sha256: bytes) -> bytes:
        if url.startswith("mxc://"):
            if self.bot is None:
                raise FileError("no Matrix bot")
            return await self.bot.media.download(MediaRef(url, sha256, size))
        if self.component is None:
            raise FileError("no XMPP component")
        return await self.component.uploader.download(UploadRef(url, sha256.hex(), size))

    async def matrix_event(self, room: str, part: ExternalPart, caption: str
                           ) -> dict[str, Any] | None:
        """The ``m.room.message`` content showing ``part`` to Matrix users of ``room``
        (``caption``: the body, e.g. ``<sender> name``; the file name is ``filename``),
        a notice in its place, or None (logged)."""
        assert self.bot is not None
        try:
            opened = await self._open(part)
            if isinstance(opened, str):
                return {"msgtype": "m.notice", "body": opened}
            kind = clean_media_type(part.media_type)
            event: dict[str, Any] = {
                "msgtype": MSGTYPES.get(kind.split("/", 1)[0], "m.file"),
                "body": caption or part.name, "filename": part.name,
                "info": {"mimetype": kind, "size": len(opened)}}
            megolm = self.bot.megolm
            if megolm is not None and megolm.encrypted(room):
                ciphertext, keys = encrypt_attachment(opened)
                ref = await self.bot.media.upload(ciphertext, name=part.name)
                event["file"] = {**keys, "url": ref.url}
            else:
                ref = await self.bot.media.upload(opened, name=part.name, content_type=kind)
                event["url"] = ref.url
        except (BridgeError, TransportError) as exc:
            self._not_shown("Matrix", exc)
            return None
        self.carried += 1
        return event

    async def xmpp_url(self, message_id: bytes, part: ExternalPart) -> tuple[str, bool] | None:
        """(an HTTP URL of the plaintext for the XMPP users, True) -- an XMPP user's own,
        or an XEP-0363 upload -- or (the notice in its place, False), or None (logged)."""
        own = self._shared.get(message_id)
        if own is not None:
            return own, True
        if self.component is None:
            return None
        try:
            opened = await self._open(part)
            if isinstance(opened, str):
                return opened, False
            ref = await self.component.uploader.upload(
                opened, name=part.name, content_type=clean_media_type(part.media_type))
        except (BridgeError, TransportError) as exc:
            self._not_shown("XMPP", exc)
            return None
        self.shared(message_id, ref.url)
        self.carried += 1
        return ref.url, True

    def _not_shown(self, network: str, exc: Exception) -> None:
        self.failed += 1
        log.warning("relay: a file was not shown on %s: %s", network, type(exc).__name__)


__all__ = ["FILE_MSGTYPES", "Files", "LegacyFile", "clean_media_type", "legacy_file",
           "too_large_notice"]
