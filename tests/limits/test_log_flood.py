"""bridge/app/logs.py's flood limit: repeats of one key collapse into "N similar
messages suppressed" lines; other keys are not affected (an injected clock decides)."""

from __future__ import annotations

import io
import json
import logging

from bridge.app.logs import FloodLimit, StructuredFormatter


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def logger_with_limit(clock: Clock) -> tuple[logging.Logger, io.StringIO, FloodLimit]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(StructuredFormatter("json"))
    limit = FloodLimit(handler, rate=1.0, burst=3, clock=clock)
    handler.addFilter(limit)
    logger = logging.getLogger("tests.flood")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream, limit


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_flood_of_one_key_collapses_and_others_pass() -> None:
    clock = Clock()
    logger, stream, limit = logger_with_limit(clock)
    for i in range(50):
        logger.info("refused %s from %s: %s", "send", "xmpp:flood@x", "rate-limited",
                    extra={"flood_key": "xmpp:flood@x|rate-limited", "n": i})
    logger.info("refused %s from %s: %s", "send", "xmpp:honest@x", "not-member",
                extra={"flood_key": "xmpp:honest@x|not-member"})
    out = lines(stream)
    assert [e["n"] for e in out[:3]] == [0, 1, 2]  # the burst
    assert out[3]["event"] == "refused send from xmpp:honest@x: not-member"
    assert len(out) == 4 and limit.total_suppressed == 47
    assert all("flood_key" not in e for e in out)

    clock.now += 1.0  # one token back: the next line of the flood passes, after its summary
    logger.info("refused %s from %s: %s", "send", "xmpp:flood@x", "rate-limited",
                extra={"flood_key": "xmpp:flood@x|rate-limited", "n": 50})
    summary, line = lines(stream)[4:]
    assert summary["event"] == "47 similar messages suppressed"
    assert summary["suppressed"] == 47
    assert summary["like"] == "refused send from xmpp:flood@x: rate-limited"
    assert line["n"] == 50


def test_without_a_key_the_template_is_the_key_and_quiet_floods_are_summarised() -> None:
    clock = Clock()
    logger, stream, limit = logger_with_limit(clock)
    for seq in range(10):
        logger.warning("delivery of seq %d failed", seq)
    logger.warning("another kind of line")
    assert len(lines(stream)) == 4 and limit.total_suppressed == 7
    clock.now += 5.0  # the flood is over; any line passing after a second flushes it
    logger.warning("another kind of line")
    out = lines(stream)
    assert out[4]["event"] == "7 similar messages suppressed"
    assert out[4]["like"] == "delivery of seq 9 failed"
    assert out[5]["event"] == "another kind of line"
    limit.flush()
    assert len(lines(stream)) == 6  # nothing left to summarise
