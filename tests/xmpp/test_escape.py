"""transports.xmpp.escape: the same XML as slixmpp's own escape, for any text."""

from __future__ import annotations

import importlib

from hypothesis import given
from hypothesis import strategies as st
from slixmpp import Message

from transports.xmpp import escape

TEXT = st.text(alphabet=st.sampled_from("ab&<>'\"]]>\u00e9\u2603 \n") | st.characters(),
               max_size=200)


@given(TEXT, st.booleans())
def test_the_same_escape_as_slixmpps_for_any_text(text: str, use_cdata: bool) -> None:
    assert escape.fast_escape(text, use_cdata) == escape.original_escape()(text, use_cdata)


def test_installed_for_every_stanza_slixmpp_writes() -> None:
    tostring = importlib.import_module("slixmpp.xmlstream.tostring")
    assert escape.install() is True
    assert tostring.escape is escape.fast_escape
    message = Message()
    message["to"] = "room@mls.example.org"
    message["body"] = "MLS <payload> & 'quotes' \"too\" " + "QUJD" * 50
    fast = str(message)
    tostring.escape = escape.original_escape()
    try:
        assert str(message) == fast
    finally:
        assert escape.install() is True
    assert "&lt;payload&gt; &amp; &apos;quotes&apos; &quot;too&quot;" in fast


def test_a_changed_slixmpp_escape_is_kept() -> None:
    tostring = importlib.import_module("slixmpp.xmlstream.tostring")

    def other(text: str, use_cdata: bool = False) -> str:
        return text.upper()
    tostring.escape = other
    try:
        assert escape.install() is False
        assert tostring.escape is other
    finally:
        tostring.escape = escape.original_escape()
        assert escape.install() is True
