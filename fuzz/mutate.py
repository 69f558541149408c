"""A structure-aware mutator over valid seeds (no coverage feedback of its own).

Every mutator is ``(data, rng, seeds) -> bytes``; :func:`mutate` applies one to four of
the family's mutators in a row. ``seeds`` feed crossover (splicing two inputs).

* MLS bytes (:func:`mutate_tls`): besides bit flips, byte values, inserts, deletes and
  splices, it finds what looks like a TLS ``varint`` length prefix (RFC 9420 §2.1.2)
  and lies about it (one off, zero, huge with few bytes behind it, non-minimal, the
  invalid ``0b11`` prefix), or nests the field inside extra vectors.
* XML (:func:`mutate_xml`): parses the stanza, then changes tags, attributes (huge or
  non-ASCII numbers, bad base64, upload references), text and children, or nests
  ``<entry/>`` deeply; sometimes corrupts the text itself.
* JSON (:func:`mutate_json`): replaces values by values of other types (huge, negative
  and float numbers, booleans, null, bad base64, nested containers), deletes and adds
  keys.
* CBOR (:func:`mutate_cbor`): decodes loosely, changes items (types, sizes, tags,
  duplicate keys, indefinite lengths in raw form), re-encodes canonically or not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any
from xml.etree import ElementTree as ET

import cbor2

Mutator = Callable[[bytes, random.Random, Sequence[bytes]], bytes]

MAX_SIZE = 1 << 16
_INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFE, 0xFF)
_VARINT_LIES = (
    b"\x00", b"\x3f", b"\x40\x00", b"\x40\x3f", b"\x7f\xff", b"\x80\x00\x00\x00",
    b"\x80\x00\x3f\xff", b"\xbf\xff\xff\xff", b"\xc0", b"\xff\xff\xff\xff\xff\xff\xff\xff",
)


# -- bytes ---------------------------------------------------------------------------


def _flip_bit(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x00"
    buf = bytearray(data)
    i = rng.randrange(len(buf))
    buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _set_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return bytes([rng.choice(_INTERESTING_BYTES)])
    buf = bytearray(data)
    buf[rng.randrange(len(buf))] = rng.choice(_INTERESTING_BYTES)
    return bytes(buf)


def _insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    chunk = rng.randbytes(rng.choice((1, 1, 2, 4, 8, 32)))
    return data[:i] + chunk + data[i:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    n = rng.choice((1, 1, 2, 4, 16, len(data)))
    return data[:i] + data[i + n:]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _duplicate(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.choice((1, 2, 4, 16, 64)))
    k = rng.randrange(len(data) + 1)
    return data[:k] + data[i:j] + data[k:]


def _splice(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not seeds:
        return data
    other = rng.choice(seeds)
    i = rng.randrange(len(data) + 1)
    j = rng.randrange(len(other) + 1)
    return data[:i] + other[j:]


def byte_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """One plain byte-level mutation."""
    choice = rng.randrange(7)
    if choice == 0:
        return _flip_bit(data, rng)
    if choice == 1:
        return _set_byte(data, rng)
    if choice == 2:
        return _insert(data, rng)
    if choice == 3:
        return _delete(data, rng)
    if choice == 4:
        return _truncate(data, rng)
    if choice == 5:
        return _duplicate(data, rng)
    return _splice(data, rng, seeds)


# -- TLS presentation language (MLS) ----------------------------------------------------


def _varint_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, header length) of a minimal varint at ``pos`` whose field fits."""
    first = data[pos]
    prefix = first >> 6
    if prefix == 3:
        return None
    size = 1 << prefix
    if pos + size > len(data):
        return None
    value = int.from_bytes(data[pos:pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    if size > 1 and value < (1 << (8 * (size // 2) - 2)):
        return None
    if pos + size + value > len(data):
        return None
    return value, size


def _encode_varint(value: int) -> bytes:
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return (0x4000 | value).to_bytes(2, "big")
    return (0x80000000 | min(value, (1 << 30) - 1)).to_bytes(4, "big")


def _length_fields(data: bytes, rng: random.Random, tries: int = 12) -> list[tuple[int, int, int]]:
    """Up to a few plausible (offset, header size, length) varint prefixes."""
    found = []
    if not data:
        return found
    for _ in range(tries):
        pos = rng.randrange(len(data))
        field = _varint_at(data, pos)
        if field is not None and field[0] > 0:
            found.append((pos, field[1], field[0]))
    return found


def mutate_tls(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """A mutation aware of ``opaque<V>`` / vector length prefixes (RFC 9420 §2.1.2)."""
    fields = _length_fields(data, rng)
    if not fields or rng.random() < 0.35:
        return byte_mutation(data, rng, seeds)
    pos, size, length = rng.choice(fields)
    body = data[pos + size:pos + size + length]
    rest = data[pos + size + length:]
    choice = rng.randrange(8)
    if choice == 0:  # the length lies by one
        return data[:pos] + _encode_varint(max(0, length + rng.choice((-1, 1)))) + body + rest
    if choice == 1:  # a huge or malformed length prefix with few bytes behind it
        return data[:pos] + rng.choice(_VARINT_LIES) + body + rest
    if choice == 2:  # the field emptied
        return data[:pos] + b"\x00" + rest
    if choice == 3:  # the field's content mutated, its length kept consistent
        inner = mutate_tls(body, rng, seeds)
        return data[:pos] + _encode_varint(len(inner)) + inner + rest
    if choice == 4:  # nest the field in more vectors (deep nesting)
        nested = body
        for _ in range(rng.choice((1, 2, 8, 64))):
            nested = _encode_varint(len(nested)) + nested
        return data[:pos] + _encode_varint(len(nested)) + nested + rest
    if choice == 5:  # the field repeated (duplicate vector items)
        item = _encode_varint(len(body)) + body
        return data[:pos] + item * rng.choice((2, 3, 16)) + rest
    if choice == 6:  # swap in a field from another seed
        other = rng.choice(seeds) if seeds else data
        others = _length_fields(other, rng)
        if others:
            opos, osize, olength = rng.choice(others)
            return data[:pos] + other[opos:opos + osize + olength] + rest
        return data
    # non-minimal re-encoding of the same length
    if length < 0x40:
        header = (0x4000 | length).to_bytes(2, "big")
    else:
        header = (0x80000000 | length).to_bytes(4, "big")
    return data[:pos] + header + body + rest


# -- XML (XMPP) --------------------------------------------------------------------------

_XML_VALUES = (
    "", "0", "-1", "1" * 40, "9" * 5000, "\u0661\u0662", "\u00b2", " 7", "7 ", "0x10", "1e3",
    "true", "false", "!!!", "AAAA", "AAA=", "A===", "====", "QUJD\n", "\x00",
    "xmpp:a@example.org", "x" * 300, "\U0001f600",
)
_XML_TAGS = ("payload", "welcome", "group-info", "ratchet-tree", "entry", "room",
             "key-package", "rejected", "mls", "reply", "sync", "submit-commit",
             "claim-key-package", "fetch-log", "send", "kick", "leave", "unknown")
_XML_ATTRS = ("request", "group", "seq", "epoch", "kind", "sender", "target", "device",
              "transport", "room", "suite", "after", "limit", "last-resort", "url", "sha256",
              "size", "ref", "user", "expires", "code", "id")


def _random_element(root: ET.Element, rng: random.Random) -> ET.Element:
    elements = list(root.iter())
    return rng.choice(elements)


def _namespace_of(tag: str) -> str:
    return tag[:tag.index("}") + 1] if tag.startswith("{") else ""


def _mutate_tree(root: ET.Element, rng: random.Random) -> ET.Element:
    el = _random_element(root, rng)
    ns = _namespace_of(el.tag) or _namespace_of(root.tag)
    choice = rng.randrange(8)
    if choice == 0:
        el.tag = ns + rng.choice(_XML_TAGS)
    elif choice == 1:
        el.set(rng.choice(_XML_ATTRS), rng.choice(_XML_VALUES))
    elif choice == 2 and el.attrib:
        del el.attrib[rng.choice(sorted(el.attrib))]
    elif choice == 3:
        el.text = rng.choice((*_XML_VALUES, "QUJDRA==", "ABCD" * 50))
    elif choice == 4:
        child = ET.SubElement(el, ns + rng.choice(_XML_TAGS))
        if rng.random() < 0.5:
            child.set(rng.choice(_XML_ATTRS), rng.choice(_XML_VALUES))
        if rng.random() < 0.5:
            child.text = rng.choice(_XML_VALUES)
    elif choice == 5 and len(el):
        el.remove(rng.choice(list(el)))
    elif choice == 6:  # deep nesting of entries
        node = el
        for _ in range(rng.choice((2, 16, 200))):
            node = ET.SubElement(node, ns + "entry", {"kind": "commit"})
    else:  # an upload reference where bytes are expected
        child = ET.SubElement(el, ns + rng.choice(("payload", "ratchet-tree")))
        child.set("url", rng.choice(("http://h/x", "", "mxc://a/b")))
        child.set("sha256", rng.choice(("0" * 64, "g" * 64, "00", "")))
        child.set("size", rng.choice(_XML_VALUES))
    return root


def mutate_xml(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Mutate an XML stanza element (see the module docstring)."""
    if rng.random() < 0.15:
        return byte_mutation(data, rng, seeds)
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return byte_mutation(data, rng, seeds) if rng.random() < 0.5 or not seeds \
            else rng.choice(seeds)
    for _ in range(rng.choice((1, 1, 2, 3))):
        root = _mutate_tree(root, rng)
    return ET.tostring(root)


# -- JSON (Matrix) ------------------------------------------------------------------------

_JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1 << 53, (1 << 53) - 1, 1 << 64, 1.5, "", "AAAA", "AAA",
    "A", "!!", "QUJD\n", "@user:example.org", "mxc://a/b", "x" * 200, [], {}, [["m", "r"]],
    [["m"]], {"url": "mxc://a/b", "sha256": "AAAA", "size": 3}, "\ud800",
)


def _containers(value: Any, out: list[Any]) -> list[Any]:
    if isinstance(value, dict):
        out.append(value)
        for item in value.values():
            _containers(item, out)
    elif isinstance(value, list):
        out.append(value)
        for item in value:
            _containers(item, out)
    return out


def _mutate_json_value(doc: Any, rng: random.Random) -> Any:
    containers = _containers(doc, [])
    if not containers:
        return rng.choice(_JSON_VALUES)
    target = rng.choice(containers)
    value = rng.choice(_JSON_VALUES)
    if isinstance(value, (dict, list)):
        value = json.loads(json.dumps(value))
    if isinstance(target, dict):
        keys = sorted(target)
        choice = rng.randrange(4)
        if choice == 0 and keys:
            del target[rng.choice(keys)]
        elif choice == 1 or not keys:
            target[rng.choice([*keys, "entries", "rooms", "op", "kind", "zz"])] = value
        elif choice == 2:
            key = rng.choice(keys)
            nested: Any = target[key]
            for _ in range(rng.choice((1, 8, 100))):
                nested = [nested] if rng.random() < 0.5 else {"entries": [nested]}
            target[key] = nested
        else:
            target[rng.choice(keys)] = value
    elif target:
        target[rng.randrange(len(target))] = value
    else:
        target.append(value)
    return doc


def mutate_json(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Mutate a JSON document (see the module docstring)."""
    if rng.random() < 0.1:
        return byte_mutation(data, rng, seeds)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return rng.choice(seeds) if seeds else data
    for _ in range(rng.choice((1, 1, 2, 3))):
        doc = _mutate_json_value(doc, rng)
    try:
        return json.dumps(doc).encode()
    except (ValueError, RecursionError):
        return data


# -- CBOR (content format) ------------------------------------------------------------------

_CBOR_VALUES: tuple[Any, ...] = (
    None, True, 0, -1, 1 << 63, (1 << 64) - 1, 1.0, b"", b"\x00" * 16, b"\x01" * 65,
    b"\x02" * 32, "", "text", "a/b", [], {}, cbor2.CBORTag(1, 0), {0: b"\x00" * 16},
    "\u00e9" * 10,
)
_CBOR_RAW = (
    b"\xa1\x00\x50" + b"\x00" * 16,          # {0: 16 bytes}
    b"\xbf\x00\x50" + b"\x00" * 16 + b"\xff",  # indefinite map
    b"\xa2\x00\x40\x00\x40",                  # duplicate keys
    b"\x5f\x41\x00\xff",                      # indefinite byte string
    b"\xc1\x00",                              # a tag
    b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",  # a huge array length
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
    b"\x81" * 100 + b"\x00",                  # deep nesting
)


def mutate_cbor(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Mutate a CBOR content item (see the module docstring)."""
    if rng.random() < 0.25:
        return byte_mutation(data, rng, seeds)
    if rng.random() < 0.1:
        return rng.choice(_CBOR_RAW)
    try:
        value = cbor2.loads(data)
    except Exception:  # noqa: BLE001 -- any failure: fall back to byte mutation
        return byte_mutation(data, rng, seeds)
    if not isinstance(value, dict):
        value = {0: value}
    keys = sorted(value, key=repr)
    choice = rng.randrange(4)
    if choice == 0 and keys:
        del value[rng.choice(keys)]
    elif choice == 1:
        value[rng.choice((0, 1, 2, 3, 4, 5, -1, "0"))] = rng.choice(_CBOR_VALUES)
    elif choice == 2 and 4 in value and isinstance(value[4], dict):
        attachment = value[4]
        attachment[rng.choice((0, 1, 2, 3, 4))] = rng.choice(_CBOR_VALUES)
    elif keys:
        value[rng.choice(keys)] = rng.choice(_CBOR_VALUES)
    try:
        return cbor2.dumps(value, canonical=rng.random() < 0.7)
    except Exception:  # noqa: BLE001 -- unencodable: keep the input
        return data


# -- driver -----------------------------------------------------------------------------------

def mutate(data: bytes, rng: random.Random, seeds: Sequence[bytes], mutator: Mutator,
           max_size: int = MAX_SIZE) -> bytes:
    """Apply ``mutator`` one to four times; the result is cut to ``max_size``."""
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        data = mutator(data, rng, seeds)
    return data[:max_size]
