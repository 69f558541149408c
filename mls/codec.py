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

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from mls.errors import DecodeError, UsageError

T = TypeVar("T")
E = TypeVar("E", bound="Encodable")

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
        self.uint(value, 1)

    def u16(self, value: int) -> None:
        self.uint(value, 2)

    def u32(self, value: int) -> None:
        self.uint(value, 4)

    def u64(self, value: int) -> None:
        self.uint(value, 8)

    def varint(self, value: int) -> None:
        """Minimal variable-length integer, RFC 9420 §2.1.2."""
        if value < 0x40 and value >= 0:
            self._buf.append(value)
        elif 0 <= value < 0x4000:
            self._buf += (value | 0x4000).to_bytes(2, "big")
        elif 0 <= value <= MAX_VARINT:
            self._buf += (value | 0x80000000).to_bytes(4, "big")
        else:
            raise UsageError(f"length {value} exceeds the MLS varint range (2^30-1)")

    def opaque(self, data: bytes) -> None:
        """``opaque data<V>``: varint length then the bytes."""
        self.varint(len(data))
        self._buf += data

    def boolean(self, value: bool) -> None:
        self._buf.append(1 if value else 0)

    def vector(self, items: Iterable[T], write_item: Callable[[Writer, T], None]) -> None:
        """``T items<V>``: varint byte length of the encoded items, then the items."""
        inner = Writer()
        for item in items:
            write_item(inner, item)
        self.opaque(bytes(inner._buf))

    def structs(self, items: Iterable[Encodable]) -> None:
        """A vector of wire structs."""
        inner = Writer()
        for item in items:
            item.encode(inner)
        self.opaque(bytes(inner._buf))

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
        first = self.u8()
        prefix = first >> 6
        if prefix == 3:
            raise DecodeError("invalid variable-length integer prefix 0b11")
        value = first & 0x3F
        if prefix == 0:
            return value
        length = 1 << prefix
        rest = self.raw(length - 1)
        value = (value << (8 * (length - 1))) | int.from_bytes(rest, "big")
        if value < (1 << (8 * (length // 2) - 2)):
            raise DecodeError("variable-length integer is not minimally encoded")
        return value

    def opaque(self) -> bytes:
        """``opaque data<V>``."""
        return self.raw(self.varint())

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
        while not inner.at_end():
            items.append(read_item(inner))
        return tuple(items)

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
