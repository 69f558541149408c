"""What the relay takes for a shared file, without servers: an XMPP message's XEP-0066
OOB URL (when it is the whole body) or XEP-0447 file-sharing (name, type, size, a
SHA-256), a Matrix m.image/m.file with ``url`` or an ``EncryptedFile`` -- and what it
refuses: a link beside text, a non-HTTP URL, a malformed encrypted attachment, a
ciphertext whose hash does not match; media types and names that could not be sent
on are replaced."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

import pytest

from bridge.relay.files import OCTET_STREAM, clean_media_type, legacy_file, too_large_notice
from bridge.relay.mapping import from_matrix
from bridge.relay.observers import shared_file
from transports.matrix.errors import MalformedEvent, MediaError
from transports.matrix.media import decrypt_attachment, encrypt_attachment
from transports.xmpp.errors import UploadError
from transports.xmpp.markup import NS_FILE, NS_HASHES, NS_OOB, NS_SFS, NS_URL_DATA, parse
from transports.xmpp.upload import Uploader

URL = "https://upload.example.org/slot/abc/photo.jpg"


def message(body: str = "", oob: str = "", sharing: ET.Element | None = None) -> ET.Element:
    stanza = ET.Element("{jabber:client}message", {"type": "groupchat", "id": "m1"})
    if body:
        ET.SubElement(stanza, "{jabber:client}body").text = body
    if oob:
        x = ET.SubElement(stanza, f"{{{NS_OOB}}}x")
        ET.SubElement(x, f"{{{NS_OOB}}}url").text = oob
    if sharing is not None:
        stanza.append(sharing)
    return stanza


def file_sharing(url: str, name: str = "", size: str = "", media_type: str = "",
                 sha256: bytes | None = None) -> ET.Element:
    """XEP-0447 §3.1's shape: <file/> metadata (XEP-0446) and <sources/>."""
    sharing = ET.Element(f"{{{NS_SFS}}}file-sharing", {"disposition": "inline"})
    meta = ET.SubElement(sharing, f"{{{NS_FILE}}}file")
    for tag, text in (("name", name), ("size", size), ("media-type", media_type)):
        if text:
            ET.SubElement(meta, f"{{{NS_FILE}}}{tag}").text = text
    if sha256 is not None:
        ET.SubElement(meta, f"{{{NS_HASHES}}}hash", {"algo": "sha-256"}).text = \
            base64.b64encode(sha256).decode()
    sources = ET.SubElement(sharing, f"{{{NS_SFS}}}sources")
    ET.SubElement(sources, f"{{{NS_URL_DATA}}}url-data", {"target": url})
    return sharing


def test_an_oob_url_that_is_the_body_is_a_file() -> None:
    stanza = message(URL, URL)
    shared = shared_file(URL, parse(stanza))
    assert shared is not None
    assert (shared.url, shared.name, shared.media_type, shared.size) == (
        URL, "photo.jpg", "image/jpeg", 0)


def test_an_oob_url_beside_other_text_is_a_link() -> None:
    body = f"look at this {URL}"
    assert shared_file(body, parse(message(body, URL))) is None
    assert shared_file("", parse(message("", "ftp://example.org/x"))) is None


def test_xep_0447_metadata_and_source() -> None:
    digest = hashlib.sha256(b"data").digest()
    stanza = message(sharing=file_sharing(URL, "summit.jpg", "3032449", "image/jpeg",
                                          digest))
    markup = parse(stanza)
    assert markup.url == URL and markup.file is not None
    shared = shared_file("", markup)
    assert shared is not None
    assert (shared.name, shared.media_type, shared.size, shared.sha256) == (
        "summit.jpg", "image/jpeg", 3032449, digest)
    # a size that is not ASCII digits, a hash of the wrong length: not taken
    odd = parse(message(sharing=file_sharing(URL, "a.bin", "²", sha256=b"short")))
    assert odd.file is not None and (odd.file.size, odd.file.sha256) == (0, None)
    # no HTTP source: not a file at all
    assert parse(message(sharing=file_sharing("xmpp:someone@example.org"))).url == ""


def test_names_and_media_types_that_cannot_be_sent_on_are_replaced() -> None:
    assert legacy_file(URL, "../../etc/passwd").name == "photo.jpg"
    assert legacy_file("https://h.example/", "").name == "file"
    assert legacy_file("https://h.example/a%0Ab.txt", "x\ny").name == "file"
    assert legacy_file("http://[::1/x.png").name == "file"  # malformed: refused later
    assert legacy_file(URL, "a.txt", "text/plain\r\nX-Evil: 1").media_type == OCTET_STREAM
    assert clean_media_type("Image/PNG") == "image/png"
    assert clean_media_type("image/png; charset=x") == OCTET_STREAM


def test_matrix_file_messages() -> None:
    plain = from_matrix("$e1", "m.room.message", {
        "msgtype": "m.image", "body": "cat.png", "url": "mxc://example.org/abc",
        "info": {"mimetype": "image/png", "size": 1234}})
    assert plain is not None and plain.file is not None
    assert (plain.file.url, plain.file.name, plain.file.media_type, plain.file.size,
            plain.file.encrypted) == ("mxc://example.org/abc", "cat.png", "image/png",
                                      1234, None)
    assert plain.body == ""  # the file name is not relayed as text
    _, keys = encrypt_attachment(b"secret file")
    encrypted = from_matrix("$e2", "m.room.message", {
        "msgtype": "m.file", "body": "caption", "filename": "doc.pdf",
        "file": {**keys, "url": "mxc://example.org/def"}})
    assert encrypted is not None and encrypted.file is not None
    assert (encrypted.file.url, encrypted.file.name) == ("mxc://example.org/def", "doc.pdf")
    assert encrypted.file.encrypted is not None
    assert "mxc" not in repr(encrypted.file) and keys["key"]["k"] not in repr(encrypted)
    # no mxc:// URL: nothing
    assert from_matrix("$e3", "m.room.message", {"msgtype": "m.file", "body": "x",
                                                 "url": "https://example.org/x"}) is None


def test_encrypted_attachments_are_checked() -> None:
    ciphertext, keys = encrypt_attachment(b"the bytes")
    assert decrypt_attachment(ciphertext, keys) == b"the bytes"
    with pytest.raises(MediaError, match="hash mismatch"):
        decrypt_attachment(ciphertext + b"!", keys)
    with pytest.raises(MalformedEvent):
        decrypt_attachment(ciphertext, {**keys, "v": "v1"})
    with pytest.raises(MalformedEvent):
        decrypt_attachment(ciphertext, {**keys, "key": {**keys["key"], "alg": "A128CTR"}})


def test_the_notice_says_what_and_how_much() -> None:
    assert too_large_notice("big.iso", 50_000_000, 10_000_000) == (
        "[a file, big.iso, 50.0 MB, was not relayed: it is over the bridge's limit of "
        "10.0 MB]")
    assert too_large_notice("x.bin", 0, 500) == (
        "[a file, x.bin, was not relayed: it is over the bridge's limit of 500 bytes]")


async def test_malformed_or_foreign_urls_are_refused_before_any_request() -> None:
    uploader = Uploader(None, domain="example.org")  # no stream: nothing could be sent
    for url in ("http://[::1/x", "http://127.0.0.1:99999/x", "https://elsewhere.example/x",
                "file:///etc/passwd", "ftp://127.0.0.1/x"):
        with pytest.raises(UploadError) as refused:
            await uploader.fetch(url, 1000)
        assert "passwd" not in str(refused.value) and "/x" not in str(refused.value)
