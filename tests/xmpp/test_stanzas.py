"""The binding's XML codec: round trips, strict base64, upload references, page fitting."""

from __future__ import annotations

import dataclasses
import hashlib
from xml.etree import ElementTree as ET

import pytest

from transports.interface import Inbound, KeyPackageListing, Kind, Op, Outbound
from transports.xmpp.errors import WireError
from transports.xmpp.namespace import NS
from transports.xmpp.stanzas import (
    UploadRef,
    collect_refs,
    decode_delivery,
    decode_reply,
    decode_request,
    encode_delivery,
    encode_reply,
    encode_request,
)
from transports.xmpp.upload import fit_entries


def test_request_round_trip_ignores_claimed_sender() -> None:
    request = Inbound(op=Op.SUBMIT_COMMIT.value, sender="xmpp:mallory@example",
                      request_id="r1", group_id=bytes(range(32)), payload=b"\x00commit",
                      welcome=b"welcome", group_info=b"info", ratchet_tree=b"tree",
                      cipher_suite=3, after_seq=7, limit=9, last_resort=True)
    element = ET.fromstring(ET.tostring(encode_request(request)))
    assert "mallory" not in ET.tostring(element).decode()
    decoded = decode_request(element, "xmpp:alice@example")
    assert decoded == dataclasses.replace(request, sender="xmpp:alice@example")
    report = Inbound(op=Op.REPORT.value, sender="", request_id="r2", group_id=b"g",
                     seq=17, reason="membership-tag")
    element = ET.fromstring(ET.tostring(encode_request(report)))
    assert element.get("seq") == "17" and element.get("reason") == "membership-tag"
    assert decode_request(element, "xmpp:bob@example") == dataclasses.replace(
        report, sender="xmpp:bob@example")


def test_reply_and_delivery_round_trip() -> None:
    entry = Outbound(Kind.COMMIT.value, group_id=b"g", seq=4, epoch=2,
                     sender="xmpp:a@example", payload=b"c")
    reply = Outbound(Kind.REPLY.value, request_id="r2", group_id=b"g", seq=5, epoch=3,
                     payload=b"p", ratchet_tree=b"t", rooms=(("xmpp", "r@mls.example"),),
                     entries=(entry,), key_packages=(KeyPackageListing(
                         b"ref", "xmpp:b@example", "phone", 1, 1700000000, True),))
    assert decode_reply(ET.fromstring(ET.tostring(encode_reply(reply)))) == reply
    welcome = Outbound(Kind.WELCOME.value, group_id=b"g", seq=4, epoch=3,
                       payload=b"w", ratchet_tree=b"t")
    assert decode_delivery(encode_delivery(welcome)) == welcome


def test_bad_base64_and_bad_numbers_are_wire_errors() -> None:
    bad = ET.fromstring(f"<send xmlns='{NS}' group='***'/>")
    with pytest.raises(WireError, match="group"):
        decode_request(bad, "xmpp:a@example")
    bad = ET.fromstring(f"<fetch-log xmlns='{NS}' after='-1'/>")
    with pytest.raises(WireError, match="after"):
        decode_request(bad, "xmpp:a@example")
    with pytest.raises(WireError, match="unknown request"):
        decode_request(ET.fromstring(f"<explode xmlns='{NS}'/>"), "xmpp:a@example")


def test_upload_reference_is_resolved_through_the_callback() -> None:
    data = b"large" * 100
    ref = UploadRef("http://127.0.0.1:1/f", hashlib.sha256(data).hexdigest(), len(data))
    request = Inbound(op=Op.SEND.value, sender="", payload=data)
    element = encode_request(request, lambda blob: ref)
    assert collect_refs(element) == [ref]
    decoded = decode_request(element, "xmpp:a@example", lambda v: data)
    assert decoded.payload == data
    with pytest.raises(WireError, match="upload reference"):
        decode_request(element, "xmpp:a@example")


def test_log_pages_are_trimmed_to_the_stanza_limit() -> None:
    entries = tuple(Outbound(Kind.APPLICATION.value, seq=n, payload=bytes(3000))
                    for n in range(1, 101))
    page = Outbound(Kind.REPLY.value, entries=entries)
    fitted = fit_entries(page, 64 * 1024)
    assert 0 < len(fitted.entries) < 100
    assert fitted.entries == entries[:len(fitted.entries)]
    assert fit_entries(page, 10 * 1024 * 1024) is page
    one = Outbound(Kind.REPLY.value, entries=(Outbound("application", seq=1,
                                                       payload=bytes(100_000)),))
    assert fit_entries(one, 1024) is one  # a single entry is kept (then uploaded)


def test_entries_inside_entries_are_refused_not_recursed() -> None:
    """A log page's entries hold no entries: a deeply nested reply (found by
    ``python -m fuzz.run --family xmpp-stanza``: a RecursionError before) is a
    WireError, whatever its depth."""
    entry = Outbound(Kind.COMMIT, (), group_id=b"g" * 8, seq=4, epoch=2, payload=b"x")
    page = Outbound("reply", (), group_id=b"g" * 8, entries=(entry,))
    assert decode_reply(encode_reply(page)).entries == (entry,)
    el = encode_reply(page)
    inner = el.find(f"{{{NS}}}entry")
    assert inner is not None
    for _ in range(2000):
        inner = ET.SubElement(inner, f"{{{NS}}}entry", {"kind": "commit"})
    with pytest.raises(WireError, match="inside an <entry/>"):
        decode_reply(el)
