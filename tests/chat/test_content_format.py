"""The content format's extensions (reactions, retractions, encrypted files): Hypothesis
round trips, strict decoding, old messages still decodable, keys kept out of repr."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ContentError
from bridge.member.content import Attachment, Content, ExternalPart

MID = bytes(range(16))
OTHER = bytes(range(16, 32))

ids = st.binary(min_size=16, max_size=64)
digests = st.binary(min_size=32, max_size=32)
names = st.text(min_size=1, max_size=40).filter(
    lambda n: n not in (".", "..") and not set(n) & set("/\\\0"))
media = st.from_regex(r"\A[a-z]{1,10}/[a-z0-9.+-]{1,20}\Z")
parts = st.builds(ExternalPart, st.text(min_size=1, max_size=80), digests,
                  st.integers(0, 1 << 40), media, st.binary(min_size=32, max_size=32),
                  st.binary(min_size=12, max_size=12), digests, names)
attachments = st.builds(Attachment, st.text(min_size=1, max_size=80), digests,
                        st.integers(0, 1 << 40), media)


@st.composite
def contents(draw: st.DrawFn) -> Content:
    message_id = draw(ids)
    if draw(st.booleans()):  # a reaction
        return Content(message_id, reply_to=draw(ids),
                       reaction=draw(st.text(min_size=1, max_size=32)))
    return Content(message_id, draw(st.none() | st.text(max_size=200)),
                   draw(st.none() | ids), draw(st.none() | ids),
                   draw(st.none() | attachments), None, draw(st.none() | parts))


@given(contents())
def test_every_content_round_trips(content: Content) -> None:
    data = content.encode()
    assert Content.decode(data) == content
    assert Content.decode(data).encode() == data


@given(contents(), st.binary(min_size=1, max_size=4))
def test_trailing_bytes_are_rejected(content: Content, junk: bytes) -> None:
    with pytest.raises(ContentError):
        Content.decode(content.encode() + junk)


def test_a_message_of_the_old_format_still_decodes() -> None:
    old = cbor2.dumps({0: MID, 1: "hi", 4: {0: "https://x.example/f", 1: b"\1" * 32,
                                           2: 3, 3: "text/plain"}}, canonical=True)
    content = Content.decode(old)
    assert content.body == "hi" and content.attachment is not None and content.file is None


def test_retraction_is_a_replacement_without_content() -> None:
    assert Content(MID, replaces=OTHER).retracts == OTHER
    assert Content(MID, "", replaces=OTHER).retracts == OTHER
    assert Content(MID, "edited", replaces=OTHER).retracts is None
    assert Content(MID, "plain").retracts is None


def _part(**changes: object) -> dict[int, object]:
    value: dict[int, object] = {0: "https://u.example/x", 1: b"\2" * 32, 2: 10,
                                3: "image/png", 4: b"\3" * 32, 5: b"\4" * 12, 6: b"\5" * 32,
                                7: "cat.png", 8: 2}
    value.update({int(k.removeprefix("f")): v for k, v in changes.items()})
    return value


@pytest.mark.parametrize("value", [
    {0: MID, 5: "👍"},  # a reaction to nothing
    {0: MID, 1: "text", 2: OTHER, 5: "👍"},  # a reaction with a body
    {0: MID, 2: OTHER, 5: ""},  # an empty reaction
    {0: MID, 2: OTHER, 5: "x" * 33},  # too long
    {0: MID, 6: _part(f4=b"\3" * 31)},  # short key
    {0: MID, 6: _part(f5=b"\4" * 16)},  # wrong nonce size
    {0: MID, 6: _part(f8=1)},  # another AEAD
    {0: MID, 6: _part(f7="../etc/passwd")},  # a path for a name
    {0: MID, 6: _part(f7="..")},
    {0: MID, 6: _part(f6=b"\5" * 31)},
    {0: MID, 6: {k: v for k, v in _part().items() if k != 6}},  # a field missing
    {0: MID, 6: {**_part(), 9: 1}},  # an unknown file field
    {0: MID, 7: 1},  # an unknown content field
])
def test_ill_formed_extensions_are_rejected(value: dict[int, object]) -> None:
    with pytest.raises(ContentError):
        Content.decode(cbor2.dumps(value, canonical=True))


def test_repr_hides_key_nonce_url_and_name() -> None:
    part = ExternalPart("https://u.example/secret-url", b"\2" * 32, 10, "image/png",
                        b"K" * 32, b"N" * 12, b"\5" * 32, "secret-name.png")
    text = repr(Content(MID, file=part))
    for hidden in ("secret-url", "secret-name", repr(b"K" * 32), repr(b"N" * 12)):
        assert hidden not in text
