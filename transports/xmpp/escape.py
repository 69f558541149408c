"""A faster XML escape for every stanza slixmpp serialises.

slixmpp writes each outgoing stanza with ``slixmpp.xmlstream.tostring.tostring``, which
escapes text and attribute values through that module's ``escape``: a Python generator
over every character (``"".join(escapes.get(c, c) for c in text)``). The hub's
deliveries carry MLS messages as base64 text, so the profile of a bridged run
(issue 19) found that loop at 1,365 of about 8,600 Python calls per message.

:func:`install` replaces ``escape`` in that module -- and only there: ``tostring`` looks
the name up at each call, so nothing else changes -- with :func:`fast_escape`, which
gives identical output (the five predefined entities of XML 1.0 §4.6 for
``& < > ' "``, and slixmpp's CDATA form when asked for) through one ``str.translate``.
It installs only over slixmpp's own ``escape`` and only if both agree on probe strings
first, so a slixmpp release that changes its escape keeps it (and the log says so).
``tests/xmpp/test_escape.py`` pins the equivalence against slixmpp's original for any
text; ``python -m benchmarks.escape`` measures both.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"}
TABLE = str.maketrans(ENTITIES)
CDATA_JOIN = "<![CDATA[]]]><![CDATA[]>]]>"
PROBES = ("", "plain", "a&b<c>d'e\"f", "]]>", "x]]>y<z", "ünï©ødé & <tag attr='v'>")

Escape = Callable[[str, bool], str]
_module = importlib.import_module("slixmpp.xmlstream.tostring")
_original: Escape = _module.escape


def fast_escape(text: str, use_cdata: bool = False) -> str:
    """``text`` escaped exactly as slixmpp's ``escape`` does (see the module docstring)."""
    if not use_cdata:
        return text.translate(TABLE)
    if not any(c in text for c in ENTITIES):
        return text
    return CDATA_JOIN.join(f"<![CDATA[{part}]]>" for part in text.split("]]>"))


def original_escape() -> Escape:
    """slixmpp's own escape (for the equivalence test and the benchmark)."""
    return _original


def install() -> bool:
    """Serialise stanzas with :func:`fast_escape` (see the module docstring); whether
    it is installed."""
    current = _module.escape
    if current is fast_escape:
        return True
    agree = all(fast_escape(text, cdata) == current(text, cdata)
                for text in PROBES for cdata in (False, True))
    if current is not _original or not agree:
        log.info("slixmpp's XML escape differs from the one transports.xmpp.escape "
                 "replaces: kept as it is")
        return False
    setattr(_module, "escape", fast_escape)  # noqa: B010  # the module's global
    return True


__all__ = ["fast_escape", "install", "original_escape"]
