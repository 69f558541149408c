"""Keys the Matrix transport acted on, remembered across restarts: :class:`SeenSet`
over the hub store's ``seen`` table (:class:`CursorStore`, which also keeps the sync
token). The bot remembers room events and requests it handled, the application-service
listener the transactions it processed; none is acted on twice."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class CursorStore(Protocol):
    """Where the transport keeps its positions and the keys it acted on (the hub
    store: :class:`bridge.hub.store.Store`)."""

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, value: str) -> None: ...

    async def mark_seen(self, scope: str, key: str, at: int) -> bool: ...

    async def is_seen(self, scope: str, key: str) -> bool: ...

    async def prune_seen(self, before: int) -> int: ...


class SeenSet:
    """Keys already acted on (event, transaction and request ids) in one scope, kept in
    the store for ``retention`` seconds -- far longer than any redelivery: a sync
    resumes from the saved token, Synapse retries a transaction until it is answered,
    a member retries a request for minutes -- with an in-memory LRU in front. Old keys
    are pruned at most once per ``PRUNE_EVERY`` seconds, so the table stays bounded."""

    PRUNE_EVERY = 3600

    def __init__(self, store: CursorStore, scope: str, *, memory: int = 4096,
                 retention: int = 7 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.scope = scope
        self.retention = retention
        self._clock = clock
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._memory = memory
        self._next_prune = 0

    async def contains(self, key: str) -> bool:
        if key in self._recent:
            return True
        return await self.store.is_seen(self.scope, key)

    async def add(self, key: str) -> None:
        now = int(self._clock())
        await self.store.mark_seen(self.scope, key, now)
        self._recent[key] = None
        while len(self._recent) > self._memory:
            self._recent.popitem(last=False)
        if now >= self._next_prune:
            self._next_prune = now + self.PRUNE_EVERY
            pruned = await self.store.prune_seen(now - self.retention)
            if pruned:
                log.info("forgot %d handled event ids older than %d days", pruned,
                         self.retention // 86400)
