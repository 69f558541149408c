"""Minimal reproductions of crashes found by fuzzing (see fuzz/), kept as regression
tests once fixed. While a bug is open its test is ``xfail(strict=True)`` and
test_fuzz_families.py's KNOWN_BUGS sets its inputs aside."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from transports.xmpp import stanzas
from transports.xmpp.errors import WireError
from transports.xmpp.namespace import NS


def test_xmpp_integer_attribute_with_5000_digits_is_a_wire_error() -> None:
    el = ET.Element(f"{{{NS}}}fetch-log", {"after": "9" * 5000})
    with pytest.raises(WireError):
        stanzas.decode_request(el, "xmpp:a@example.org")


def test_xmpp_integer_attribute_beyond_uint64_is_a_wire_error() -> None:
    el = ET.Element(f"{{{NS}}}fetch-log", {"after": str(1 << 64)})
    with pytest.raises(WireError):
        stanzas.decode_request(el, "xmpp:a@example.org")
