"""Welcomes to offline users (:class:`transports.xmpp.welcomes.HeldWelcomes`): held
when they bounce, saved, sent again on presence, and resent with backoff when the
presence came before the session could take messages. (The real-server run: the
held-Welcome test in test_restart.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from transports.xmpp import welcomes
from transports.xmpp.welcomes import HeldWelcomes


class DictState:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def load(self, name: str) -> str | None:
        return self.values.get(name)

    async def save(self, name: str, value: str) -> None:
        self.values[name] = value


class Harness:
    def __init__(self, state: DictState) -> None:
        self.wire: list[str] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.held = HeldWelcomes(self.wire.append, state, self.spawn)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settle(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks)


async def test_bounced_welcome_is_saved_and_sent_when_the_user_is_back() -> None:
    state = DictState()
    before = Harness(state)
    before.held.sent("w1", "carol@hs", "<message id='w1'/>")
    assert before.held.bounced("w1") == "carol@hs"
    assert before.held.bounced("not-a-welcome") is None
    await before.settle()

    after = Harness(state)  # a restart: only what was saved
    await after.held.load()
    after.held.online("dave@hs")
    assert after.wire == []
    after.held.online("carol@hs")
    assert after.wire == ["<message id='w1'/>"]
    after.held.online("carol@hs")  # sent once, not held any more
    assert after.wire == ["<message id='w1'/>"]
    await after.settle()
    assert state.values[welcomes.HELD_KEY] == "{}"


async def test_a_resent_welcome_that_bounces_again_is_resent_with_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(welcomes, "RESEND_DELAYS", (0.01, 0.02))
    harness = Harness(DictState())
    harness.held.sent("w1", "carol@hs", "<w1/>")
    harness.held.bounced("w1")
    harness.held.online("carol@hs")  # presence before her session takes messages
    assert harness.wire == ["<w1/>"]
    harness.held.bounced("w1")  # bounces again: resent after 0.01 s
    await harness.settle()
    assert harness.wire == ["<w1/>", "<w1/>"]
    harness.held.bounced("w1")  # and after 0.02 s
    await harness.settle()
    assert harness.wire == ["<w1/>"] * 3
    harness.held.bounced("w1")  # the delays are used up: held until her next presence
    await harness.settle()
    assert harness.wire == ["<w1/>"] * 3
    harness.held.online("carol@hs")
    assert harness.wire == ["<w1/>"] * 4
