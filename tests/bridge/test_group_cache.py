"""The hub's per-epoch cache of a group's record and rooms (``GroupViews``): messages
of one epoch read neither again; a commit, an attached room or another hub process's
commit make the next message read them again; so does a detached room."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bridge.hub import Hub
from bridge.hub.store import LogKind
from tests.bridge.conftest import Harness, clock
from transports.interface import Inbound, Outbound


class Replies:
    """The hub's replies (a :class:`bridge.hub.HubObserver`)."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def request_started(self, request: Inbound) -> None:
        pass

    def request_finished(self, request: Inbound, reply: Outbound | None,
                         seconds: float) -> None:
        if reply is not None and not reply.ok:
            self.refused.append(f"{request.op}: {reply.code}")

    def delivery_started(self, message: Outbound) -> None:
        pass

    def delivery_finished(self, message: Outbound, ok: bool) -> None:
        pass


def count_reads(monkeypatch: pytest.MonkeyPatch, harness: Harness) -> Counter[str]:
    """How often the hub's store is asked for a group record and a group's rooms."""
    reads: Counter[str] = Counter()
    store = harness.store
    assert store is not None
    for name in ("get_group", "group_rooms"):
        method: Callable[..., Awaitable[Any]] = getattr(store, name)

        async def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
            reads[_name] += 1
            return await _method(*args)

        monkeypatch.setattr(store, name, counted)
    return reads


async def test_an_epoch_is_read_once_and_again_after_a_commit_or_an_attached_room(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, group_id = await harness.alice_and_bob()
    reads = count_reads(monkeypatch, harness)
    for n in range(5):
        await bob.send_text(group_id, f"m{n}")
        await alice.send_text(group_id, f"a{n}")
    await harness.quiesce()
    assert reads <= Counter(get_group=1, group_rooms=1)  # the epoch, at most once
    assert [m.content.body for m in alice.received(group_id)] == [f"m{n}" for n in range(5)]

    await alice.update(group_id)  # a commit: the next epoch's record is read once
    await harness.quiesce()
    reads.clear()
    for n in range(3):
        await bob.send_text(group_id, f"e2-{n}")
    await harness.quiesce()
    assert reads <= Counter(get_group=1, group_rooms=1)

    assert harness.hub is not None and harness.store is not None
    await harness.hub.attach_room("matrix", "!room:example.org", group_id)
    reads.clear()
    await bob.send_text(group_id, "after attach")
    await harness.quiesce()
    assert reads == Counter(get_group=1, group_rooms=1)  # forgotten with the attach

    assert await harness.hub.detach_room("matrix", "!room:example.org")
    reads.clear()
    await bob.send_text(group_id, "after detach")
    await harness.quiesce()
    assert reads == Counter(get_group=1, group_rooms=1)  # and with the detach
    assert [r.transport for r in await harness.store.group_rooms(group_id)] == ["xmpp"]
    entries = await harness.store.log_since(group_id, 0, 100)
    assert [e.kind for e in entries].count(LogKind.APPLICATION) == 15
    assert len({e.seq for e in entries}) == len(entries)


async def test_another_hub_process_committing_makes_the_cache_read_again(
    harness: Harness,
) -> None:
    """Two hubs on one database: the second caches epoch 1; the first accepts a commit
    (epoch 2); the second is handed a message of epoch 2 -- its stale view would refuse
    it, so it reads the group again and logs it -- and the log's order holds."""
    alice, bob, group_id = await harness.alice_and_bob()
    first = harness.hub
    assert first is not None and harness.store is not None
    replies = Replies()
    second = Hub(harness.store, harness.identity, harness.network, config=harness.config,
                 clock=clock, directories=harness.network.rooms, observer=replies)

    async def route_to(hub: Hub) -> None:
        await harness.network.detach()
        harness.network.attach(hub)
        harness.hub = hub

    await route_to(second)
    await bob.send_text(group_id, "at epoch 1")
    await harness.quiesce()
    cached = second.views.cached(group_id)
    assert cached is not None and cached[0].epoch == 1
    await route_to(first)
    await alice.update(group_id)
    await harness.quiesce()
    await route_to(second)
    assert second.views.cached(group_id) is not None  # still epoch 1: stale
    await bob.send_text(group_id, "at epoch 2")
    await harness.quiesce()
    cached = second.views.cached(group_id)
    assert cached is not None and cached[0].epoch == 2
    assert replies.refused == []  # not refused by the stale view, then retried
    assert [m.content.body for m in alice.received(group_id)] == ["at epoch 1", "at epoch 2"]
    entries = await harness.store.log_since(group_id, 0, 100)
    assert [(e.kind, e.epoch) for e in entries] == [
        (LogKind.COMMIT, 0), (LogKind.APPLICATION, 1), (LogKind.COMMIT, 1),
        (LogKind.APPLICATION, 2)]
    await second.close()
