"""XEP-0363 HTTP File Upload for payloads over the stanza limit.

A payload too large for one stanza is PUT to the server's upload service and the stanza
carries ``<payload url='...' sha256='HEX' size='N'/>`` instead of base64 text. The
receiver GETs it, streamed with a hard cap at the declared size, and checks its
SHA-256 before using it; the hub first checks the sizes a request declares against its
limit, before fetching anything (:func:`resolver`). Only hosts in
``allowed_hosts`` are ever contacted (loopback by default), so a peer cannot make the
hub or a member fetch arbitrary URLs. Without an upload service the payload is refused
(:class:`PayloadTooLarge`), never truncated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import aiohttp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq

from transports.interface import Outbound
from transports.xmpp.errors import (
    PayloadTooLarge,
    RequestTooLarge,
    UploadError,
    XmppTransportError,
)
from transports.xmpp.namespace import NS_UPLOAD
from transports.xmpp.stanzas import (
    BytesValue,
    Place,
    Resolve,
    UploadRef,
    blobs_of,
    collect_refs,
    declared_size,
    inline,
    no_refs,
)

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
CONTENT_TYPE = "application/octet-stream"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


@dataclass(frozen=True, slots=True)
class UploadService:
    """A discovered XEP-0363 service and its advertised size limit (0: none given)."""

    jid: str
    max_size: int


class Uploader:
    """Uploads and downloads payloads for one slixmpp stream (client or component)."""

    def __init__(
        self,
        xmpp: Any,
        *,
        domain: str,
        allowed_hosts: frozenset[str] = LOOPBACK_HOSTS,
        max_download: int = 16 * 1024 * 1024,
        timeout: float = 20.0,
        enabled: bool = True,
    ) -> None:
        self._xmpp = xmpp
        self._domain = domain
        self._allowed_hosts = allowed_hosts
        self._max_download = max_download
        self._timeout = timeout
        self._enabled = enabled
        self._service: UploadService | None = None
        self._discovered = False
        self._known: OrderedDict[str, UploadRef] = OrderedDict()  # sha256 -> ref

    def forget_service(self) -> None:
        """Discover again on next use (after a reconnect)."""
        self._discovered = False
        self._service = None

    async def service(self) -> UploadService | None:
        """The server's upload service (disco#items of the domain), cached."""
        if not self._enabled:
            return None
        if not self._discovered:
            self._service = await self._discover()
            self._discovered = True
        return self._service

    async def _discover(self) -> UploadService | None:
        disco = self._xmpp.plugin["xep_0030"]
        try:
            items = await disco.get_items(jid=self._domain, timeout=self._timeout)
        except (IqError, IqTimeout) as exc:
            log.info("no disco#items from %s: %s", self._domain, exc)
            return None
        candidates = [self._domain] + [str(item[0]) for item in items["disco_items"]["items"]]
        own = self._xmpp.boundjid.bare  # a component is among its server's items
        for candidate in candidates:
            if candidate == own:  # (slixmpp answers its own disco locally, not as an Iq)
                continue
            try:
                info = await disco.get_info(jid=candidate, timeout=self._timeout)
            except (IqError, IqTimeout):
                continue
            features = {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
            if NS_UPLOAD in features:
                return UploadService(jid=candidate, max_size=_max_size(info.xml))
        return None

    def remember(self, data_sha256: str, ref: UploadRef) -> None:
        """Record where a payload already is (so fan-out can reuse the sender's upload)."""
        self._known[data_sha256] = ref
        self._known.move_to_end(data_sha256)
        while len(self._known) > 1024:
            self._known.popitem(last=False)

    async def upload(self, data: bytes, *, name: str = "",
                     content_type: str = CONTENT_TYPE) -> UploadRef:
        """PUT ``data`` through a slot; reuse a known upload of the same bytes. ``name``
        and ``content_type``: a file's, for a plain file shared with XMPP users (the
        default: a random ``mls-*.bin`` of ``application/octet-stream``)."""
        digest = hashlib.sha256(data).hexdigest()
        if (known := self._known.get(digest)) is not None:
            return known
        service = await self.service()
        if service is None:
            raise PayloadTooLarge(
                f"payload of {len(data)} bytes exceeds the stanza limit and "
                f"{self._domain} offers no XEP-0363 upload service"
            )
        if service.max_size and len(data) > service.max_size:
            raise PayloadTooLarge(
                f"payload of {len(data)} bytes exceeds the upload limit of "
                f"{service.max_size} bytes of {service.jid}"
            )
        put_url, headers, get_url = await self._request_slot(
            service, len(data), name or f"mls-{secrets.token_hex(8)}.bin", content_type)
        self._check_url(put_url)
        self._check_url(get_url)
        await self._http_put(put_url, data, headers, content_type)
        ref = UploadRef(url=get_url, sha256=digest, size=len(data))
        self.remember(digest, ref)
        return ref

    async def _request_slot(
        self, service: UploadService, size: int, name: str, content_type: str
    ) -> tuple[str, dict[str, str], str]:
        iq: Iq = self._xmpp.Iq()
        iq["type"] = "get"
        iq["to"] = JID(service.jid)
        ET.SubElement(iq.xml, f"{{{NS_UPLOAD}}}request", {
            "filename": name,
            "size": str(size),
            "content-type": content_type,
        })
        try:
            result = await iq.send(timeout=self._timeout)  # type: ignore[no-untyped-call]
        except IqError as exc:
            raise UploadError(f"upload slot refused by {service.jid}: "
                              f"{exc.iq['error']['condition']}") from exc
        except IqTimeout as exc:
            raise UploadError(f"no upload slot from {service.jid} (timeout)") from exc
        slot = result.xml.find(f"{{{NS_UPLOAD}}}slot")
        put = slot.find(f"{{{NS_UPLOAD}}}put") if slot is not None else None
        get = slot.find(f"{{{NS_UPLOAD}}}get") if slot is not None else None
        if put is None or get is None or not put.get("url") or not get.get("url"):
            raise UploadError(f"malformed upload slot from {service.jid}")
        headers = {
            h.get("name", ""): (h.text or "").strip()
            for h in put.findall(f"{{{NS_UPLOAD}}}header")
            if h.get("name") in ("Authorization", "Cookie", "Expires")
        }
        return put.get("url", ""), headers, get.get("url", "")

    def _check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket, a bad port
            raise UploadError("malformed URL") from None
        if parts.scheme not in ("http", "https") or host not in self._allowed_hosts:
            raise UploadError(f"upload URL host {host!r} is not allowed")

    async def _http_put(self, url: str, data: bytes, headers: dict[str, str],
                        content_type: str) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.put(
                url, data=data, headers={**headers, "Content-Type": content_type}
            ) as response:
                if response.status not in (200, 201):
                    raise UploadError(f"upload PUT failed: HTTP {response.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UploadError(f"upload PUT failed: {exc!r}") from exc

    async def download(self, ref: UploadRef) -> bytes:
        """GET ``ref`` and return its bytes after checking size and SHA-256."""
        self._check_url(ref.url)
        if ref.size > self._max_download:
            raise UploadError(f"referenced payload of {ref.size} bytes exceeds the limit")
        data = await self._get(ref.url, ref.size, UploadError)
        if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise UploadError("downloaded payload does not match its size and SHA-256")
        self.remember(ref.sha256, ref)
        return data

    async def fetch(self, url: str, limit: int) -> bytes:
        """GET a file someone shared by URL (XEP-0066, XEP-0447), of unknown hash: only
        from an allowed host (:class:`UploadError` before any request otherwise), a
        ``Content-Length`` over ``limit`` refused before the body is read, the stream
        cut past ``limit`` (:class:`RequestTooLarge` for both). The caller checks a
        size declared in the message first."""
        self._check_url(url)
        return await self._get(url, limit, RequestTooLarge)

    async def _get(self, url: str, cap: int,
                   too_large: type[XmppTransportError | UploadError]) -> bytes:
        """The body of ``url``, at most ``cap`` bytes (``too_large`` past it), redirects
        not followed (they could leave the allowed hosts); errors never name the URL,
        which may be a capability."""
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                url, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise UploadError(f"download failed: HTTP {response.status}")
                if response.content_length is not None and response.content_length > cap:
                    raise too_large(f"download is larger than {cap} bytes")
                chunks: list[bytes] = []
                received = 0
                async for chunk in response.content.iter_chunked(65536):
                    received += len(chunk)
                    if received > cap:
                        raise too_large(f"download is larger than {cap} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise UploadError(f"download failed: {type(exc).__name__}") from exc


def _max_size(info: ET.Element) -> int:
    """The ``max-file-size`` of the service's XEP-0128 form, 0 when absent."""
    for form_field in info.iter("{jabber:x:data}field"):
        if form_field.get("var") == "max-file-size":
            value = form_field.find("{jabber:x:data}value")
            if value is not None and (value.text or "").strip().isdigit():
                return int((value.text or "").strip())
    return 0


STANZA_OVERHEAD = 4096  # attributes, envelope, entries: generous margin per stanza


def encoded_size(blobs: list[bytes]) -> int:
    """Bytes the blobs take as base64 text plus :data:`STANZA_OVERHEAD`."""
    return STANZA_OVERHEAD + sum(4 * ((len(blob) + 2) // 3) for blob in blobs)


async def placements(uploader: Uploader | None, blobs: list[bytes], limit: int) -> Place:
    """A ``place`` callback that keeps the stanza under ``limit`` bytes.

    The largest blobs move to XEP-0363 until the rest fits; :class:`PayloadTooLarge`
    when that is needed and ``uploader`` is None or the server has no upload service.
    """
    total = encoded_size(blobs)
    if total <= limit:
        return inline
    chosen: dict[str, UploadRef] = {}
    for blob in sorted(blobs, key=len, reverse=True):
        if total <= limit:
            break
        if uploader is None:
            raise PayloadTooLarge(
                f"stanza of about {total} bytes exceeds the limit of {limit} bytes "
                "and uploads are disabled"
            )
        ref = await uploader.upload(blob)
        chosen[ref.sha256] = ref
        total -= encoded_size([blob]) - STANZA_OVERHEAD - 256
    smallest = min((ref.size for ref in chosen.values()), default=0)

    def place(data: bytes) -> BytesValue:
        if chosen and len(data) >= smallest:
            ref = chosen.get(hashlib.sha256(data).hexdigest())
            if ref is not None:
                return ref
        return data

    return place


async def resolver(uploader: Uploader | None, root: ET.Element, *,
                   max_size: int = 0) -> Resolve:
    """A ``resolve`` callback with every upload reference under ``root`` downloaded.
    With ``max_size`` (a request), :class:`RequestTooLarge` before anything is
    fetched if the sizes its payloads declare add up to more."""
    if max_size and (total := declared_size(root)) > max_size:
        raise RequestTooLarge(f"the request declares {total} bytes of payload; the limit "
                              f"is {max_size}")
    refs = collect_refs(root)
    if not refs:
        return no_refs
    if uploader is None:
        raise UploadError("stanza references an upload but uploads are disabled")
    fetched = {ref.url: await uploader.download(ref) for ref in refs}

    def resolve(value: BytesValue) -> bytes:
        return fetched[value.url] if isinstance(value, UploadRef) else value

    return resolve


def fit_entries(reply: Outbound, limit: int) -> Outbound:
    """A log page trimmed to what fits in one stanza (at least one entry is kept; the
    client fetches again from where the page ends)."""
    if len(reply.entries) <= 1 or encoded_size(list(blobs_of(reply))) <= limit:
        return reply
    total = encoded_size([reply.payload, reply.ratchet_tree])
    kept = 0
    for entry in reply.entries:
        total += encoded_size([entry.payload]) - STANZA_OVERHEAD + 256
        if total > limit and kept:
            break
        kept += 1
    return dataclasses.replace(reply, entries=reply.entries[:kept])
