"""Fifty members in one group over the in-memory transport and a SQLite hub: joining in
batches, five members committing in the same epoch round after round while application
messages flow, and a hub restart in the middle."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from bridge.hub.store import LogEntry, LogKind, Store
from bridge.member import Member
from bridge.member.content import Content
from tests.bridge.conftest import Harness

N_MEMBERS = 50
BATCH = 10
COMMITTERS = 5
SENDERS = 10
ROUNDS = 10
RESTART_ROUND = 5


async def full_log(store: Store, group_id: bytes) -> list[LogEntry]:
    entries: list[LogEntry] = []
    while True:
        page = await store.log_since(group_id, entries[-1].seq if entries else 0, 500)
        entries.extend(page)
        if len(page) < 500:
            return entries


def assert_converged(members: list[Member], group_id: bytes) -> None:
    epochs = {member.group(group_id).epoch for member in members}
    authenticators = {member.group(group_id).epoch_authenticator() for member in members}
    assert len(epochs) == 1 and len(authenticators) == 1, (epochs, len(authenticators))


async def test_fifty_members_concurrent_commits_messages_and_restart(
        harness: Harness) -> None:
    started = time.monotonic()
    members = [await harness.member(f"m{i:02d}") for i in range(N_MEMBERS)]
    creator = members[0]
    group_id = await creator.create_group(
        transport="xmpp", room_id=harness.room("big@mls.example.org", creator))
    for first in range(1, N_MEMBERS, BATCH):
        batch = members[first:first + BATCH]
        await creator.add_members(group_id, [member.identity for member in batch])
    await harness.quiesce()
    joined = time.monotonic()
    assert all(group_id in member.group_ids() for member in members)
    assert_converged(members, group_id)
    assert len(list(creator.group(group_id).members())) == N_MEMBERS

    committers = members[1:1 + COMMITTERS]
    senders = members[N_MEMBERS - SENDERS:]
    sent: dict[str, list[Content]] = defaultdict(list)

    async def send(member: Member, text: str) -> None:
        sent[member.identity].append(await member.send_text(group_id, text))

    async def one_round(number: int) -> None:
        await asyncio.gather(
            *(committer.update(group_id) for committer in committers),
            *(send(sender, f"round {number} from {sender.identity}") for sender in senders))

    for number in range(ROUNDS):
        if number == RESTART_ROUND:
            running = asyncio.ensure_future(one_round(number))
            await asyncio.sleep(0.01)
            await harness.stop_hub()  # drop the hub, close the store, mid-round
            await harness.start_hub()  # a new hub on the same store file
            await running
        else:
            await one_round(number)
        await harness.quiesce()
        assert_converged(members, group_id)

    assert harness.store is not None
    log = await full_log(harness.store, group_id)
    commits = [entry for entry in log if entry.kind == LogKind.COMMIT]
    # Exactly one commit per epoch: the adds, then every committer once per round.
    assert [entry.epoch for entry in commits] == list(range(len(commits)))
    assert len(commits) == (N_MEMBERS - 1 + BATCH - 1) // BATCH + COMMITTERS * ROUNDS
    assert [entry.seq for entry in log] == list(range(1, len(log) + 1))
    assert members[0].group(group_id).epoch == len(commits)
    record = await harness.store.get_group(group_id)
    assert record.epoch == len(commits)
    applications = [entry for entry in log if entry.kind == LogKind.APPLICATION]
    assert len(applications) == SENDERS * ROUNDS

    for member in members:  # no loss, no duplication, in order per sender
        by_sender: dict[str, list[Content]] = defaultdict(list)
        for received in member.received(group_id):
            by_sender[received.sender].append(received.content)
        expected = {who: contents for who, contents in sent.items() if who != member.identity}
        assert dict(by_sender) == expected
    print(f"\n50 members joined in {joined - started:.1f}s; {ROUNDS} rounds in "
          f"{time.monotonic() - joined:.1f}s; {len(log)} log entries")
