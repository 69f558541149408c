"""The contract of the fault-report and ban tables (migration 3) and of the epoch's
proposals in the log, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from bridge.hub.store import Ban, Conflict, LogEntry, LogKind, Store, UnknownGroup
from tests.store.test_store_contract import GID, NOW, OTHER_GID, commit, make_group


async def test_epoch_proposals_are_the_epochs_proposals_in_order(store: Store) -> None:
    await make_group(store)
    await store.append_message(GID, 0, LogKind.PROPOSAL, b"p0", "bob")
    await store.append_message(GID, 0, LogKind.APPLICATION, b"a0", "bob")
    await store.queue_proposal(GID, 0, b"ref", b"hub-p0", "hub")
    await commit(store, 0, covered_proposals=[b"ref"])
    await store.append_message(GID, 1, LogKind.PROPOSAL, b"p1", "carol")
    await store.append_message(GID, 0, LogKind.APPLICATION, b"late", "bob")
    assert await store.epoch_proposals(GID, 0) == [
        LogEntry(1, 0, LogKind.PROPOSAL, b"p0", "bob"),
        LogEntry(3, 0, LogKind.PROPOSAL, b"hub-p0", "hub")]
    assert await store.epoch_proposals(GID, 1) == [
        LogEntry(5, 1, LogKind.PROPOSAL, b"p1", "carol")]
    assert await store.epoch_proposals(GID, 2) == []
    with pytest.raises(UnknownGroup):
        await store.epoch_proposals(OTHER_GID, 0)


async def test_fault_reports_count_distinct_reporters_once(store: Store) -> None:
    await make_group(store)
    seq = await commit(store, 0)
    other = await commit(store, 1)
    assert await store.add_fault_report(GID, seq, "alice", "membership-tag", NOW) == 1
    assert await store.add_fault_report(GID, other, "alice", "membership-tag", NOW) == 1
    with pytest.raises(Conflict):
        await store.add_fault_report(GID, seq, "alice", "confirmation-tag", NOW + 1)
    assert await store.add_fault_report(GID, seq, "bob", "confirmation-tag", NOW) == 2
    with pytest.raises(Conflict):  # no such log entry
        await store.add_fault_report(GID, 99, "bob", "membership-tag", NOW)
    with pytest.raises(UnknownGroup):
        await store.add_fault_report(OTHER_GID, seq, "bob", "membership-tag", NOW)
    assert await store.add_fault_report(GID, seq, "carol", "path-secret", NOW) == 3
    assert await store.fault_reporters(GID, seq) == ["alice", "bob", "carol"]
    assert await store.fault_reporters(GID, other) == ["alice"]


async def test_bans_are_kept_per_group_and_go_with_it(store: Store) -> None:
    await make_group(store)
    await make_group(store, OTHER_GID)
    assert await store.bans(GID) == []
    assert await store.ban(GID, "mallory", "fault report", NOW) is True
    assert await store.ban(GID, "mallory", "again", NOW + 5) is False
    assert await store.ban(GID, "eve", "fault report", NOW + 1) is True
    assert await store.bans(GID) == [Ban("eve", "fault report", NOW + 1),
                                     Ban("mallory", "fault report", NOW)]
    assert await store.bans(OTHER_GID) == []
    seq = await commit(store, 0)
    await store.add_fault_report(GID, seq, "alice", "membership-tag", NOW)
    assert await store.delete_group(GID)
    await make_group(store)
    assert await store.bans(GID) == []
    assert await store.add_fault_report(GID, await commit(store, 0), "alice", "x", NOW) == 1
    with pytest.raises(UnknownGroup):
        await store.ban(b"\x00" * 32, "mallory", "fault report", NOW)
    with pytest.raises(UnknownGroup):
        await store.bans(b"\x00" * 32)
