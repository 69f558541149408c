"""The hub's per-user quotas and the member's bounded inbox (docs/SECURITY.md,
"Limits"), over the in-memory network: each bound refuses (or drops) with its specific
code while the honest members carry on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge.errors import HubRefused
from bridge.hub import HubConfig
from bridge.hub.public_view import GroupViews
from tests.bridge.conftest import Harness
from transports.errors import LinkError
from transports.interface import Inbound, Kind, Op, Outbound


async def test_groups_per_user_are_bounded(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "hub.db", HubConfig(max_groups_per_user=2))
    await harness.start_hub()
    try:
        mallory = await harness.member("mallory")
        alice = await harness.member("alice")
        for _ in range(2):
            await mallory.create_group()
        with pytest.raises(HubRefused) as refusal:
            await mallory.create_group()
        assert refusal.value.code == "quota"
        group_id = await alice.create_group()  # her own quota
        assert group_id in alice.group_ids()
    finally:
        await harness.close()


class FailingWelcomes:
    """The hub's deliverer, except that Welcomes to ``victim`` cannot be delivered
    (they stay pending at the hub, for fetch-welcomes)."""

    def __init__(self, inner: object, victim: str) -> None:
        self.inner = inner
        self.victim = victim

    async def deliver(self, message: Outbound) -> None:
        if message.kind == Kind.WELCOME and self.victim in message.recipients:
            raise LinkError("the victim's network is down")
        await self.inner.deliver(message)  # type: ignore[attr-defined]


async def test_pending_welcomes_per_recipient_are_bounded(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "hub.db", HubConfig(max_pending_welcomes=2))
    hub = await harness.start_hub()
    try:
        mallory = await harness.member("mallory")
        victim = await harness.member("victim", publish=4)
        hub.deliverer = FailingWelcomes(harness.network, victim.identity)
        group_id = await mallory.create_group()
        for _ in range(2):
            await mallory.add_members(group_id, [victim.identity])
            await mallory.remove_members(group_id, [victim.identity])
        epoch = mallory.group(group_id).epoch
        with pytest.raises(HubRefused) as refusal:
            await mallory.add_members(group_id, [victim.identity])
        assert refusal.value.code == "quota"
        assert mallory.group(group_id).epoch == epoch  # the refused commit changed nothing
        assert harness.store is not None
        assert len(await harness.store.pending_welcomes(victim.identity)) == 2
        # the victim fetches what waits for it; then it can be added again
        reply = await harness.ask(Inbound(Op.FETCH_WELCOMES, victim.identity,
                                          request_id="fw"))
        assert reply.ok and len(reply.entries) == 2
        await mallory.add_members(group_id, [victim.identity])
    finally:
        await harness.close()


async def test_the_hub_caches_a_bounded_number_of_groups(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "hub.db")
    hub = await harness.start_hub()
    try:
        hub.views = GroupViews(hub.views.store, hub.views.clock, size=2)
        alice = await harness.member("alice")
        groups = [await alice.create_group() for _ in range(4)]
        assert len(hub.views) == 2
        await alice.send_text(groups[0], "the oldest group, read from the store again")
        assert len(hub.views) == 2
    finally:
        await harness.close()


async def test_a_full_inbox_drops_entries_and_catches_up_from_the_log(
        tmp_path: Path) -> None:
    """Deliveries handed over faster than the inbox applies them: beyond its bound
    they are dropped (counted) and the group is caught up from the hub's log in their
    place -- every message is received once, in order."""
    harness = Harness(tmp_path / "hub.db")
    await harness.start_hub()
    try:
        alice = await harness.member("alice")
        bob = await harness.member("bob")
        group_id = await alice.create_group()
        await alice.add_members(group_id, [bob.identity])
        await harness.quiesce()
        slot = bob.inbox.slots[group_id]
        before, next_before = slot.group, slot.next_seq  # Groups are immutable values
        texts = [f"m{i}" for i in range(12)]
        for text in texts:
            await alice.send_text(group_id, text)
        await harness.quiesce()
        log = (await harness.ask(Inbound(Op.FETCH_LOG, bob.identity, request_id="log",
                                         group_id=group_id, after_seq=next_before - 1))
               ).entries
        # bob's inbox as it was before the messages, and the twelve handed over at once
        slot.group, slot.next_seq = before, next_before
        slot.received.clear()
        bob.inbox.max_queued = 3
        for entry in log:
            await bob.inbox.deliver(dataclasses.replace(entry, recipients=(bob.identity,)))
        assert bob.inbox.dropped == len(log) - 3
        await harness.quiesce()
        assert [r.content.body for r in bob.received(group_id)] == texts
        assert slot.next_seq == log[-1].seq + 1
    finally:
        await harness.close()
