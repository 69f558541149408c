"""The one codec of the ``mls`` package: TLS presentation language as used by MLS.

RFC 9420 §2.1 extends the TLS 1.3 presentation language (RFC 8446 §3) with
``optional<T>`` (§2.1.1) and vectors with variable-size length headers (§2.1.2).
This module is the only place in the package where bytes are sliced.

Every wire struct implements the :class:`Encodable` protocol: ``encode(w)`` writes
its fields in RFC order and the classmethod ``decode(r)`` reads them back.  Use
:func:`encode` and :func:`decode` at the top level: :func:`decode` insists that every
byte is consumed.

All malformed input raises :class:`~mls.errors.DecodeError` -- never ``IndexError``,
``struct.error`` or ``ValueError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from mls.errors import DecodeError, UsageError

T = TypeVar("T")
E = TypeVar("E", bound="Encodable")

#: struct codes of the fixed-size big-endian unsigned integers.
_UINT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}

#: Largest value a variable-length integer can carry (RFC 9420 §2.1.2).
MAX_VARINT = (1 << 30) - 1


class Encodable(Protocol):
    """A wire struct: encodes itself and decodes from a :class:`Reader`."""

    def encode(self, w: Writer) -> None: ...

    @classmethod
    def decode(cls: type[E], r: Reader) -> E: ...


class Writer:
    """Accumulates an encoding.  Methods return nothing; call :meth:`getvalue`."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def raw(self, data: bytes) -> None:
        """Append fixed-length bytes (``opaque x[N]``); the caller knows N."""
        self._buf += data

    def uint(self, value: int, size: int) -> None:
        if not 0 <= value < (1 << (8 * size)):
            raise UsageError(f"integer {value} does not fit in uint{8 * size}")
        self._buf += value.to_bytes(size, "big")

    def u8(self, value: int) -> None:
        if not 0 <= value < 0x100:
            raise UsageError(f"integer {value} does not fit in uint8")
        self._buf.append(value)

    def u16(self, value: int) -> None:
        if not 0 <= value < 0x10000:
            raise UsageError(f"integer {value} does not fit in uint16")
        self._buf += value.to_bytes(2, "big")

    def u32(self, value: int) -> None:
        self.uint(value, 4)

    def u64(self, value: int) -> None:
        self.uint(value, 8)

    def varint(self, value: int) -> None:
        """Minimal variable-length integer, RFC 9420 §2.1.2."""
        self._buf += varint_bytes(value)

    def opaque(self, data: bytes | bytearray) -> None:
        """``opaque data<V>``: varint length then the bytes."""
        buf = self._buf
        length = len(data)
        if length < 0x40:
            buf.append(length)
        else:
            buf += varint_bytes(length)
        buf += data

    def boolean(self, value: bool) -> None:
        self._buf.append(1 if value else 0)

    def vector(self, items: Iterable[T], write_item: Callable[[Writer, T], None]) -> None:
        """``T items<V>``: varint byte length of the encoded items, then the items."""
        outer = self._buf
        self._buf = inner = bytearray()
        try:
            for item in items:
                write_item(self, item)
        finally:
            self._buf = outer
        self.opaque(inner)

    def uint_vector(self, values: Iterable[int], size: int) -> None:
        """``uintN items<V>``: a vector of ``size``-byte unsigned integers."""
        limit = 1 << (8 * size)
        parts = []
        for value in values:
            if not 0 <= value < limit:
                raise UsageError(f"integer {value} does not fit in uint{8 * size}")
            parts.append(value.to_bytes(size, "big"))
        self.opaque(b"".join(parts))

    def structs(self, items: Iterable[Encodable]) -> None:
        """A vector of wire structs."""
        outer = self._buf
        self._buf = inner = bytearray()
        try:
            for item in items:
                item.encode(self)
        finally:
            self._buf = outer
        self.opaque(inner)

    def optional(self, item: Encodable | None) -> None:
        """``optional<T>`` (RFC 9420 §2.1.1) of a wire struct."""
        if item is None:
            self._buf.append(0)
        else:
            self._buf.append(1)
            item.encode(self)

    def optional_opaque(self, data: bytes | None) -> None:
        """``optional<opaque<V>>``."""
        if data is None:
            self._buf.append(0)
        else:
            self._buf.append(1)
            self.opaque(data)


def varint_bytes(value: int) -> bytes:
    """The minimal variable-length integer encoding of ``value`` (RFC 9420 §2.1.2)."""
    if 0 <= value < 0x40:
        return bytes((value,))
    if 0 <= value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if 0 <= value <= MAX_VARINT:
        return (value | 0x80000000).to_bytes(4, "big")
    raise UsageError(f"length {value} exceeds the MLS varint range (2^30-1)")


def opaque_bytes(data: bytes) -> bytes:
    """``opaque data<V>`` as bytes: varint length then the bytes."""
    return varint_bytes(len(data)) + data


class Reader:
    """Reads an encoding from a bytes-like buffer, front to back."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        """The offset of the next byte to read (for :meth:`bytes_since`)."""
        return self._pos

    def bytes_since(self, start: int) -> bytes:
        """The bytes read since :attr:`position` was ``start``: the exact encoding of
        what was decoded in between (kept by structs that cache their encoding)."""
        if not 0 <= start <= self._pos:
            raise UsageError(f"position {start} is not behind the reader")
        return bytes(self._data[start:self._pos])

    def at_end(self) -> bool:
        return self._pos >= self._end

    def finish(self, what: str = "message") -> None:
        """Raise unless every byte was consumed."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes after {what}")

    def raw(self, n: int) -> bytes:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise DecodeError(f"truncated: need {n} bytes, have {self._end - pos}")
        self._pos = pos + n
        return bytes(self._data[pos : pos + n])

    def uint(self, size: int) -> int:
        pos = self._pos
        if pos + size > self._end:
            raise DecodeError(f"truncated: need uint{8 * size}")
        self._pos = pos + size
        return int.from_bytes(self._data[pos : pos + size], "big")

    def u8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise DecodeError("truncated: need uint8")
        self._pos = pos + 1
        return self._data[pos]

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)

    def u64(self) -> int:
        return self.uint(8)

    def boolean(self) -> bool:
        value = self.u8()
        if value > 1:
            raise DecodeError(f"boolean must be 0 or 1, got {value}")
        return value == 1

    def varint(self) -> int:
        """Variable-length integer with the minimality check of RFC 9420 §2.1.2."""
        pos = self._pos
        if pos >= self._end:
            raise DecodeError("truncated: need uint8")
        data = self._data
        first = data[pos]
        if first < 0x40:
            self._pos = pos + 1
            return first
        prefix = first >> 6
        if prefix == 3:
            raise DecodeError("invalid variable-length integer prefix 0b11")
        length = 1 << prefix
        if pos + length > self._end:
            raise DecodeError(f"truncated: need {length - 1} bytes, "
                              f"have {self._end - pos - 1}")
        self._pos = pos + length
        value = int.from_bytes(data[pos:pos + length], "big") & ((1 << (8 * length - 2)) - 1)
        if value < (1 << (8 * (length // 2) - 2)):
            raise DecodeError("variable-length integer is not minimally encoded")
        return value

    def opaque(self) -> bytes:
        """``opaque data<V>``."""
        length = self.varint()
        pos = self._pos
        end = pos + length
        if end > self._end:
            raise DecodeError(f"truncated: need {length} bytes, have {self._end - pos}")
        self._pos = end
        return bytes(self._data[pos:end])

    def sub(self) -> Reader:
        """Read a varint length and return a reader over exactly that many bytes."""
        length = self.varint()
        start = self._pos
        if start + length > self._end:
            raise DecodeError(f"truncated: vector of {length} bytes, have {self._end - start}")
        self._pos = start + length
        return Reader(self._data, start, start + length)

    def vector(self, read_item: Callable[[Reader], T]) -> tuple[T, ...]:
        """``T items<V>``: items must consume the declared length exactly."""
        inner = self.sub()
        items: list[T] = []
        end = inner._end
        while inner._pos < end:
            items.append(read_item(inner))
        return tuple(items)

    def uint_vector(self, size: int) -> tuple[int, ...]:
        """``uintN items<V>``: a vector of ``size``-byte unsigned integers, whose byte
        length must be a multiple of ``size``."""
        length = self.varint()
        pos = self._pos
        end = pos + length
        if end > self._end:
            raise DecodeError(f"truncated: vector of {length} bytes, have {self._end - pos}")
        if length % size:
            raise DecodeError(f"vector of uint{8 * size} has {length} bytes")
        self._pos = end
        code = _UINT_CODES.get(size)
        if code is None:
            data = self._data
            return tuple(int.from_bytes(data[i:i + size], "big") for i in range(pos, end, size))
        return struct.unpack_from(f">{length // size}{code}", self._data, pos)

    def structs(self, cls: type[E]) -> tuple[E, ...]:
        """A vector of wire structs of one class."""
        return self.vector(cls.decode)

    def optional(self, cls: type[E]) -> E | None:
        """``optional<T>`` (RFC 9420 §2.1.1); presence octet must be 0 or 1."""
        if self.boolean():
            return cls.decode(self)
        return None

    def optional_opaque(self) -> bytes | None:
        if self.boolean():
            return self.opaque()
        return None


def encode(item: Encodable) -> bytes:
    """Encode one wire struct to bytes."""
    w = Writer()
    item.encode(w)
    return w.getvalue()


def decode(cls: type[E], data: bytes) -> E:
    """Decode one wire struct from bytes that it must consume exactly."""
    r = Reader(data)
    try:
        item = cls.decode(r)
    except DecodeError:
        raise
    except (ValueError, IndexError, OverflowError) as exc:  # enum / struct misuse
        raise DecodeError(f"malformed {cls.__name__}: {exc}") from exc
    r.finish(cls.__name__)
    return item


def encode_opaque(data: bytes) -> bytes:
    """``opaque<V>`` of raw bytes, as used inside labels and hash inputs."""
    w = Writer()
    w.opaque(data)
    return w.getvalue()
