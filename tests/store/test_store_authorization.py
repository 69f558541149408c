"""The store's part of the authorization model (docs/SECURITY.md), on SQLite and
PostgreSQL alike: member-since epochs, KeyPackage quotas, bounded outstanding claims
and XMPP room affiliations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.hub.store import (
    KeyPackageUnavailable,
    Member,
    SqliteStore,
    Store,
    StoreQuota,
    StoreUsageError,
    UnknownGroup,
)
from bridge.hub.store.base import load_migrations
from tests.store.test_store_contract import GID, NOW, OTHER_GID, SUITE, commit, make_group

DAY = 86400


async def test_member_since_follows_each_identity(store: Store) -> None:
    await store.create_group(GID, SUITE, hub_state=b"hs", members=[Member(0, "alice")])
    assert await store.member_since(GID, "alice") == 0
    assert await store.member_since(GID, "bob") is None
    await commit(store, 0, members=[Member(0, "alice"), Member(1, "bob")])
    await commit(store, 1, members=[Member(0, "alice"), Member(1, "bob"), Member(2, "bob")])
    assert await store.member_since(GID, "alice") == 0
    assert await store.member_since(GID, "bob") == 1  # a second device keeps the epoch
    await commit(store, 2, members=[Member(0, "alice")])
    assert await store.member_since(GID, "bob") is None
    await commit(store, 3, members=[Member(0, "alice"), Member(1, "bob")])
    assert await store.member_since(GID, "bob") == 4  # back again: a new start
    await store.set_members(GID, [Member(0, "alice"), Member(1, "bob"), Member(2, "carol")])
    assert await store.member_since(GID, "carol") == 4
    assert [m.identity for m in await store.get_members(GID)] == ["alice", "bob", "carol"]


async def test_key_package_quotas(store: Store) -> None:
    async def publish(ref: bytes, device: str = "phone", expires: int = NOW + DAY,
                      last_resort: bool = False) -> None:
        await store.publish_key_package("bob", device, SUITE, ref, b"kp" + ref, expires,
                                        last_resort, now=NOW, max_per_device=2, max_devices=2)

    await publish(b"r1")
    await publish(b"r2")
    with pytest.raises(StoreQuota):
        await publish(b"r3")
    await publish(b"r4", "laptop")
    with pytest.raises(StoreQuota):
        await publish(b"r5", "tablet")  # a third device
    assert sorted(kp.ref for kp in await store.list_key_packages("bob")) == [b"r1", b"r2",
                                                                            b"r4"]
    # Expired KeyPackages do not count against the quota.
    await store.publish_key_package("carol", "old", SUITE, b"c1", b"kp", NOW - 1, now=NOW,
                                    max_per_device=1, max_devices=1)
    await store.publish_key_package("carol", "new", SUITE, b"c2", b"kp", NOW + DAY, now=NOW,
                                    max_per_device=1, max_devices=1)
    # A refused publish leaves the previous last-resort KeyPackage in place.
    await store.publish_key_package("dave", "d", SUITE, b"d1", b"kp", NOW + DAY, True,
                                    now=NOW, max_per_device=1)
    with pytest.raises(StoreQuota):
        await store.publish_key_package("dave", "d", SUITE, b"d2", b"kp", NOW + DAY, False,
                                        now=NOW, max_per_device=1)
    assert [kp.ref for kp in await store.list_key_packages("dave")] == [b"d1"]


async def test_claims_are_bounded_until_the_commit_adds_the_target(store: Store) -> None:
    await make_group(store)
    await make_group(store, OTHER_GID)
    for n in range(6):
        await store.publish_key_package("bob", "phone", SUITE, b"r%d" % n, b"kp%d" % n,
                                        NOW + DAY)

    async def claim(claimer: str, group_id: bytes = GID, now: int = NOW) -> bytes:
        return await store.claim_key_package("bob", SUITE, now, group_id=group_id,
                                             claimer=claimer, max_outstanding=2,
                                             outstanding_since=now - 3600)

    await claim("alice")
    await claim("carol")
    with pytest.raises(StoreQuota):
        await claim("dave")  # two outstanding for (group, bob)
    assert len(await store.list_key_packages("bob")) == 4  # nothing consumed by the refusal
    await claim("alice", OTHER_GID)
    with pytest.raises(StoreQuota):
        await claim("alice", OTHER_GID)  # two outstanding for (alice, bob) across groups
    # The commit that adds bob to GID clears that group's claims.
    await commit(store, 0, welcome=b"w", welcome_recipients=["bob"])
    await claim("dave")
    # Claims older than the window are forgotten.
    await claim("erin", OTHER_GID, now=NOW + 7200)
    with pytest.raises(UnknownGroup):
        await claim("alice", b"\x07" * 32)


async def test_claims_never_exceed_the_bound_under_concurrency(store: Store) -> None:
    await make_group(store)
    for n in range(20):
        await store.publish_key_package("bob", "phone", SUITE, b"r%02d" % n, b"kp", NOW + DAY)

    async def claim(n: int) -> bool:
        try:
            await store.claim_key_package("bob", SUITE, NOW, group_id=GID,
                                          claimer=f"member{n}", max_outstanding=3,
                                          outstanding_since=0)
        except StoreQuota:
            return False
        return True

    results = await asyncio.gather(*(claim(n) for n in range(12)))
    assert sum(results) == 3
    assert len(await store.list_key_packages("bob")) == 17


async def test_last_resort_claims_are_bounded_but_never_consumed(store: Store) -> None:
    await make_group(store)
    await store.publish_key_package("bob", "phone", SUITE, b"lr", b"last", NOW + DAY, True)
    for claimer in ("alice", "carol"):
        assert await store.claim_key_package("bob", SUITE, NOW, group_id=GID, claimer=claimer,
                                             max_outstanding=2) == b"last"
    with pytest.raises(StoreQuota):
        await store.claim_key_package("bob", SUITE, NOW, group_id=GID, claimer="dave",
                                      max_outstanding=2)
    with pytest.raises(KeyPackageUnavailable):
        await store.claim_key_package("zed", SUITE, NOW, group_id=GID, claimer="dave",
                                      max_outstanding=2)
    assert [kp.ref for kp in await store.list_key_packages("bob")] == [b"lr"]


async def test_room_affiliations(store: Store) -> None:
    room = "room@mls.example"
    assert await store.room_affiliations() == {}
    await store.set_affiliation(room, "xmpp:alice@example.org", "owner")
    await store.set_affiliation(room, "xmpp:bob@example.org", "member")
    await store.set_affiliation(room, "xmpp:bob@example.org", "admin")
    await store.set_affiliation("other@mls.example", "xmpp:eve@example.org", "outcast")
    assert await store.room_affiliations() == {
        room: {"xmpp:alice@example.org": "owner", "xmpp:bob@example.org": "admin"},
        "other@mls.example": {"xmpp:eve@example.org": "outcast"}}
    await store.set_affiliation(room, "xmpp:bob@example.org", "none")
    await store.set_affiliation(room, "xmpp:nobody@example.org", "none")
    assert (await store.room_affiliations())[room] == {"xmpp:alice@example.org": "owner"}
    with pytest.raises(StoreUsageError):
        await store.set_affiliation(room, "xmpp:bob@example.org", "moderator")


async def test_upgrade_keeps_members_readable_from_epoch_0(tmp_path: Path) -> None:
    """Members stored before schema 3 had no join epoch: they keep reading from 0."""
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        for _, script in load_migrations("sqlite")[:2]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                     " applied TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        conn.executemany("INSERT INTO schema_version (version) VALUES (?)", [(1,), (2,)])
        conn.execute("INSERT INTO groups VALUES (?, 1, 5, 9, NULL, NULL, x'')", (GID,))
        conn.execute("INSERT INTO members VALUES (?, 0, 'alice')", (GID,))
    store = await SqliteStore.open(path)
    try:
        assert await store.member_since(GID, "alice") == 0
        await commit(store, 5, members=[Member(0, "alice"), Member(1, "bob")])
        assert (await store.member_since(GID, "alice"), await store.member_since(GID, "bob")
                ) == (0, 6)
    finally:
        await store.close()


async def test_groups_per_creator_are_bounded(store: Store) -> None:
    """docs/SECURITY.md, Limits: the groups one identity created that still exist."""
    for i in range(3):
        await store.create_group(bytes([i]) * 32, SUITE, hub_state=b"hs", creator="mallory",
                                 max_per_creator=3)
    with pytest.raises(StoreQuota):
        await store.create_group(b"\x09" * 32, SUITE, hub_state=b"hs", creator="mallory",
                                 max_per_creator=3)
    with pytest.raises(UnknownGroup):
        await store.get_group(b"\x09" * 32)  # refused: nothing written
    await store.create_group(b"\x0a" * 32, SUITE, hub_state=b"hs", creator="alice",
                             max_per_creator=3)  # everyone has their own quota
    assert await store.delete_group(bytes([0]) * 32)  # a deleted group frees its place
    await store.create_group(b"\x09" * 32, SUITE, hub_state=b"hs", creator="mallory",
                             max_per_creator=3)


async def test_concurrent_creations_do_not_overshoot_the_group_quota(store: Store) -> None:
    results = await asyncio.gather(*(
        store.create_group(bytes([i]) * 32, SUITE, hub_state=b"hs", creator="mallory",
                           max_per_creator=4) for i in range(12)), return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 4
    assert all(isinstance(r, StoreQuota) for r in results if isinstance(r, BaseException))


async def test_pending_welcomes_per_recipient_are_bounded(store: Store) -> None:
    """A commit whose Welcome would make a recipient's waiting Welcomes exceed the
    bound is refused (nothing changes); delivered ones free their place."""
    await make_group(store)
    for epoch in range(2):
        await commit(store, epoch, welcome=b"w%d" % epoch, welcome_recipients=["bob"],
                     max_pending_welcomes=2)
    with pytest.raises(StoreQuota):
        await commit(store, 2, welcome=b"w2", welcome_recipients=["carol", "bob"],
                     max_pending_welcomes=2)
    assert (await store.get_group(GID)).epoch == 2  # the refused commit changed nothing
    assert await store.pending_welcomes("carol") == []
    first = (await store.pending_welcomes("bob"))[0]
    assert await store.mark_delivered(first.welcome_id, "bob")
    await commit(store, 2, welcome=b"w2", welcome_recipients=["carol", "bob"],
                 max_pending_welcomes=2)
    assert [w.welcome for w in await store.pending_welcomes("bob")] == [b"w1", b"w2"]
