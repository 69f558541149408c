"""The TLS-presentation codec of RFC 9420 §2.1 (mls/codec.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mls import codec
from mls.codec import MAX_VARINT, Reader, Writer
from mls.errors import DecodeError, UsageError


def varint_bytes(value: int) -> bytes:
    w = Writer()
    w.varint(value)
    return w.getvalue()


def read_varint(data: bytes) -> int:
    r = Reader(data)
    value = r.varint()
    r.finish("varint")
    return value


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), ((1 << 30) - 1, 4)],
)
def test_varint_boundaries_use_the_minimal_size_and_round_trip(value: int, size: int) -> None:
    encoded = varint_bytes(value)
    assert len(encoded) == size
    assert read_varint(encoded) == value


def test_varint_top_value_is_max_varint() -> None:
    assert MAX_VARINT == (1 << 30) - 1
    assert varint_bytes(MAX_VARINT) == b"\xbf\xff\xff\xff"


@pytest.mark.parametrize("value", [1 << 30, (1 << 32), -1])
def test_varint_out_of_range_is_refused_on_encode(value: int) -> None:
    with pytest.raises(UsageError):
        varint_bytes(value)


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x40\x00",  # 0 in two bytes
        b"\x40\x3f",  # 63 in two bytes
        b"\x80\x00\x00\x00",  # 0 in four bytes
        b"\x80\x00\x3f\xff",  # 16383 in four bytes
    ],
)
def test_non_minimal_varint_is_rejected(encoded: bytes) -> None:
    with pytest.raises(DecodeError):
        read_varint(encoded)


@pytest.mark.parametrize("encoded", [b"\xc0", b"\xc0\x00\x00\x00\x00\x00\x00\x01", b"\xff"])
def test_varint_with_0b11_prefix_is_rejected(encoded: bytes) -> None:
    with pytest.raises(DecodeError):
        read_varint(encoded)


@pytest.mark.parametrize("encoded", [b"", b"\x40", b"\x80\x00\x40"])
def test_truncated_varint_is_rejected(encoded: bytes) -> None:
    with pytest.raises(DecodeError):
        read_varint(encoded)


def test_optional_presence_octet_must_be_0_or_1() -> None:
    assert Reader(b"\x00").optional_opaque() is None
    assert Reader(b"\x01\x02ab").optional_opaque() == b"ab"
    with pytest.raises(DecodeError):
        Reader(b"\x02\x02ab").optional_opaque()


def test_optional_struct_presence_octet_2_is_rejected() -> None:
    with pytest.raises(DecodeError):
        Reader(b"\x02\x00\x00\x00\x01").optional(U32Box)


def test_boolean_rejects_values_above_one() -> None:
    assert Reader(b"\x01").boolean() is True
    with pytest.raises(DecodeError):
        Reader(b"\x02").boolean()


@dataclass(frozen=True, slots=True)
class U32Box:
    value: int

    def encode(self, w: Writer) -> None:
        w.u32(self.value)

    @classmethod
    def decode(cls, r: Reader) -> U32Box:
        return cls(r.u32())


def test_vector_of_structs_round_trips() -> None:
    w = Writer()
    w.structs([U32Box(1), U32Box(2)])
    data = w.getvalue()
    assert data == b"\x08" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02"
    r = Reader(data)
    assert r.structs(U32Box) == (U32Box(1), U32Box(2))
    assert r.at_end()


def test_vector_whose_items_overrun_the_declared_length_is_rejected() -> None:
    # Declared length 6: one uint32 item fits, the second would need 2 more bytes.
    data = b"\x06" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02"
    with pytest.raises(DecodeError):
        Reader(data).structs(U32Box)


def test_vector_longer_than_the_input_is_rejected() -> None:
    with pytest.raises(DecodeError):
        Reader(b"\x08\x00\x00\x00\x01").structs(U32Box)


def test_opaque_longer_than_the_input_is_rejected() -> None:
    with pytest.raises(DecodeError):
        Reader(b"\x05abcd").opaque()


def test_codec_decode_rejects_trailing_bytes() -> None:
    assert codec.decode(U32Box, b"\x00\x00\x00\x07") == U32Box(7)
    with pytest.raises(DecodeError):
        codec.decode(U32Box, b"\x00\x00\x00\x07\x00")


def test_codec_encode_matches_writer() -> None:
    assert codec.encode(U32Box(0x01020304)) == b"\x01\x02\x03\x04"


@pytest.mark.parametrize(("method", "size"), [("u8", 1), ("u16", 2), ("u32", 4), ("u64", 8)])
def test_fixed_width_integers_refuse_out_of_range_values(method: str, size: int) -> None:
    w = Writer()
    getattr(w, method)((1 << (8 * size)) - 1)
    assert w.getvalue() == b"\xff" * size
    with pytest.raises(UsageError):
        getattr(Writer(), method)(1 << (8 * size))
    with pytest.raises(UsageError):
        getattr(Writer(), method)(-1)


@pytest.mark.parametrize(("method", "size"), [("u8", 1), ("u16", 2), ("u32", 4), ("u64", 8)])
def test_truncated_fixed_width_integers_are_rejected(method: str, size: int) -> None:
    with pytest.raises(DecodeError):
        getattr(Reader(b"\x00" * (size - 1)), method)()
