"""Two hub PROCESSES on one PostgreSQL database, hammered with concurrent commits for
one group: never two accepted commits for one epoch (ordering comes from the database).

Every commit bundle is submitted to both processes at once, and several members commit
in every epoch; members reach the hubs through a HubLink that speaks JSON lines to the
worker processes (deliveries are dropped: members catch up from the log).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
from pathlib import Path

from bridge.hub import HubIdentity
from bridge.hub.store import LogKind, PostgresStore
from bridge.member import Member, RetryPolicy
from tests.bridge.conftest import clock, domain
from tests.bridge.wire_json import outbound_from_json, to_json
from tests.store.conftest import create_database
from tests.store.pg_server import PgServer
from transports.interface import Inbound, Op, Outbound, network_of

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 6
ROUNDS = 5


class Worker:
    """A hub worker process and the replies it owes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: dict[int, asyncio.Future[Outbound]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, dsn: str, identity: HubIdentity) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bridge.hub_worker", dsn,
            identity.signature_keys[1].hex(), identity.ca.private_key.hex(),
            identity.ca.certificate.hex(), cwd=PROJECT_ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            future = self.waiting.pop(message["id"])
            future.set_result(outbound_from_json(message["reply"]))

    async def request(self, number: int, request: Inbound) -> Outbound:
        assert self.process.stdin is not None
        future: asyncio.Future[Outbound] = asyncio.get_running_loop().create_future()
        self.waiting[number] = future
        self.process.stdin.write(
            (json.dumps({"id": number, "request": to_json(request)}) + "\n").encode())
        await self.process.stdin.drain()
        return await asyncio.wait_for(future, 60)

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.wait_for(self.process.wait(), 30)
        await self.reader


class TwoHubLink:
    """A HubLink to two hub processes: commits go to both at once, the rest to either."""

    numbers = itertools.count(1)

    def __init__(self, workers: list[Worker], identity: str, seed: int) -> None:
        self.workers = workers
        self._identity = identity
        self._random = random.Random(seed)
        self.double_accepts = 0
        self.one_of_two = 0  # one process accepted, the other refused the same bundle
        self.refused = 0  # neither accepted: another member's commit won the epoch

    @property
    def identity(self) -> str:
        return self._identity

    async def request(self, request: Inbound) -> Outbound:
        request = Inbound(**{**{f: getattr(request, f) for f in request.__slots__},
                             "sender": self._identity,
                             "network": network_of(self._identity)})
        if request.op != Op.SUBMIT_COMMIT:
            worker = self._random.choice(self.workers)
            return await worker.request(next(self.numbers), request)
        replies = await asyncio.gather(*(worker.request(next(self.numbers), request)
                                         for worker in self.workers))
        accepted = [reply for reply in replies if reply.ok]
        self.double_accepts += len(accepted) > 1
        self.one_of_two += len(accepted) == 1
        self.refused += not accepted
        assert all(reply.ok or reply.code == "wrong-epoch" for reply in replies)
        return accepted[0] if accepted else replies[0]


async def test_two_hub_processes_never_accept_two_commits_for_one_epoch(
        pg_server: PgServer) -> None:
    dsn = await create_database(pg_server)
    store = await PostgresStore.open(dsn, min_size=1, max_size=4)  # migrates
    identity = HubIdentity.generate("hub.example.org", rng=random.Random(1).randbytes)
    workers = [await Worker.start(dsn, identity) for _ in range(2)]
    links: list[TwoHubLink] = []
    members: list[Member] = []
    try:
        for number in range(MEMBERS):
            link = TwoHubLink(workers, domain(f"p{number}"), number)
            member = Member(link, rng=random.Random(500 + number).randbytes, clock=clock,
                            retry=RetryPolicy(attempts=20, base_delay=0.005, max_delay=0.1))
            await member.start()
            await member.publish_key_packages(1)
            links.append(link)
            members.append(member)
        creator = members[0]
        group_id = await creator.create_group()
        await creator.add_members(group_id, [member.identity for member in members[1:]])
        for member in members[1:]:
            assert await member.fetch_welcomes() == 1
        for _ in range(ROUNDS):  # every member commits in the same epoch, each round
            await asyncio.gather(*(member.update(group_id) for member in members))
            for member in members:
                await member.sync(group_id)
            assert len({m.group(group_id).epoch_authenticator() for m in members}) == 1

        log = await store.log_since(group_id, 0, 1000)
        commits = [entry for entry in log if entry.kind == LogKind.COMMIT]
        assert [entry.epoch for entry in commits] == list(range(1 + MEMBERS * ROUNDS))
        assert [entry.seq for entry in log] == list(range(1, len(log) + 1))
        assert (await store.get_group(group_id)).epoch == 1 + MEMBERS * ROUNDS
        assert sum(link.double_accepts for link in links) == 0
        assert sum(link.one_of_two for link in links) == len(commits)
        assert sum(link.refused for link in links) > 0  # members did race for epochs
        assert members[0].group(group_id).epoch == 1 + MEMBERS * ROUNDS
    finally:
        for member in members:
            await member.stop()
        for worker in workers:
            await worker.stop()
        await store.close()
