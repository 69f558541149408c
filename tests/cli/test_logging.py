"""Structured logs: one JSON (or key=value) event per line; no plaintext, no secrets,
no MLS bytes in a small run of the hub with members chatting."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.app.logs import digest, event, setup_logging
from tests.bridge.conftest import Harness, domain

SECRET = "component-secret-do-not-log"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    setup_logging("debug", "json", secrets=[SECRET], stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


async def test_small_run_logs_no_plaintext_or_secret(tmp_path: Path,
                                                     captured: io.StringIO) -> None:
    harness = Harness(tmp_path / "hub.db")
    await harness.start_hub()
    plaintexts = ["attack at dawn 7f3a", "the password is hunter2-91c"]
    try:
        alice = await harness.member("alice")
        bob = await harness.member("bob")
        group_id = await alice.create_group(
            transport="xmpp", room_id=harness.room("r@mls.example.org", alice))
        await alice.add_members(group_id, [domain("bob")])
        await harness.quiesce()
        for text in plaintexts:
            await bob.send_text(group_id, text)
        await alice.remove_members(group_id, [domain("bob")])
        await harness.quiesce()
        log = logging.getLogger("bridge.test")
        log.info("component secret is %s", SECRET)  # a careless line gets redacted
        event(log, logging.INFO, "payload", size=len(b"\x01\x02"), payload=b"\x01\x02")
    finally:
        await harness.close()
    lines = captured.getvalue().splitlines()
    assert lines, "nothing was logged"
    records = [json.loads(line) for line in lines]  # one JSON object per line
    assert all({"ts", "level", "logger", "event"} <= set(r) for r in records)
    text = captured.getvalue()
    for secret in [*plaintexts, SECRET]:
        assert secret not in text
    assert "component secret is ***" in text
    payload = next(r for r in records if r["event"] == "payload")
    assert payload["payload"] == digest(b"\x01\x02") and payload["size"] == 2


def test_text_format_is_key_value(captured: io.StringIO) -> None:
    stream = io.StringIO()
    setup_logging("info", "text", secrets=[SECRET], stream=stream)
    event(logging.getLogger("bridge.x"), logging.WARNING, "xmpp unreachable",
          reason=f"refused {SECRET}", attempt=2)
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert 'level=warning logger=bridge.x event="xmpp unreachable"' in line
    assert 'reason="refused ***" attempt=2' in line
