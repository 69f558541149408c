"""A commit that passes every public check but that no member can process (here: a
zeroed membership tag, which only members can verify) costs one round of resyncs,
then its committer is out: members report it, the hub removes and bans the committer
after ``fault_quorum`` reports, and the attack cannot be repeated (SECURITY.md A21,
:mod:`bridge.hub.faults`, :mod:`bridge.member.recovery`)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.hub import HubConfig
from bridge.hub.policy import JoinPolicy
from bridge.hub.removals import FAULT, Removal
from bridge.hub.store import Ban, LogKind
from bridge.member import Member
from bridge.member.recovery import Recovery, fault_reason
from mls import (
    ConfirmationTagError,
    CryptoError,
    EpochError,
    MembershipTagError,
    MLSMessage,
    PathSecretError,
    PublicMessage,
    ValidationError,
    encode,
)
from mls.group.group import Group
from tests.bridge.conftest import Harness
from tests.hostile.conftest import NOW, Bench, bundle, identity, three_member_bench
from transports.errors import LinkError
from transports.interface import Inbound, Op, Outbound


def zero_membership_tag(message: MLSMessage) -> MLSMessage:
    body = message.body
    assert isinstance(body, PublicMessage) and body.membership_tag is not None
    return MLSMessage.wrap(dataclasses.replace(body, membership_tag=bytes(32)))


async def forged_commit(member: Member, group_id: bytes, rng: random.Random) -> Inbound:
    """A commit of ``member``'s that is valid in every way but its membership tag."""
    staged = member.group(group_id).commit(rng=rng.randbytes, force_path=True)
    return Inbound(Op.SUBMIT_COMMIT, member.identity, group_id=group_id,
                   payload=encode(zero_membership_tag(staged.message)),
                   group_info=encode(MLSMessage.wrap(staged.group_info)))


async def snapshot(harness: Harness, group_id: bytes) -> tuple[object, ...]:
    store = harness.store
    assert store is not None
    record = await store.get_group(group_id)
    return (record, await store.log_since(group_id, 0, 1000),
            await store.queued_proposals(group_id, record.epoch),
            await store.get_members(group_id), await store.bans(group_id))


async def test_a_zeroed_membership_tag_costs_one_round_then_the_committer_is_out(
        harness: Harness) -> None:
    names = ("alice", "bob", "carol")
    alice, bob, carol = [await harness.member(name) for name in names]
    mallory = await harness.member("mallory", auto_resync=False)
    group_id = await alice.create_group()
    await alice.add_members(group_id, [bob.identity, carol.identity, mallory.identity])
    await harness.quiesce()
    honest = [alice, bob, carol]
    hub, store = harness.hub, harness.store
    assert hub is not None and store is not None
    first_attack = await snapshot(harness, group_id)

    # Mallory's commit passes the hub's checks (they need no secret) and is fanned out.
    rng = random.Random(5)
    attack = await forged_commit(mallory, group_id, rng)
    accepted = await harness.ask(attack)
    assert accepted.ok
    await harness.quiesce()

    # Each honest member failed it once, reported it once and resynced once.
    assert [m.recovery.reports for m in honest] == [1, 1, 1]
    assert [m.recovery.resyncs for m in honest] == [1, 1, 1]
    log = await store.log_since(group_id, accepted.seq, 1000)
    external = [entry.sender for entry in log if entry.kind == LogKind.COMMIT]
    assert sorted(external) == sorted(m.identity for m in honest)
    assert await store.bans(group_id) == [Ban(mallory.identity, "fault report", NOW)]

    # The hub's Remove of Mallory (reason: fault) is pending for whoever commits next.
    last = (await store.log_since(group_id, accepted.seq, 1000))[-1]
    assert last.kind == LogKind.PROPOSAL and last.sender == "hub"
    pending = alice.group(group_id).state.pending
    assert Removal.decode(pending[-1].authenticated.content.authenticated_data) == Removal(
        FAULT, hub.identity.name)
    assert await alice.commit_pending(group_id)
    await harness.quiesce()
    members = {m.identity for m in await store.get_members(group_id)}
    assert members == {m.identity for m in honest}
    assert len({m.group(group_id).epoch_authenticator() for m in honest}) == 1
    sent = await carol.send_text(group_id, "after the storm")
    await harness.quiesce()
    assert [r.content for r in bob.received(group_id)][-1] == sent
    assert [m.recovery.resyncs for m in honest] == [1, 1, 1]  # still one each

    # Mallory cannot do it again: no commit, no external join, no GroupInfo -- the ban
    # refuses her even where the join policy would let anyone in.
    hub.config = dataclasses.replace(hub.config, default_join=JoinPolicy.OPEN)
    before = await snapshot(harness, group_id)
    assert before != first_attack
    replay = await harness.ask(attack)
    assert (replay.ok, replay.code) == (False, "forbidden")
    joined, commit = Group.join_external(
        alice.group(group_id).group_info(), credential=mallory.credential,
        signature_priv=mallory._signature_priv, rng=rng.randbytes, now=NOW)
    rejoin = await harness.ask(Inbound(
        Op.SUBMIT_COMMIT, mallory.identity, group_id=group_id, payload=encode(commit),
        group_info=encode(MLSMessage.wrap(joined.group_info()))))
    info = await harness.ask(Inbound(Op.GET_GROUP_INFO, mallory.identity, group_id=group_id))
    assert [(r.ok, r.code) for r in (rejoin, info)] == [(False, "forbidden")] * 2
    assert await snapshot(harness, group_id) == before


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async for value in three_member_bench(tmp_path):
        yield value


async def refused(bench: Bench, request: Inbound, code: str) -> Outbound:
    bans = await bench.store.bans(bench.group_id)
    reply = await bench.refused(request, code)
    assert await bench.store.bans(bench.group_id) == bans
    return reply


async def test_reports_are_taken_from_members_once_per_commit(bench: Bench) -> None:
    staged = bench.groups["carol"].commit(rng=bench.draw, force_path=True)
    await bench.commit("carol", staged, "alice", "bob")
    seq = (await bench.store.log_since(bench.group_id, 0, 100))[-1].seq
    bench.groups["bob"], message = bench.groups["bob"].encrypt(b"hi", rng=bench.draw)
    application = (await bench.accepted(bench.send_request(identity("bob"), message))).seq

    def report(name: str, **fields: object) -> Inbound:
        values: dict[str, object] = {"group_id": bench.group_id, "seq": seq,
                                     "reason": "confirmation-tag", **fields}
        return Inbound(Op.REPORT, identity(name), **values)  # type: ignore[arg-type]

    await refused(bench, report("mallory"), "not-member")
    await refused(bench, report("carol"), "forbidden")  # one's own commit
    await refused(bench, report("alice", seq=application), "malformed")  # not a commit
    await refused(bench, report("alice", seq=seq + 5), "malformed")
    await refused(bench, report("alice", reason="bored"), "malformed")
    await refused(bench, report("alice", seq=0), "malformed")
    assert (await bench.ask(report("alice"))).ok
    await refused(bench, report("alice"), "conflict")
    assert await bench.store.bans(bench.group_id) == []
    bench.hub.config = HubConfig(report_window=0)
    staged = bench.groups["alice"].commit(rng=bench.draw, force_path=True)
    await bench.commit("alice", staged, "bob", "carol")
    await refused(bench, report("bob"), "stale-epoch")
    bench.hub.config = HubConfig()
    assert (await bench.ask(report("bob"))).ok  # the second: quorum
    assert [ban.identity for ban in await bench.store.bans(bench.group_id)] == [
        identity("carol")]
    queued = await bench.store.queued_proposals(bench.group_id, 3)
    assert [item.sender for item in queued] == ["hub"]
    staged = bench.groups["carol"].commit(rng=bench.draw, force_path=True)
    await refused(bench, bench.commit_request(identity("carol"), staged), "forbidden")


async def test_in_a_pair_the_other_member_is_the_quorum(bench: Bench) -> None:
    staged = bench.groups["alice"].commit(rng=bench.draw, remove=[2])
    await bench.commit("alice", staged, "bob")
    seq = (await bench.store.log_since(bench.group_id, 0, 100))[-1].seq
    reply = await bench.ask(Inbound(Op.REPORT, identity("bob"), group_id=bench.group_id,
                                           seq=seq, reason="membership-tag"))
    assert reply.ok
    assert [ban.identity for ban in await bench.store.bans(bench.group_id)] == [
        identity("alice")]


async def test_external_commits_are_rate_limited_per_identity(bench: Bench) -> None:
    eve = bundle("eve", random.Random(8))
    group = bench.groups["alice"]
    bench.hub.config = HubConfig(external_commit_limit=2, external_commit_window=60,
                                 default_join=JoinPolicy.OPEN)
    for attempt in range(3):
        joined, commit = Group.join_external(
            group.group_info(), credential=eve.key_package.leaf_node.credential,
            signature_priv=eve.signature_priv, rng=bench.draw, now=NOW,
            resync_leaf=None if attempt == 0 else bench.groups["eve"].own_leaf)
        request = Inbound(Op.SUBMIT_COMMIT, identity("eve"), group_id=bench.group_id,
                          payload=encode(commit),
                          group_info=encode(MLSMessage.wrap(joined.group_info())))
        if attempt == 2:
            await refused(bench, request, "rate-limited")
            break
        await bench.accepted(request)
        bench.groups["eve"] = joined
        group, _ = group.process(commit, now=NOW)
    bench.hub.clock = lambda: NOW + 61
    await bench.accepted(request)


# -- the member's side: report, then resync at most once per interval ----------------------

def test_only_faults_that_need_secrets_are_reported() -> None:
    assert fault_reason(MembershipTagError("x")) == "membership-tag"
    assert fault_reason(ConfirmationTagError("x")) == "confirmation-tag"
    assert fault_reason(PathSecretError("x")) == "path-secret"
    assert fault_reason(CryptoError("x")) == "path-secret"
    assert fault_reason(EpochError("x")) is None
    assert fault_reason(ValidationError("x")) is None


async def test_resyncs_are_at_most_one_per_interval_with_backoff() -> None:
    loop = asyncio.get_running_loop()
    reports: list[tuple[bytes, int, str]] = []
    attempts: list[float] = []
    failing = [True, True, False]

    async def report(group_id: bytes, seq: int, reason: str) -> None:
        reports.append((group_id, seq, reason))

    async def rejoin(group_id: bytes) -> int:
        attempts.append(loop.time())
        if failing and failing.pop(0):
            raise ValidationError("hub said no")
        return 1

    interval = 0.2
    recovery = Recovery(report=report, rejoin=rejoin, identity=lambda: "me",
                        interval=interval, attempts=5)
    recovery.broken(b"g", 7, MembershipTagError("x"))
    recovery.broken(b"g", 7, MembershipTagError("x"))  # the same failure seen again
    await recovery.idle()
    assert reports == [(b"g", 7, "membership-tag"), (b"g", 7, "membership-tag")]
    assert len(attempts) == 1 and recovery.resyncs == 1  # the retry is deferred
    while len(attempts) < 3:
        await asyncio.sleep(0.05)
    await recovery.idle()
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= interval * 2 and gaps[1] >= interval * 4  # doubled after each failure
    assert recovery.resyncs == 3

    recovery.broken(b"g", 9, EpochError("our state is stale"))  # not reported
    await asyncio.sleep(0.01)
    assert recovery.resyncs == 3 and len(reports) == 2  # waits out the interval
    await asyncio.sleep(interval)
    await recovery.idle()
    assert recovery.resyncs == 4 and len(attempts) == 4
    assert attempts[3] - attempts[2] >= interval

    recovery.attempts = 1
    failing.extend([True])
    recovery.broken(b"h", 1, ConfirmationTagError("x"))
    await recovery.idle()
    await asyncio.sleep(interval * 3)
    assert recovery.resyncs == 5  # gave up after one failure in a row
    await recovery.stop()


async def test_a_member_that_cannot_report_still_resyncs() -> None:
    resynced: list[bytes] = []

    async def report(group_id: bytes, seq: int, reason: str) -> None:
        raise LinkError("the hub is unreachable")

    async def rejoin(group_id: bytes) -> int:
        resynced.append(group_id)
        return 1

    recovery = Recovery(report=report, rejoin=rejoin, identity=lambda: "me", interval=60.0,
                        attempts=5)
    recovery.broken(b"g", 3, PathSecretError("x"))
    await recovery.idle()
    assert (recovery.reports, recovery.resyncs, resynced) == (0, 1, [b"g"])
    await recovery.stop()
