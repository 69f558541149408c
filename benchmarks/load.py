"""Load through the bridge: many bridged rooms, members on both networks, concurrent
messages and commits, real Prosody and Synapse on 127.0.0.1.

    python -m benchmarks.load [--rooms 20] [--members 10] [--messages 100] [--commits 5]

Every room is a configured pair (an XMPP room of the component + a Matrix room of the
bot) carrying one MLS group, with members of both networks in it (half XMPP, half
Matrix; accounts come from two pools, so one account is a member of several groups).
The bridge is ``mls-bridge run --config`` as its own process. In the measured phase
every member of every room sends its share of the room's ``--messages`` messages one
after another (each awaits the hub's acknowledgement), all rooms and members at once,
while ``--commits`` update commits per room race with them.

Reported: messages/s through the bridge (messages accepted and delivered to every
recipient, over the phase's wall time), deliveries/s, end-to-end latency p50/p99 (send
started -> the last recipient decrypted it), the bridge process's CPU seconds per
message (``/proc/<pid>/stat``, user + system, over the phase) and lost / duplicated
counts (both must be 0: every recipient has every message exactly once), plus a
machine-readable ``LOAD ...`` line. A table, never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.bridge_run import (
    BridgeProcess,
    Pair,
    Person,
    bridged_group,
    converge,
    hub_joined,
    matrix_person,
    matrix_room,
    real_servers,
    until,
    write_config,
    xmpp_person,
)
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer

# The load's accounts are synthetic: each is a member of many groups at once and sends
# as fast as the bridge answers, far beyond what the per-sender limits allow a person
# (docs/SECURITY.md, "Limits"); this run measures throughput, so it lifts them.
LOAD_LIMITS = "[limits]\nrequests_per_second = 100000.0\nrequest_burst = 100000\n"


@dataclass(frozen=True)
class LoadSpec:
    rooms: int = 20
    members: int = 10  # per room, half on each network (XMPP gets the odd one)
    messages: int = 100  # per room
    commits: int = 5  # per room, during the message phase
    pool: int = 10  # accounts per network (each joins rooms * share / pool groups)
    seed: int = 1
    timeout: float = 1200.0  # for the sends and commits
    arrival_timeout: float = 180.0  # after the last send: every message everywhere


@dataclass
class Room:
    pair: Pair
    people: list[Person]
    group_id: bytes = b""
    sent: list[tuple[str, str, float]] = field(default_factory=list)  # sender, text, t0


@dataclass
class LoadReport:
    spec: LoadSpec
    messages: int
    deliveries: int
    commits: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float
    lost: int
    duplicated: int
    setup_seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _pools(prosody: ProsodyServer, synapse: SynapseServer, hub_user: str,
                 spec: LoadSpec) -> tuple[list[Person], list[Person]]:
    xmpp = [await xmpp_person(prosody, f"lx{i}_", timeout=120.0, retry_window=120.0)
            for i in range(spec.pool)]
    matrix = [await matrix_person(synapse, f"lm{i}_", hub_user, request_timeout=180.0)
              for i in range(spec.pool)]
    return xmpp, matrix


def _room_people(index: int, spec: LoadSpec, xmpp: Sequence[Person],
                 matrix: Sequence[Person]) -> list[Person]:
    n_xmpp = (spec.members + 1) // 2
    n_matrix = spec.members - n_xmpp
    return ([xmpp[(index * n_xmpp + j) % len(xmpp)] for j in range(n_xmpp)]
            + [matrix[(index * n_matrix + j) % len(matrix)] for j in range(n_matrix)])


async def _setup(prosody: ProsodyServer, synapse: SynapseServer, workdir: Path,
                 spec: LoadSpec, hub_user: str, hub_password: str,
                 xmpp: list[Person], matrix: list[Person], processes: list[BridgeProcess]
                 ) -> tuple[BridgeProcess, list[Room]]:
    rooms = []
    for index in range(spec.rooms):
        people = _room_people(index, spec, xmpp, matrix)
        owner = next((p for p in people if p.network == "matrix"), matrix[0])
        pair = Pair(f"load{index}", f"load{index}-{secrets.token_hex(2)}@"
                    f"{prosody.component_name}", await matrix_room(owner, hub_user),
                    admins=(people[0].identity,))
        rooms.append(Room(pair, people))
    config = write_config(workdir / "bridge.toml", db=workdir / "bridge.db",
                          log_file=workdir / "bridge.log", prosody=prosody, synapse=synapse,
                          hub_user=hub_user, hub_password=hub_password,
                          pairs=[room.pair for room in rooms], extra=LOAD_LIMITS)
    bridge = BridgeProcess(config, workdir / "bridge.log")
    processes.append(bridge)  # stopped by the caller whatever happens next
    await bridge.start(timeout=120)
    for room in rooms:
        owner = next((p for p in room.people if p.network == "matrix"), matrix[0])
        await until(partial(hub_joined, owner, room.pair.matrix_room, hub_user),
                    "the bot joining", 120, poll=0.2)
    joins = Counter(p.identity for room in rooms for p in room.people[1:])
    for person in xmpp + matrix:
        if joins[person.identity]:
            await person.member.publish_key_packages(joins[person.identity])
    gate = asyncio.Semaphore(4)

    async def build(room: Room) -> None:
        async with gate:
            room.group_id = await bridged_group(room.pair, room.people[0], room.people[1:],
                                                timeout=300)
            await converge(room.people, room.group_id, timeout=300)

    await asyncio.gather(*(build(room) for room in rooms))
    return bridge, rooms


async def _talk(room: Room, person: Person, count: int) -> None:
    for n in range(count):
        text = f"{room.pair.name} {person.identity} #{n}"
        room.sent.append((person.identity, text, time.monotonic()))
        await person.member.send_text(room.group_id, text)


async def _commit(room: Room, rng: random.Random, spec: LoadSpec) -> int:
    done = 0
    for _ in range(spec.commits):
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        if await rng.choice(room.people).member.update(room.group_id) is not None:
            done += 1
    return done


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _arrived(room: Room) -> bool:
    for person in room.people:
        got = person.member.arrivals
        if any(sender != person.identity and text not in got
               for sender, text, _ in room.sent):
            return False
    return True


def _missing(rooms: Sequence[Room]) -> str:
    """Who lacks what (for a failed wait)."""
    lines = []
    for room in rooms:
        for person in room.people:
            missing = [t for s, t, _ in room.sent
                       if s != person.identity and t not in person.member.arrivals]
            if missing:
                lines.append(f"{room.pair.name}: {person.identity} lacks {len(missing)} "
                             f"(next seq {person.member.next_seq(room.group_id)}, "
                             f"e.g. {missing[0]!r})")
    return "; ".join(lines[:20])


def _count(rooms: Sequence[Room]) -> tuple[list[float], int, int, int]:
    """Latencies, deliveries, lost, duplicated over every room and recipient."""
    latencies: list[float] = []
    deliveries = lost = duplicated = 0
    for room in rooms:
        received = {p.identity: Counter(t for _, t in p.texts(room.group_id))
                    for p in room.people}
        for sender, text, began in room.sent:
            last = began
            for person in room.people:
                if person.identity == sender:
                    continue
                times = received[person.identity][text]
                lost += times == 0
                duplicated += max(0, times - 1)
                deliveries += times == 1
                last = max(last, person.member.arrivals.get(text, last))
            latencies.append(last - began)
        expected = {t for _, t, _ in room.sent}
        for counter in received.values():
            duplicated += sum(n for t, n in counter.items() if t not in expected)
    return latencies, deliveries, lost, duplicated


async def run_load(prosody: ProsodyServer, synapse: SynapseServer, workdir: Path,
                   spec: LoadSpec) -> LoadReport:
    began = time.monotonic()
    rng = random.Random(spec.seed)
    hub_user, hub_password = synapse.new_user("loadhub")
    xmpp, matrix = await _pools(prosody, synapse, hub_user, spec)
    processes: list[BridgeProcess] = []
    try:
        bridge, rooms = await _setup(prosody, synapse, workdir, spec, hub_user,
                                     hub_password, xmpp, matrix, processes)
        setup = time.monotonic() - began
        cpu_before, started = bridge.cpu_seconds(), time.monotonic()
        talkers = [_talk(room, person, share) for room in rooms
                   for person, share in zip(room.people,
                                            _shares(spec.messages, len(room.people)),
                                            strict=True)]
        committers = [_commit(room, random.Random(rng.random()), spec) for room in rooms]
        results = await asyncio.wait_for(asyncio.gather(*committers, *talkers),
                                         spec.timeout)
        try:
            await until(lambda: all(_arrived(room) for room in rooms), "every message",
                        spec.arrival_timeout, poll=0.1)
        except AssertionError as exc:  # counted as lost below; say who lacks what
            print(f"{exc}: {_missing(rooms)}", file=sys.stderr)
        finished = max(t for room in rooms for p in room.people
                       for t in p.member.arrivals.values())
        cpu = bridge.cpu_seconds() - cpu_before
        epochs = [await converge(room.people, room.group_id, timeout=120)
                  for room in rooms]
        assert len(epochs) == len(rooms)
        latencies, deliveries, lost, duplicated = _count(rooms)
        code = bridge.stop()
        assert code == 0, f"the bridge exited with {code}:\n{bridge.tail()}"
        commits = sum(int(n or 0) for n in results[:len(rooms)])
        return LoadReport(spec, sum(len(r.sent) for r in rooms), deliveries, commits,
                          finished - started, latencies, cpu, lost, duplicated, setup)
    finally:
        for person in xmpp + matrix:
            await person.close()
        for process in processes:
            process.stop()


def print_report(report: LoadReport) -> None:
    spec = report.spec
    rows = [
        ("rooms (bridged XMPP+Matrix pairs)", f"{spec.rooms}"),
        ("members per room (XMPP + Matrix)",
         f"{spec.members} ({(spec.members + 1) // 2} + {spec.members // 2})"),
        ("messages", f"{report.messages}"),
        ("deliveries (message x recipient)", f"{report.deliveries}"),
        ("commits during the phase", f"{report.commits}"),
        ("phase wall time", f"{report.seconds:.1f} s"),
        ("messages/s through the bridge", f"{report.per_second:.1f}"),
        ("deliveries/s", f"{report.deliveries / report.seconds:.1f}"),
        ("latency p50 (send -> every recipient)", f"{report.percentile(50) * 1000:.0f} ms"),
        ("latency p99", f"{report.percentile(99) * 1000:.0f} ms"),
        ("latency mean", f"{statistics.fmean(report.latencies) * 1000:.0f} ms"),
        ("bridge CPU per message", f"{report.cpu_seconds / report.messages * 1000:.1f} ms"),
        ("bridge CPU total", f"{report.cpu_seconds:.1f} s"),
        ("lost / duplicated", f"{report.lost} / {report.duplicated}"),
        ("setup (accounts, rooms, groups)", f"{report.setup_seconds:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>12}")
    print(f"LOAD rooms={spec.rooms} members={spec.members} messages={report.messages} "
          f"commits={report.commits} seconds={report.seconds:.2f} "
          f"msgs_per_s={report.per_second:.2f} p50_ms={report.percentile(50) * 1000:.1f} "
          f"p99_ms={report.percentile(99) * 1000:.1f} "
          f"cpu_ms_per_msg={report.cpu_seconds / report.messages * 1000:.2f} "
          f"lost={report.lost} duplicated={report.duplicated}")


async def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bridge.member").setLevel(logging.INFO)  # why a message was dropped
    spec = LoadSpec(rooms=args.rooms, members=args.members, messages=args.messages,
                    commits=args.commits, pool=args.pool, seed=args.seed)
    with real_servers("mls-load-") as (root, prosody, synapse):
        (root / "run").mkdir()
        report = await run_load(prosody, synapse, root / "run", spec)
    print_report(report)
    return 0 if report.lost == 0 and report.duplicated == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--members", type=int, default=10, help="members per room")
    parser.add_argument("--messages", type=int, default=100, help="messages per room")
    parser.add_argument("--commits", type=int, default=5, help="update commits per room")
    parser.add_argument("--pool", type=int, default=10, help="accounts per network")
    parser.add_argument("--seed", type=int, default=1)
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
