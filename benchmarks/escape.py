"""The XML escape of outgoing stanzas: slixmpp's own beside transports.xmpp.escape.

Run as ``python -m benchmarks.escape``. For text the size of the hub's deliveries
(MLS messages in base64: a short chat message, a commit, a large payload) it prints the
µs per call of both escapes, and of serialising a whole ``<message/>`` stanza carrying
that text with each. The baseline is slixmpp's escape, measured in the same run.
"""

from __future__ import annotations

import base64
import functools
import importlib
import os
import statistics
import time
from collections.abc import Callable

from slixmpp import Message

from transports.xmpp import escape

SIZES = (300, 2_000, 20_000)  # bytes of MLS message before base64
RUNS = 5
RUN_SECONDS = 0.05


def per_call_us(call: Callable[[], object]) -> float:
    """Median µs per call over :data:`RUNS` runs of about :data:`RUN_SECONDS` each."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < RUN_SECONDS / 5:
        call()
        count += 1
    results = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(count):
            call()
        results.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(results)


def stanza(text: str) -> Message:
    message = Message()
    message["to"] = "alice@example.org/device"
    message["from"] = "mls.example.org"
    message["body"] = text
    return message


def main() -> None:
    tostring = importlib.import_module("slixmpp.xmlstream.tostring")
    original = escape.original_escape()
    print("| base64 text | slixmpp escape µs | ours µs | stanza with slixmpp's µs | "
          "stanza with ours µs |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        text = base64.b64encode(os.urandom(size)).decode()
        message = stanza(text)
        slow = per_call_us(functools.partial(original, text, False))
        fast = per_call_us(functools.partial(escape.fast_escape, text, False))
        tostring.escape = original
        slow_stanza = per_call_us(message.__str__)
        escape.install()
        fast_stanza = per_call_us(message.__str__)
        print(f"| {len(text)} chars | {slow:.1f} | {fast:.2f} | {slow_stanza:.1f} | "
              f"{fast_stanza:.1f} |")


if __name__ == "__main__":
    main()
