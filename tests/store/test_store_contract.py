"""The contract every hub store honours, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from bridge.hub.store import (
    Conflict,
    EpochMoved,
    GroupRecord,
    KeyPackageUnavailable,
    LogEntry,
    LogKind,
    Member,
    ProposalsNotCovered,
    RoomRef,
    SqliteStore,
    Store,
    StoreUsageError,
    UnknownGroup,
    WrongEpoch,
    open_store,
)
from bridge.hub.store.base import load_migrations
from tests.store.conftest import StoreFactory

GID = bytes(range(32))
OTHER_GID = bytes(range(1, 33))
SUITE = 1
NOW = 1_700_000_000


async def make_group(store: Store, group_id: bytes = GID, epoch: int = 0) -> GroupRecord:
    return await store.create_group(
        group_id, SUITE, epoch=epoch, group_info=b"gi0", ratchet_tree=b"tree0", hub_state=b"hs0"
    )


async def commit(store: Store, epoch: int, group_id: bytes = GID, **extra: object) -> int:
    """Accept a commit for ``epoch`` with distinct bytes per epoch."""
    return await store.accept_commit(
        group_id,
        epoch,
        b"commit-%d" % epoch,
        group_info=b"gi%d" % (epoch + 1),
        ratchet_tree=b"tree%d" % (epoch + 1),
        hub_state=b"hs%d" % (epoch + 1),
        **extra,  # type: ignore[arg-type]
    )


async def whole_log(store: Store, group_id: bytes = GID) -> list[LogEntry]:
    return await store.log_since(group_id, 0, 10_000)


# -- schema and groups ---------------------------------------------------------------


async def test_migrations_applied_once(store_factory: StoreFactory) -> None:
    first = await store_factory.open()
    assert await first.schema_version() == len(load_migrations(store_factory.backend))
    await first.close()
    again = await store_factory.open()
    assert await again.schema_version() == len(load_migrations(store_factory.backend))


async def test_log_entries_of_before_the_digest_index_are_found_as_replays(
    store_factory: StoreFactory,
) -> None:
    """Migration 0008 gives every entry logged before it its digest: a replay of one
    is still answered with its seq (the replay check searches the digest index)."""
    store = await store_factory.open()
    await make_group(store)
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"old", "alice") == 1
    await store_factory.close_all()
    undo = ["DROP INDEX log_digest", "ALTER TABLE log DROP COLUMN digest",
            "DELETE FROM schema_version WHERE version = 8"]
    if store_factory.backend == "sqlite":
        with sqlite3.connect(store_factory.path) as conn:
            for statement in undo:
                conn.execute(statement)
    else:
        conn = await asyncpg.connect(await store_factory.location())
        try:
            for statement in undo:
                await conn.execute(statement)
        finally:
            await conn.close()
    store = await store_factory.open()
    assert await store.schema_version() == 8
    again = store.append_message
    assert await again(GID, 0, LogKind.APPLICATION, b"old", "alice", replay_after=0) == 1
    assert await again(GID, 0, LogKind.APPLICATION, b"new", "bob", replay_after=0) == 2
    assert await again(GID, 0, LogKind.APPLICATION, b"new", "bob", replay_after=0) == 2
    assert [entry.payload for entry in await whole_log(store)] == [b"old", b"new"]


async def test_create_and_get_group(store: Store) -> None:
    created = await make_group(store, epoch=3)
    assert created == GroupRecord(GID, SUITE, 3, 1, b"gi0", b"tree0", b"hs0")
    assert await store.get_group(GID) == created
    minimal = await store.create_group(OTHER_GID, 2)
    assert await store.get_group(OTHER_GID) == minimal
    assert (minimal.group_info, minimal.ratchet_tree, minimal.hub_state) == (None, None, b"")


async def test_duplicate_and_unknown_groups(store: Store) -> None:
    await make_group(store)
    with pytest.raises(Conflict):
        await make_group(store, epoch=5)
    assert (await store.get_group(GID)).epoch == 0
    with pytest.raises(UnknownGroup):
        await store.get_group(OTHER_GID)
    with pytest.raises(UnknownGroup):
        await commit(store, 0, group_id=OTHER_GID)
    with pytest.raises(UnknownGroup):
        await store.append_message(OTHER_GID, 0, LogKind.APPLICATION, b"x", "a")
    with pytest.raises(UnknownGroup):
        await store.log_since(OTHER_GID)
    with pytest.raises(StoreUsageError):
        await store.create_group(OTHER_GID, SUITE, epoch=-1)


async def test_delete_group_cascades(store: Store) -> None:
    await make_group(store)
    await store.attach_room("xmpp", "room@mls.example", GID)
    await store.queue_proposal(GID, 0, b"ref", b"prop", "alice")
    await commit(store, 0, welcome=b"w", welcome_recipients=["bob"], covered_proposals=[b"ref"])
    await store.set_members(GID, [Member(0, "alice")])
    assert await store.delete_group(GID) is True
    assert await store.delete_group(GID) is False
    assert await store.room_group("xmpp", "room@mls.example") is None
    assert await store.pending_welcomes("bob") == []
    await make_group(store)
    assert await whole_log(store) == []
    assert await store.get_members(GID) == []


# -- the ordering primitive -----------------------------------------------------------


async def test_accept_commit_advances_epoch(store: Store) -> None:
    await make_group(store)
    assert await commit(store, 0, sender="alice") == 1
    assert await store.get_group(GID) == GroupRecord(GID, SUITE, 1, 2, b"gi1", b"tree1", b"hs1")
    assert await commit(store, 1) == 2
    await store.accept_commit(GID, 2, b"commit-2", hub_state=b"hs3")
    record = await store.get_group(GID)
    assert (record.epoch, record.next_seq, record.group_info, record.ratchet_tree) == (
        3,
        4,
        None,
        None,
    )
    assert await whole_log(store) == [
        LogEntry(1, 0, LogKind.COMMIT, b"commit-0", "alice"),
        LogEntry(2, 1, LogKind.COMMIT, b"commit-1", ""),
        LogEntry(3, 2, LogKind.COMMIT, b"commit-2", ""),
    ]


async def test_stale_commit_raises_wrong_epoch_and_changes_nothing(store: Store) -> None:
    await make_group(store)
    await commit(store, 0)
    await commit(store, 1)
    await store.queue_proposal(GID, 2, b"ref-a", b"proposal-a", "carol")
    await store.set_members(GID, [Member(0, "alice"), Member(1, "bob")])
    before = (
        await store.get_group(GID),
        await whole_log(store),
        await store.queued_proposals(GID, 2),
        await store.get_members(GID),
    )
    for stale in (0, 1, 3, 99):
        with pytest.raises(WrongEpoch) as caught:
            await store.accept_commit(
                GID,
                stale,
                b"loser",
                group_info=b"bad",
                ratchet_tree=b"bad",
                hub_state=b"bad",
                welcome=b"bad-welcome",
                welcome_recipients=["dave"],
                members=[Member(0, "mallory")],
            )
        assert caught.value.current_epoch == 2
        assert "current 2" in str(caught.value)
    after = (
        await store.get_group(GID),
        await whole_log(store),
        await store.queued_proposals(GID, 2),
        await store.get_members(GID),
    )
    assert after == before
    assert await store.pending_welcomes("dave") == []


async def test_concurrent_commits_one_winner_per_epoch(store: Store) -> None:
    await make_group(store)
    outcomes = await asyncio.gather(
        *(store.accept_commit(GID, 0, b"c%d" % i, hub_state=b"") for i in range(10)),
        return_exceptions=True,
    )
    winners = [outcome for outcome in outcomes if isinstance(outcome, int)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, WrongEpoch)]
    assert winners == [1]
    assert len(losers) == 9
    assert all(loser.current_epoch == 1 for loser in losers)
    log = await whole_log(store)
    assert [(entry.seq, entry.epoch, entry.kind) for entry in log] == [(1, 0, LogKind.COMMIT)]


# -- the log ---------------------------------------------------------------------------


async def test_messages_share_the_sequence_with_commits(store: Store) -> None:
    await make_group(store)
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"m1", "alice") == 1
    assert await store.append_message(GID, 0, "proposal", b"p1", "bob") == 2
    assert await commit(store, 0) == 3
    assert await store.append_message(GID, 1, LogKind.APPLICATION, b"m2", "bob") == 4
    # An older epoch is the caller's call; the store keeps the epoch with the row.
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"late", "carol") == 5
    with pytest.raises(WrongEpoch) as caught:
        await store.append_message(GID, 2, LogKind.APPLICATION, b"future", "eve")
    assert caught.value.current_epoch == 1
    assert await whole_log(store) == [
        LogEntry(1, 0, LogKind.APPLICATION, b"m1", "alice"),
        LogEntry(2, 0, LogKind.PROPOSAL, b"p1", "bob"),
        LogEntry(3, 0, LogKind.COMMIT, b"commit-0", ""),
        LogEntry(4, 1, LogKind.APPLICATION, b"m2", "bob"),
        LogEntry(5, 0, LogKind.APPLICATION, b"late", "carol"),
    ]
    assert (await store.get_group(GID)).next_seq == 6


async def test_append_message_refuses_commits_and_unknown_kinds(store: Store) -> None:
    await make_group(store)
    with pytest.raises(StoreUsageError):
        await store.append_message(GID, 0, LogKind.COMMIT, b"c", "alice")
    with pytest.raises(StoreUsageError):
        await store.append_message(GID, 0, "gossip", b"c", "alice")
    with pytest.raises(StoreUsageError):
        await store.append_message(GID, -1, LogKind.APPLICATION, b"c", "alice")
    assert await whole_log(store) == []


async def test_append_message_answers_a_replay_within_the_window_with_its_seq(
        store: Store) -> None:
    await make_group(store)
    await make_group(store, OTHER_GID)
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"m1", "alice") == 1
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"m2", "bob") == 2
    await store.append_message(OTHER_GID, 0, LogKind.APPLICATION, b"m3", "zed")
    again = store.append_message
    assert await again(GID, 0, LogKind.APPLICATION, b"m2", "bob", replay_after=0) == 2
    assert await again(GID, 0, LogKind.APPLICATION, b"m1", "alice", replay_after=0) == 1
    # beyond the window, or another group's entry: a new entry
    assert await again(GID, 0, LogKind.APPLICATION, b"m1", "alice", replay_after=1) == 3
    assert await again(GID, 0, LogKind.APPLICATION, b"m3", "zed", replay_after=0) == 4
    assert [entry.payload for entry in await whole_log(store)] == [b"m1", b"m2", b"m1", b"m3"]
    assert (await store.get_group(GID)).next_seq == 5


async def test_append_message_at_a_moved_epoch_appends_nothing(store: Store) -> None:
    """``at_epoch``: the caller's cached epoch; the store checks it in the appending
    transaction (a replay is still answered with its seq)."""
    await make_group(store)
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"m1", "alice",
                                      at_epoch=0) == 1
    await commit(store, 0)
    with pytest.raises(EpochMoved) as moved:
        await store.append_message(GID, 0, LogKind.APPLICATION, b"m2", "bob", at_epoch=0)
    assert moved.value.current_epoch == 1
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"m1", "alice",
                                      replay_after=0, at_epoch=0) == 1
    assert await store.append_message(GID, 1, LogKind.APPLICATION, b"m3", "bob",
                                      at_epoch=1) == 3
    assert [entry.payload for entry in await whole_log(store)] == [b"m1", b"commit-0", b"m3"]
    assert (await store.get_group(GID)).next_seq == 4


async def test_log_since_orders_and_pages(store: Store) -> None:
    await make_group(store)
    await make_group(store, OTHER_GID)
    for i in range(25):
        if i % 5 == 4:
            await commit(store, i // 5)
        else:
            await store.append_message(GID, i // 5, LogKind.APPLICATION, b"m%d" % i, "alice")
        await store.append_message(OTHER_GID, 0, LogKind.APPLICATION, b"o%d" % i, "zed")
    pages: list[LogEntry] = []
    after = 0
    while batch := await store.log_since(GID, after, 7):
        assert len(batch) <= 7
        pages.extend(batch)
        after = batch[-1].seq
    assert [entry.seq for entry in pages] == list(range(1, 26))
    assert [entry.epoch for entry in pages] == [i // 5 for i in range(25)]
    assert [entry.kind for entry in pages].count(LogKind.COMMIT) == 5
    assert all(entry.sender != "zed" for entry in pages)
    assert [entry.seq for entry in await store.log_since(GID, 20, 100)] == [21, 22, 23, 24, 25]
    assert await store.log_since(GID, 25) == []
    with pytest.raises(StoreUsageError):
        await store.log_since(GID, -1)
    with pytest.raises(StoreUsageError):
        await store.log_since(GID, 0, 0)


# -- proposals -------------------------------------------------------------------------


async def test_queued_proposals_are_logged_and_cleared_by_the_commit(store: Store) -> None:
    await make_group(store)
    assert await store.queue_proposal(GID, 0, b"ref-1", b"prop-1", "alice") == 1
    assert await store.append_message(GID, 0, LogKind.APPLICATION, b"hello", "bob") == 2
    assert await store.queue_proposal(GID, 0, b"ref-2", b"prop-2", "bob") == 3
    queued = await store.queued_proposals(GID, 0)
    assert [(q.proposal_ref, q.seq, q.epoch, q.payload, q.sender) for q in queued] == [
        (b"ref-1", 1, 0, b"prop-1", "alice"),
        (b"ref-2", 3, 0, b"prop-2", "bob"),
    ]
    assert [entry.kind for entry in await whole_log(store)] == [
        LogKind.PROPOSAL,
        LogKind.APPLICATION,
        LogKind.PROPOSAL,
    ]
    with pytest.raises(Conflict):
        await store.queue_proposal(GID, 0, b"ref-1", b"again", "alice")
    with pytest.raises(WrongEpoch):
        await store.queue_proposal(GID, 1, b"ref-3", b"future", "alice")
    with pytest.raises(ProposalsNotCovered) as caught:
        await commit(store, 0, covered_proposals=[b"ref-2", b"unrelated"])
    assert caught.value.missing == (b"ref-1",)
    assert (await store.get_group(GID)).epoch == 0
    assert len(await whole_log(store)) == 3
    assert await commit(store, 0, covered_proposals={b"ref-1", b"ref-2"}) == 4
    assert await store.queued_proposals(GID, 0) == []
    assert await store.queued_proposals(GID, 1) == []
    with pytest.raises(WrongEpoch) as stale:
        await store.queue_proposal(GID, 0, b"ref-late", b"late", "carol")
    assert stale.value.current_epoch == 1


async def test_commit_without_coverage_check_voids_the_epoch_queue(store: Store) -> None:
    await make_group(store)
    await store.queue_proposal(GID, 0, b"ref-1", b"prop-1", "alice")
    await commit(store, 0)
    assert await store.queued_proposals(GID, 0) == []
    # The proposal stays in the log: members saw it; the commit made it void.
    assert [entry.kind for entry in await whole_log(store)] == [LogKind.PROPOSAL, LogKind.COMMIT]


# -- members ---------------------------------------------------------------------------


async def test_members(store: Store) -> None:
    await store.create_group(GID, SUITE, members=[Member(1, "bob"), Member(0, "alice")])
    assert await store.get_members(GID) == [Member(0, "alice"), Member(1, "bob")]
    await store.set_members(GID, [(0, "alice"), (2, "carol")])  # type: ignore[list-item]
    assert await store.get_members(GID) == [(0, "alice"), (2, "carol")]
    await commit(store, 0, members=[Member(0, "alice")])
    assert await store.get_members(GID) == [Member(0, "alice")]
    await commit(store, 1)  # members not given: unchanged
    assert await store.get_members(GID) == [Member(0, "alice")]
    with pytest.raises(StoreUsageError):
        await store.set_members(GID, [Member(0, "a"), Member(0, "b")])
    assert await store.get_members(GID) == [Member(0, "alice")]
    with pytest.raises(UnknownGroup):
        await store.set_members(OTHER_GID, [])
    with pytest.raises(UnknownGroup):
        await store.get_members(OTHER_GID)


# -- Welcomes --------------------------------------------------------------------------


async def test_welcomes_are_held_until_delivered(store: Store) -> None:
    await make_group(store)
    seq = await commit(store, 0, welcome=b"welcome-1", welcome_recipients=["bob", "carol"])
    await commit(store, 1, welcome=b"welcome-2", welcome_recipients=["bob"])
    bob = await store.pending_welcomes("bob")
    assert [(w.recipient, w.group_id, w.epoch, w.welcome) for w in bob] == [
        ("bob", GID, 1, b"welcome-1"),
        ("bob", GID, 2, b"welcome-2"),
    ]
    assert bob[0].commit_seq == seq
    assert bob[0].welcome_id < bob[1].welcome_id
    carol = await store.pending_welcomes("carol")
    assert [w.welcome for w in carol] == [b"welcome-1"]
    assert await store.mark_delivered(bob[0].welcome_id, "bob") is True
    assert await store.mark_delivered(bob[0].welcome_id, "bob") is False
    assert [w.welcome for w in await store.pending_welcomes("bob")] == [b"welcome-2"]
    assert [w.welcome for w in await store.pending_welcomes("carol")] == [b"welcome-1"]
    assert await store.mark_delivered(carol[0].welcome_id, "carol") is True
    assert await store.pending_welcomes("carol") == []
    assert await store.pending_welcomes("nobody") == []


async def test_welcome_and_recipients_go_together(store: Store) -> None:
    await make_group(store)
    with pytest.raises(StoreUsageError):
        await commit(store, 0, welcome=b"w")
    with pytest.raises(StoreUsageError):
        await commit(store, 0, welcome_recipients=["bob"])
    assert (await store.get_group(GID)).epoch == 0


# -- KeyPackage directory --------------------------------------------------------------


async def test_publish_and_list_key_packages(store: Store) -> None:
    await store.publish_key_package("alice", "phone", SUITE, b"r1", b"kp1", NOW + 100)
    await store.publish_key_package("alice", "laptop", SUITE, b"r2", b"kp2", NOW + 50)
    await store.publish_key_package("alice", "phone", 3, b"r3", b"kp3", NOW + 10, last_resort=True)
    await store.publish_key_package("bob", "phone", SUITE, b"r4", b"kp4", NOW + 10)
    listed = await store.list_key_packages("alice")
    assert [(k.ref, k.device, k.cipher_suite, k.expires_at, k.last_resort) for k in listed] == [
        (b"r2", "laptop", SUITE, NOW + 50, False),
        (b"r1", "phone", SUITE, NOW + 100, False),
        (b"r3", "phone", 3, NOW + 10, True),
    ]
    assert {k.user for k in listed} == {"alice"}
    assert [k.ref for k in await store.list_key_packages("alice", "phone")] == [b"r1", b"r3"]
    assert await store.list_key_packages("nobody") == []
    with pytest.raises(Conflict):
        await store.publish_key_package("carol", "x", SUITE, b"r1", b"other", NOW + 100)


async def test_claim_consumes_soonest_expiring_and_skips_expired(store: Store) -> None:
    await store.publish_key_package("alice", "phone", SUITE, b"late", b"kp-late", NOW + 300)
    await store.publish_key_package("alice", "phone", SUITE, b"soon", b"kp-soon", NOW + 100)
    await store.publish_key_package("alice", "phone", SUITE, b"old", b"kp-old", NOW - 1)
    await store.publish_key_package("alice", "phone", 2, b"suite2", b"kp-suite2", NOW + 300)
    assert await store.claim_key_package("alice", SUITE, NOW) == b"kp-soon"
    assert await store.claim_key_package("alice", SUITE, NOW) == b"kp-late"
    with pytest.raises(KeyPackageUnavailable):
        await store.claim_key_package("alice", SUITE, NOW)
    assert [k.ref for k in await store.list_key_packages("alice")] == [b"old", b"suite2"]
    # Usable through its expiry second, not after.
    await store.publish_key_package("alice", "phone", SUITE, b"edge", b"kp-edge", NOW)
    with pytest.raises(KeyPackageUnavailable):
        await store.claim_key_package("alice", SUITE, NOW + 1)
    assert await store.claim_key_package("alice", SUITE, NOW) == b"kp-edge"
    with pytest.raises(KeyPackageUnavailable):
        await store.claim_key_package("bob", SUITE, NOW)


async def test_last_resort_is_returned_but_not_consumed(store: Store) -> None:
    await store.publish_key_package("alice", "phone", SUITE, b"lr", b"kp-lr", NOW + 500, True)
    await store.publish_key_package("alice", "phone", SUITE, b"one", b"kp-one", NOW + 900)
    assert await store.claim_key_package("alice", SUITE, NOW) == b"kp-one"
    for _ in range(3):
        assert await store.claim_key_package("alice", SUITE, NOW) == b"kp-lr"
    assert [k.ref for k in await store.list_key_packages("alice")] == [b"lr"]
    # A new last resort for the same device and suite replaces the old one.
    await store.publish_key_package("alice", "phone", SUITE, b"lr2", b"kp-lr2", NOW + 600, True)
    assert [k.ref for k in await store.list_key_packages("alice")] == [b"lr2"]
    assert await store.claim_key_package("alice", SUITE, NOW) == b"kp-lr2"
    # An expired last resort is never returned.
    with pytest.raises(KeyPackageUnavailable):
        await store.claim_key_package("alice", SUITE, NOW + 601)


async def test_claim_for_one_device(store: Store) -> None:
    await store.publish_key_package("alice", "phone", SUITE, b"p", b"kp-phone", NOW + 10)
    await store.publish_key_package("alice", "laptop", SUITE, b"l", b"kp-laptop", NOW + 20)
    await store.publish_key_package(
        "alice", "laptop", SUITE, b"llr", b"kp-laptop-lr", NOW + 20, True
    )
    assert await store.claim_key_package("alice", SUITE, NOW, device="laptop") == b"kp-laptop"
    assert await store.claim_key_package("alice", SUITE, NOW, device="laptop") == b"kp-laptop-lr"
    assert await store.claim_key_package("alice", SUITE, NOW, device="phone") == b"kp-phone"
    with pytest.raises(KeyPackageUnavailable) as caught:
        await store.claim_key_package("alice", SUITE, NOW, device="phone")
    assert caught.value.device == "phone"


@pytest.mark.parametrize("with_last_resort", [False, True])
async def test_claim_is_atomic_under_concurrent_claimers(
    store: Store, with_last_resort: bool
) -> None:
    ordinary = {b"kp-%02d" % i for i in range(12)}
    for i, key_package in enumerate(sorted(ordinary)):
        await store.publish_key_package("alice", f"dev{i % 3}", SUITE, b"ref%d" % i, key_package,
                                        NOW + 100 + i % 4)  # fmt: skip
    if with_last_resort:
        await store.publish_key_package("alice", "dev0", SUITE, b"lr", b"kp-lr", NOW + 100, True)
    outcomes = await asyncio.gather(
        *(store.claim_key_package("alice", SUITE, NOW) for _ in range(20)),
        return_exceptions=True,
    )
    handed_out = [outcome for outcome in outcomes if isinstance(outcome, bytes)]
    failures = [outcome for outcome in outcomes if not isinstance(outcome, bytes)]
    ordinary_out = [kp for kp in handed_out if kp in ordinary]
    assert sorted(ordinary_out) == sorted(ordinary)  # each handed out exactly once
    if with_last_resort:
        assert failures == []
        assert handed_out.count(b"kp-lr") == 8
        assert [k.ref for k in await store.list_key_packages("alice")] == [b"lr"]
    else:
        assert len(failures) == 8
        assert all(isinstance(failure, KeyPackageUnavailable) for failure in failures)
        assert await store.list_key_packages("alice") == []


async def test_purge_expired(store: Store) -> None:
    await store.publish_key_package("alice", "a", SUITE, b"1", b"x1", NOW - 10)
    await store.publish_key_package("alice", "a", SUITE, b"2", b"x2", NOW - 1, True)
    await store.publish_key_package("alice", "a", SUITE, b"3", b"x3", NOW)
    await store.publish_key_package("bob", "b", SUITE, b"4", b"x4", NOW + 10)
    assert await store.purge_expired(NOW) == 2
    assert await store.purge_expired(NOW) == 0
    remaining = await store.list_key_packages("alice") + await store.list_key_packages("bob")
    assert [k.ref for k in remaining] == [b"3", b"4"]


async def test_the_directory_remembers_who_published_a_key_package(store: Store) -> None:
    """The hub ties Adds of basic credentials to the directory: a ref names its
    publisher while it is held, after it is claimed, until it expires and is purged."""
    await store.publish_key_package("alice", "a", SUITE, b"held", b"x1", NOW + 10)
    await store.publish_key_package("bob", "b", SUITE, b"claimed", b"x2", NOW + 10)
    await store.publish_key_package("bob", "b", SUITE, b"expired", b"x3", NOW - 1)
    assert await store.claim_key_package("bob", SUITE, NOW) == b"x2"
    assert await store.key_package_publisher(b"held") == "alice"
    assert await store.key_package_publisher(b"claimed") == "bob"
    assert await store.key_package_publisher(b"never") is None
    with pytest.raises(Conflict):  # a second publication changes no publisher
        await store.publish_key_package("mallory", "m", SUITE, b"held", b"x1", NOW + 10)
    assert await store.key_package_publisher(b"held") == "alice"
    assert await store.purge_expired(NOW) == 1
    assert await store.key_package_publisher(b"expired") is None
    assert await store.key_package_publisher(b"claimed") == "bob"


# -- rooms and cursors -----------------------------------------------------------------


async def test_rooms(store: Store) -> None:
    await make_group(store)
    await make_group(store, OTHER_GID)
    await store.attach_room("xmpp", "room@mls.example", GID)
    await store.attach_room("matrix", "!abc:example.org", GID)
    await store.attach_room("xmpp", "room@mls.example", GID)  # idempotent
    await store.attach_room("xmpp", "other@mls.example", OTHER_GID)
    assert await store.room_group("xmpp", "room@mls.example") == GID
    assert await store.room_group("matrix", "!abc:example.org") == GID
    assert await store.room_group("matrix", "room@mls.example") is None
    assert await store.group_rooms(GID) == [
        RoomRef("matrix", "!abc:example.org"),
        RoomRef("xmpp", "room@mls.example"),
    ]
    assert await store.group_rooms(OTHER_GID) == [("xmpp", "other@mls.example")]
    with pytest.raises(Conflict):
        await store.attach_room("xmpp", "room@mls.example", OTHER_GID)
    with pytest.raises(UnknownGroup):
        await store.attach_room("xmpp", "new@mls.example", b"\x00" * 32)
    assert await store.detach_room("matrix", "!abc:example.org") is True
    assert await store.detach_room("matrix", "!abc:example.org") is False
    assert await store.group_rooms(GID) == [RoomRef("xmpp", "room@mls.example")]


async def test_cursors(store: Store) -> None:
    assert await store.get_cursor("matrix") is None
    await store.set_cursor("matrix", "s1_2_3")
    await store.set_cursor("xmpp", "mam-17")
    await store.set_cursor("matrix", "s4_5_6")
    assert await store.get_cursor("matrix") == "s4_5_6"
    assert await store.get_cursor("xmpp") == "mam-17"


# -- durability ------------------------------------------------------------------------


async def test_seen_keys_are_marked_once_and_pruned_by_age(store: Store) -> None:
    assert not await store.is_seen("@bot:hs", "ev:1")
    assert await store.mark_seen("@bot:hs", "ev:1", 1000)
    assert not await store.mark_seen("@bot:hs", "ev:1", 5000)  # the first time is kept
    assert await store.mark_seen("@bot:hs", "ev:2", 3000)
    assert await store.mark_seen("@bot:hs:txn", "ev:1", 500)  # scopes are separate
    assert await store.is_seen("@bot:hs", "ev:1")
    assert not await store.is_seen("@bot:hs", "ev:3")
    assert await store.prune_seen(2000) == 2
    assert not await store.is_seen("@bot:hs", "ev:1")
    assert not await store.is_seen("@bot:hs:txn", "ev:1")
    assert await store.is_seen("@bot:hs", "ev:2")
    assert await store.prune_seen(2000) == 0


async def test_reopen_keeps_everything_accepted(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await make_group(store)
    await store.append_message(GID, 0, LogKind.APPLICATION, b"hello", "alice")
    await commit(store, 0, welcome=b"welcome", welcome_recipients=["bob"], sender="alice")
    await store.queue_proposal(GID, 1, b"ref", b"proposal", "bob")
    await store.set_members(GID, [Member(0, "alice"), Member(1, "bob")])
    await store.publish_key_package("carol", "phone", SUITE, b"kp", b"kp-bytes", NOW + 10)
    await store.attach_room("xmpp", "room@mls.example", GID)
    await store.set_cursor("matrix", "token")
    before = (
        await store.get_group(GID),
        await whole_log(store),
        await store.queued_proposals(GID, 1),
        await store.get_members(GID),
        await store.list_key_packages("carol"),
        await store.group_rooms(GID),
        await store.pending_welcomes("bob"),
    )
    await store.close()

    reopened = await store_factory.open()
    after = (
        await reopened.get_group(GID),
        await whole_log(reopened),
        await reopened.queued_proposals(GID, 1),
        await reopened.get_members(GID),
        await reopened.list_key_packages("carol"),
        await reopened.group_rooms(GID),
        await reopened.pending_welcomes("bob"),
    )
    assert after == before
    assert await reopened.get_cursor("matrix") == "token"
    assert await reopened.claim_key_package("carol", SUITE, NOW) == b"kp-bytes"
    assert await commit(reopened, 1, covered_proposals=[b"ref"]) == 4


async def test_closed_store_refuses_work(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUsageError):
        await store.get_cursor("matrix")


async def test_open_store_by_url(store_factory: StoreFactory) -> None:
    store = await open_store(await store_factory.location())
    try:
        await make_group(store)
        assert (await store.get_group(GID)).cipher_suite == SUITE
    finally:
        await store.close()
    with pytest.raises(StoreUsageError):
        await open_store("mysql://nope")


async def test_sqlite_runs_durable_wal_with_foreign_keys(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "hub.db")
    try:
        pragmas = {}
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
            # the store's own connection, on its thread: these pragmas are per connection
            pragmas[name] = await store._call(
                lambda conn, name=name: conn.execute(f"PRAGMA {name}").fetchone()[0])
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["synchronous"] == 2  # FULL
        assert pragmas["foreign_keys"] == 1
        assert pragmas["busy_timeout"] > 0
    finally:
        await store.close()


async def test_upgrade_drops_the_old_unbounded_seen_cursors(tmp_path: Path) -> None:
    """Schema 1 kept handled Matrix ids as cursors forever; schema 2 moves that to the
    pruned ``seen`` table and drops the old rows, keeping every other cursor."""
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(load_migrations("sqlite")[0][1])
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                     " applied TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.executemany("INSERT INTO cursors (name, value) VALUES (?, ?)", [
            ("im.mlsbridge.seen:@hub:hs:ev:$abc", "1"),
            ("im.mlsbridge.sync:@hub:hs", "s72_1"),
            ("relay:puppets", "[]")])
    store = await SqliteStore.open(path)
    try:
        assert await store.schema_version() == len(load_migrations("sqlite"))
        assert await store.get_cursor("im.mlsbridge.seen:@hub:hs:ev:$abc") is None
        assert await store.get_cursor("im.mlsbridge.sync:@hub:hs") == "s72_1"
        assert await store.get_cursor("relay:puppets") == "[]"
    finally:
        await store.close()


async def test_upgrade_remembers_the_key_packages_already_held(tmp_path: Path) -> None:
    """Schema 3 adds the directory's memory of published refs, filled from the
    KeyPackages the directory holds at the upgrade."""
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        for _, script in load_migrations("sqlite")[:2]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                     " applied TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1), (2)")
        conn.execute("INSERT INTO key_packages (ref, user_id, device, cipher_suite,"
                     " key_package, expires_at, last_resort) VALUES (?, ?, ?, ?, ?, ?, 0)",
                     (b"r1", "alice", "phone", SUITE, b"kp", NOW + 10))
    store = await SqliteStore.open(path)
    try:
        assert await store.schema_version() == len(load_migrations("sqlite"))
        assert await store.key_package_publisher(b"r1") == "alice"
    finally:
        await store.close()
