"""Welcomes to users who are offline: a Welcome goes to the new member's bare JID as a
``normal`` message with a store hint (servers with offline storage keep it); a server
without one bounces it with an error, and the component then holds it and sends it
again when the user next sends presence. Held Welcomes are saved in the component's
state store, so a restart in between does not lose them. The presence that triggers
the resend can come before the user's session is available (a directed presence sent
ahead of the initial broadcast one): a resent Welcome that bounces again is resent
after a short backoff, a few times. What is held is bounded: :data:`MAX_HELD` per
user and :data:`MAX_HELD_USERS` users (the oldest dropped, counted; the joiner can
still fetch its Welcomes from the hub while the hub keeps them pending, or rejoin)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from transports.fairness import LimitObserver, NullObserver

HELD_KEY = "xmpp-held-welcomes"
MAX_HELD = 64  # bounced Welcomes kept per user (the oldest are dropped)
MAX_HELD_USERS = 1024  # users with held Welcomes (the longest-held user's are dropped)
MAX_SENT = 1000  # recent Welcomes remembered to recognise their bounce
RESEND_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before resending a re-bounced one


class StateStore(Protocol):
    """Small persistent key/value state of the component: occupants, the rooms of
    each group, held Welcomes (all survive a restart)."""

    async def load(self, name: str) -> str | None: ...

    async def save(self, name: str, value: str) -> None: ...


class HeldWelcomes:
    """Welcomes sent (by stanza id, to recognise a bounce) and those held per user."""

    def __init__(self, send_raw: Callable[[str], None], state: StateStore | None,
                 spawn: Callable[[Awaitable[Any]], None]) -> None:
        self._send_raw = send_raw
        self._state = state
        self._spawn = spawn
        self._sent: dict[str, tuple[str, str]] = {}  # stanza id -> (bare JID, XML)
        self._held: dict[str, list[tuple[str, str]]] = {}  # bare JID -> [(id, XML)]
        self._resends: dict[str, int] = {}  # bare JID -> resends since its presence
        self.observer: LimitObserver = NullObserver()

    async def load(self) -> None:
        if self._state is not None:
            saved = await self._state.load(HELD_KEY)
            if saved:
                self._held = {bare: [(sid, xml) for sid, xml in held]
                              for bare, held in json.loads(saved).items()}

    def sent(self, stanza_id: str, bare: str, xml: str) -> None:
        """A Welcome stanza is on its way to ``bare``."""
        self._sent[stanza_id] = (bare, xml)
        while len(self._sent) > MAX_SENT:
            self._sent.pop(next(iter(self._sent)))

    def bounced(self, stanza_id: str) -> str | None:
        """An error came back for ``stanza_id``: if it was a Welcome, hold it and
        return its recipient."""
        sent = self._sent.pop(stanza_id, None)
        if sent is None:
            return None
        bare, xml = sent
        held = self._held.setdefault(bare, [])
        held.append((stanza_id, xml))
        if len(held) > MAX_HELD:
            self.observer.dropped("xmpp-held-welcomes", "oldest")
            del held[:-MAX_HELD]
        while len(self._held) > MAX_HELD_USERS:
            self.observer.dropped("xmpp-held-welcomes", "users")
            del self._held[next(iter(self._held))]
        self._spawn(self._save())
        attempt = self._resends.pop(bare, None)
        if attempt is not None and attempt < len(RESEND_DELAYS):
            self._spawn(self._resend_later(bare, attempt))
        return bare

    def online(self, bare: str, attempt: int = 0) -> None:
        """``bare`` sent presence (``attempt`` 0) or a resend is due: send what was
        held for it."""
        held = self._held.pop(bare, [])
        for stanza_id, xml in held:
            self.sent(stanza_id, bare, xml)
            self._send_raw(xml)
        if held:
            self._resends[bare] = attempt
            self._spawn(self._save())

    async def _resend_later(self, bare: str, attempt: int) -> None:
        await asyncio.sleep(RESEND_DELAYS[attempt])
        self.online(bare, attempt + 1)

    async def _save(self) -> None:
        if self._state is not None:
            await self._state.save(HELD_KEY, json.dumps(self._held, sort_keys=True))
