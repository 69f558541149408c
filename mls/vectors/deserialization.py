"""deserialization.json: variable-length vector headers (RFC 9420 §2.1.2)."""

from __future__ import annotations

from typing import Any

from mls.codec import Reader, Writer


def check(case: dict[str, Any]) -> None:
    header = bytes.fromhex(case["vlbytes_header"])
    expected_length = case["length"]
    r = Reader(header)
    length = r.varint()
    r.finish("vector header")
    assert length == expected_length, f"decoded {length}, expected {expected_length}"
    w = Writer()
    w.varint(expected_length)
    assert w.getvalue() == header, "re-encoding the length gives a different header"
