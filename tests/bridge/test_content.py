"""The CBOR content format: round trips and strict decoding."""

from __future__ import annotations

import cbor2
import pytest

from bridge.errors import ContentError
from bridge.member.content import Attachment, Content

MID = bytes(range(16))
OTHER = bytes(range(16, 48))


def test_round_trip_every_field() -> None:
    attachment = Attachment("https://upload.example.org/a/b.png", b"\x01" * 32, 1234,
                            "image/png")
    content = Content(MID, "hello wörld", reply_to=OTHER, replaces=OTHER[:16],
                      attachment=attachment)
    assert Content.decode(content.encode()) == content
    minimal = Content(MID)
    assert Content.decode(minimal.encode()) == minimal


def test_repr_hides_text_and_url() -> None:
    content = Content(MID, "secret words",
                      attachment=Attachment("https://x.example/secret-path", b"\0" * 32, 1,
                                            "text/plain"))
    assert "secret" not in repr(content)


@pytest.mark.parametrize("value", [
    [MID],  # not a map
    {0: MID, 9: 1},  # unknown field
    {1: "no id"},  # missing id
    {0: b"short"},  # id too short
    {0: MID, 1: b"bytes, not text"},  # ill-typed body
    {0: MID, 2: "text reply_to"},
    {0: MID, 4: {0: "u", 1: b"\0" * 31, 2: 1, 3: "a/b"}},  # bad sha256 size
    {0: MID, 4: {0: "u", 1: b"\0" * 32, 2: -1, 3: "a/b"}},  # negative size
    {0: MID, 4: {0: "u", 1: b"\0" * 32, 2: 1}},  # missing media type
    {0: MID, 4: {0: "u", 1: b"\0" * 32, 2: True, 3: "a/b"}},  # bool is not a size
    {0: MID, 1: 1.5},
    {"0": MID},  # text key
])
def test_ill_formed_content_is_rejected(value: object) -> None:
    with pytest.raises(ContentError):
        Content.decode(cbor2.dumps(value, canonical=True))


@pytest.mark.parametrize("data", [
    b"",
    b"\xff",
    Content(MID, "x").encode() + b"\x00",  # trailing byte
    b"\xa2\x00\x50" + MID + b"\x00\x50" + OTHER[:16],  # duplicate key
    b"\xa2\x01\x61x\x00\x50" + MID,  # keys out of canonical order
    b"\xa1\x00\x58\x10" + MID,  # non-minimal length
    b"\xc1\x00",  # a tag
    b"\xbf\x00\x50" + MID + b"\xff",  # indefinite-length map
])
def test_non_canonical_or_garbage_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises(ContentError):
        Content.decode(data)
