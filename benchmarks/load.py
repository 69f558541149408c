"""Load through the bridge, beside native baselines measured in the same run: many
rooms, members on both networks, concurrent messages and commits, real Prosody and
Synapse on 127.0.0.1.

    python -m benchmarks.load [--rooms 20] [--members 10] [--messages 100] [--commits 5]
        [--workers 2] [--native matrix,xmpp|none] [--rate R [--flat-check]]

The harness is not the load: every member lives in one of ``--workers`` worker
processes (:mod:`benchmarks.workers`, :mod:`benchmarks.load_worker`), each with its own
asyncio loop; this process only orchestrates the phases and collects timestamps
(``time.monotonic()``, CLOCK_MONOTONIC: one system-wide clock on Linux). The harness's
CPU (coordinator + workers) is reported beside the bridge's, Synapse's and Prosody's
(all from ``/proc/<pid>/stat``, user + system, over each phase).

Bridged: every room is a configured pair (an XMPP room of the component + a Matrix room
of the bot) carrying one MLS group, half its members on XMPP and half on Matrix
(accounts come from two pools of ``--pool``, so one account is a member of several
groups); the bridge is ``mls-bridge run --config`` as its own process. Native, before
the bridge starts, in the same shape (rooms x members x messages, all members on one
network, accounts from a pool of ``--pool``): plain matrix-nio clients in plain Matrix
rooms on the same Synapse, and plain slixmpp clients in plain MUC rooms of Prosody's
``conference.<domain>`` (:mod:`benchmarks.native`).

In a measured phase every member of every room sends its share of the room's
``--messages`` one after another, each awaited (bridged: the hub's acknowledgement;
Matrix: Synapse's answer; XMPP: the room's reflection), all rooms and members at once;
in the bridged phase ``--commits`` update commits per room, at random times in the first
seconds, race with them. With ``--rate R`` the sends are open-loop at R messages/s per
sender (send n due at a scheduled time, senders staggered; a send that cannot start on
time starts when the previous one returned) and latency counts from the scheduled time;
``--flat-check`` runs the bridged phase again with twice the messages, to show whether
latency stays flat.

Reported per phase: messages/s (messages delivered to every recipient over the phase's
wall time), deliveries/s, latency p50/p99 (send started, or was due -> the last
recipient got it; bridged: decrypted it), CPU per message of each process, lost /
duplicated (both must be 0); then a machine-readable ``LOAD ...`` line. A table, never a
timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import re
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmarks.bridge_run import (
    BridgeProcess,
    Pair,
    cpu_seconds,
    hub_device,
    real_servers,
    until,
    write_config,
)
from benchmarks.load_report import LoadReport, Phase, print_report
from benchmarks.load_worker import CommitPlan, Send
from benchmarks.workers import WorkerPool
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer

# The load's accounts are synthetic: each is a member of many groups at once and sends
# as fast as the bridge answers, far beyond what the per-sender limits allow a person
# (docs/SECURITY.md, "Limits"); this run measures throughput, so it lifts them.
LOAD_LIMITS = "[limits]\nrequests_per_second = 100000.0\nrequest_burst = 100000\n"
WORKER = "benchmarks.load_worker:LoadWorker"


@dataclass(frozen=True)
class LoadSpec:
    rooms: int = 20
    members: int = 10  # per room; bridged: half on each network (XMPP gets the odd one)
    messages: int = 100  # per room
    commits: int = 5  # per room, during the bridged phase
    pool: int = 10  # accounts per network (each joins rooms * share / pool groups)
    seed: int = 1
    timeout: float = 1200.0  # for the sends and commits of a phase
    arrival_timeout: float = 180.0  # after the last send: every message everywhere
    workers: int = 2  # harness worker processes holding the members
    native: tuple[str, ...] = ()  # native baselines to run first: "matrix", "xmpp"
    rate: float | None = None  # messages/s per sender (open loop); None: back to back
    flat_check: bool = False  # run the bridged phase again with 2 x messages


class PhaseProbe(Protocol):
    """Something run around the bridged phases (``benchmarks/profile_bridge.py``): the
    bridge runs as ``python -m <module>``; after the measured phase, one more bridged
    phase per label of ``extra``, each with its own probe."""

    module: str
    extra: tuple[str, ...]

    async def start(self, label: str, pid: int) -> None: ...

    async def stop(self, label: str, phase: Phase) -> None: ...


@dataclass
class Room:
    name: str
    keys: list[str]  # its members' slot keys; the first creates the group
    ref: Any = None  # the MLS group id, the Matrix room id or the MUC JID
    pair: Pair | None = None


class Meters:
    """CPU seconds so far of the processes involved (``/proc``)."""

    def __init__(self, prosody: ProsodyServer, synapse: SynapseServer,
                 pool: WorkerPool) -> None:
        self.pids: dict[str, int | None] = {"prosody": _pid(prosody), "synapse": _pid(synapse)}
        self.pool = pool
        self.bridge: BridgeProcess | None = None

    def read(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items() if pid is not None}
        if self.bridge is not None and self.bridge.alive:
            out["bridge"] = self.bridge.cpu_seconds()
        out["harness"] = cpu_seconds(os.getpid()) + self.pool.cpu_seconds()
        return out


def _pid(server: ProsodyServer | SynapseServer) -> int | None:
    proc = server._proc  # the dev server's child process (the server itself)
    return proc.pid if proc is not None and proc.poll() is None else None


def _worker(key: str, workers: int) -> int:
    """The worker process owning slot ``key`` (``x3``, ``m3``, ``nx3``, ``nm3``)."""
    return int(re.sub(r"\D", "", key)) % workers


def _local(pool: WorkerPool, keys: list[str]) -> list[dict[str, Any]]:
    return [{"keys": [k for k in keys if _worker(k, len(pool)) == i]} for i in range(len(pool))]


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _accounts(pool: WorkerPool, method: str, keys: list[str], **kwargs: Any
                    ) -> dict[str, str]:
    made: dict[str, str] = {}
    for part in await pool.each(method, _local(pool, keys), **kwargs):
        made.update(part)
    return made


# -- the bridged rooms ------------------------------------------------------------------------


def _room_people(index: int, spec: LoadSpec) -> list[str]:
    n_xmpp = (spec.members + 1) // 2
    n_matrix = spec.members - n_xmpp
    return ([f"x{(index * n_xmpp + j) % spec.pool}" for j in range(n_xmpp)]
            + [f"m{(index * n_matrix + j) % spec.pool}" for j in range(n_matrix)])


async def _converge(pool: WorkerPool, room: Room, timeout: float) -> None:
    """Every member at one epoch with one epoch authenticator, then idle."""
    local = _local(pool, room.keys)

    async def same() -> bool:
        states = [s for part in await pool.each("states", local, group_id=room.ref)
                  for s in part]
        return None not in states and len(set(states)) == 1

    await until(same, f"one epoch and authenticator in {room.name}", timeout, poll=0.1)
    await pool.each("idle", local, timeout=timeout)


async def _bridged_setup(pool: WorkerPool, prosody: ProsodyServer, synapse: SynapseServer,
                         workdir: Path, spec: LoadSpec, hub: tuple[str, str],
                         holder: list[BridgeProcess], module: str) -> list[Room]:
    """Accounts, room pairs, the bridge (appended to ``holder`` before it starts), key
    packages, and one converged MLS group per pair."""
    hub_user, hub_password = hub
    await hub_device(synapse.url, hub_user, hub_password)
    w = len(pool)
    keys = [f"{n}{i}" for n in "xm" for i in range(spec.pool)]
    ids = await _accounts(pool, "make_people", keys, hub_user=hub_user)
    rooms = []
    for index in range(spec.rooms):
        people = _room_people(index, spec)
        owner = next((k for k in people if k.startswith("m")), "m0")
        room_id = await pool.call(_worker(owner, w), "make_room", key=owner, hub_user=hub_user)
        pair = Pair(f"load{index}", f"load{index}-{secrets.token_hex(2)}@"
                    f"{prosody.component_name}", room_id, admins=(ids[people[0]],))
        rooms.append(Room(pair.name, people, pair=pair))
    config = write_config(workdir / "bridge.toml", db=workdir / "bridge.db",
                          log_file=workdir / "bridge.log", prosody=prosody, synapse=synapse,
                          hub_user=hub_user, hub_password=hub_password,
                          pairs=[room.pair for room in rooms if room.pair], extra=LOAD_LIMITS)
    bridge = BridgeProcess(config, workdir / "bridge.log", module=module)
    holder.append(bridge)  # stopped by the caller whatever happens next
    await bridge.start(timeout=120)
    owners = [(next((k for k in r.keys if k.startswith("m")), "m0"), r.pair) for r in rooms]
    await asyncio.gather(*(pool.call(_worker(k, w), "hub_joined", key=k, room_id=p.matrix_room,
                                     hub_user=hub_user) for k, p in owners if p))
    joins = Counter(k for room in rooms for k in room.keys[1:])
    await pool.each("publish", [{"counts": {k: n for k, n in joins.items() if _worker(k, w) == i}}
                                for i in range(w)])
    gate = asyncio.Semaphore(4)

    async def build(room: Room) -> None:
        assert room.pair is not None
        async with gate:
            room.ref = await pool.call(
                _worker(room.keys[0], w), "create_group", key=room.keys[0],
                xmpp_room=room.pair.xmpp_room, others=[ids[k] for k in room.keys[1:]])
            await pool.each("wait_in", _local(pool, room.keys), group_id=room.ref,
                            xmpp_room=room.pair.xmpp_room,
                            matrix_room=room.pair.matrix_room, timeout=300.0)
            await _converge(pool, room, 300.0)

    await asyncio.gather(*(build(room) for room in rooms))
    return rooms


# -- the native rooms -------------------------------------------------------------------------


async def _native_rooms(pool: WorkerPool, network: str, prosody: ProsodyServer,
                        spec: LoadSpec) -> list[Room]:
    """Plain accounts and plain rooms, everyone joined."""
    w = len(pool)
    prefix = "nm" if network == "matrix" else "nx"
    keys = [f"{prefix}{i}" for i in range(spec.pool)]
    ids = await _accounts(pool, "make_native", keys)
    rooms = []
    for index in range(spec.rooms):
        people = [keys[(index * spec.members + j) % spec.pool] for j in range(spec.members)]
        if network == "matrix":
            ref = await pool.call(_worker(people[0], w), "native_room", key=people[0],
                                  invite=[ids[k] for k in people[1:]])
        else:
            ref = f"native{index}-{secrets.token_hex(2)}@conference.{prosody.domain}"
        rooms.append(Room(f"native{index}", people, ref))
    joiners = [(k, room) for room in rooms
               for k in (room.keys[1:] if network == "matrix" else room.keys)]
    await asyncio.gather(*(pool.call(_worker(k, w), "native_join", key=k, room=room.ref)
                           for k, room in joiners))
    if network == "matrix":
        await asyncio.gather(*(pool.call(_worker(room.keys[0], w), "native_joined",
                                         key=room.keys[0], room=room.ref, count=spec.members)
                               for room in rooms))
    return rooms


# -- a measured phase -------------------------------------------------------------------------


def _plans(pool: WorkerPool, label: str, rooms: list[Room], spec: LoadSpec, messages: int,
           commits: bool) -> tuple[list[list[Send]], list[list[CommitPlan]]]:
    w = len(pool)
    sends: list[list[Send]] = [[] for _ in range(w)]
    plans: list[list[CommitPlan]] = [[] for _ in range(w)]
    senders = [(room, key, share) for room in rooms
               for key, share in zip(room.keys, _shares(messages, len(room.keys)), strict=True)]
    for n, (room, key, share) in enumerate(senders):
        offset = n / len(senders) / spec.rate if spec.rate else 0.0
        sends[_worker(key, w)].append(Send(key, room.name, room.ref, share, offset))
    rng = random.Random(f"{spec.seed} {label}")
    for room in rooms if commits else []:
        at = 0.0
        for _ in range(spec.commits):
            at += rng.uniform(0.0, 2.0)
            key = rng.choice(room.keys)
            plans[_worker(key, w)].append(CommitPlan(key, room.ref, at))
    return sends, plans


async def run_phase(pool: WorkerPool, label: str, rooms: list[Room], spec: LoadSpec,
                    messages: int, meters: Meters, commits: bool = False) -> Phase:
    """Every member of every room sends its share; wait for every arrival; count."""
    w = len(pool)
    sends, plans = _plans(pool, label, rooms, spec, messages, commits)
    before = meters.read()
    start_at = time.monotonic() + 0.5  # every worker starts together
    answers = await asyncio.wait_for(pool.each(
        "talk", [{"sends": sends[i], "commits": plans[i]} for i in range(w)], phase=label,
        start_at=start_at, rate=spec.rate), spec.timeout)
    sent: dict[str, list[tuple[str, str, float]]] = {room.name: [] for room in rooms}
    for answer in answers:
        for room_name, key, text, t0 in answer["sent"]:
            sent[room_name].append((key, text, t0))
    expect: list[list[tuple[str, Any, list[str]]]] = [[] for _ in range(w)]
    entries: list[list[tuple[str, Any]]] = [[] for _ in range(w)]
    for room in rooms:
        for key in room.keys:
            expect[_worker(key, w)].append(
                (key, room.ref, [t for s, t, _ in sent[room.name] if s != key]))
            entries[_worker(key, w)].append((key, room.ref))
    complete = await pool.each("arrived", [{"expect": e} for e in expect],
                               timeout=spec.arrival_timeout)
    after = meters.read()
    if not all(complete):
        print(f"{label}: not every message arrived within {spec.arrival_timeout} s",
              file=sys.stderr)
    got = await pool.each("received", [{"entries": e} for e in entries])
    received = {(room_ref_key[0], repr(room_ref_key[1])): table
                for part_entries, part in zip(entries, got, strict=True)
                for room_ref_key, table in zip(part_entries, part, strict=True)}
    phase = _count(label, rooms, sent, received)
    phase.commits = sum(a["commits"] for a in answers)
    phase.seconds -= start_at
    phase.cpu = {name: after[name] - before[name] for name in after if name in before}
    return phase


def _count(label: str, rooms: list[Room], sent: dict[str, list[tuple[str, str, float]]],
           received: dict[tuple[str, str], dict[str, tuple[int, float]]]) -> Phase:
    """Latencies, deliveries, lost and duplicated over every room and recipient (the
    phase's ``seconds`` is its last arrival, made relative by the caller)."""
    latencies: list[float] = []
    routes: dict[str, list[float]] = {}
    deliveries = lost = duplicated = 0
    finished = 0.0
    for room in rooms:
        tables = {key: received[(key, repr(room.ref))] for key in room.keys}
        for sender, text, began in sent[room.name]:
            last = began
            for key, table in tables.items():
                if key == sender:
                    continue
                times, at = table.get(text, (0, 0.0))
                lost += times == 0
                duplicated += max(0, times - 1)
                deliveries += times == 1
                if times:
                    last = max(last, at)
                    route = f"{_network(sender)} -> {_network(key)}"
                    routes.setdefault(route, []).append(at - began)
            latencies.append(last - began)
            finished = max(finished, last)
        expected = {t for _, t, _ in sent[room.name]}
        for table in tables.values():  # this phase's texts that nobody sent here
            duplicated += sum(n for t, (n, _) in table.items()
                              if t.startswith(f"{label} ") and t not in expected)
    messages = sum(len(s) for s in sent.values())
    return Phase(label, messages, deliveries, 0, finished, latencies, lost, duplicated,
                 routes=routes)


def _network(key: str) -> str:
    """The network of a harness key (``x0``: an XMPP member, ``m3``: a Matrix one)."""
    return {"x": "xmpp", "m": "matrix"}.get(key[:1], "other")


# -- the run ----------------------------------------------------------------------------------


async def _bridged_phase(pool: WorkerPool, label: str, rooms: list[Room], spec: LoadSpec,
                         messages: int, meters: Meters, probe: PhaseProbe | None) -> Phase:
    assert meters.bridge is not None
    if probe is not None:
        await probe.start(label, meters.bridge.pid)
    phase = await run_phase(pool, label, rooms, spec, messages, meters, commits=True)
    if probe is not None:
        await probe.stop(label, phase)
    return phase


async def run_load(prosody: ProsodyServer, synapse: SynapseServer, workdir: Path,
                   spec: LoadSpec, probe: PhaseProbe | None = None) -> LoadReport:
    if spec.pool < (spec.members if spec.native else (spec.members + 1) // 2):
        raise ValueError("--pool must hold a room's members (every network's share)")
    hub = synapse.new_user("loadhub")
    pool = WorkerPool(spec.workers, WORKER, {
        "prosody": dataclasses.replace(prosody, _proc=None),
        "synapse": dataclasses.replace(synapse, _proc=None)})
    holder: list[BridgeProcess] = []
    try:
        pool.start()
        meters = Meters(prosody, synapse, pool)
        natives = {}
        for network in spec.native:
            rooms = await _native_rooms(pool, network, prosody, spec)
            natives[network] = await run_phase(pool, f"native {network}", rooms, spec,
                                               spec.messages, meters)
            await pool.each("close_keys", _local(pool, [k for r in rooms for k in r.keys]))
        began = time.monotonic()
        rooms = await _bridged_setup(pool, prosody, synapse, workdir, spec, hub, holder,
                                     probe.module if probe else "bridge.app.cli")
        setup = time.monotonic() - began
        meters.bridge = holder[0]
        bridged = await _bridged_phase(pool, "bridged", rooms, spec, spec.messages, meters,
                                       probe)
        flat = None
        if spec.flat_check:
            flat = await _bridged_phase(pool, "bridged 2x", rooms, spec, 2 * spec.messages,
                                        meters, None)
        for label in probe.extra if probe else ():
            await _bridged_phase(pool, label, rooms, spec, spec.messages, meters, probe)
        for room in rooms:
            await _converge(pool, room, 120.0)
        code = holder[0].stop()
        assert code == 0, f"the bridge exited with {code}:\n{holder[0].tail()}"
        return LoadReport(spec, bridged, natives, flat, setup)
    finally:
        await pool.close()
        for process in holder:
            process.stop()


async def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    native = tuple(n for n in args.native.split(",") if n and n != "none")
    if set(native) - {"matrix", "xmpp"} or (args.flat_check and not args.rate):
        print("--native takes matrix,xmpp or none; --flat-check needs --rate",
              file=sys.stderr)
        return 2
    spec = LoadSpec(rooms=args.rooms, members=args.members, messages=args.messages,
                    commits=args.commits, pool=args.pool, seed=args.seed,
                    workers=args.workers, native=native, rate=args.rate,
                    flat_check=args.flat_check)
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
    parser.add_argument("--workers", type=int, default=2, help="harness worker processes")
    parser.add_argument("--native", default="matrix,xmpp",
                        help="native baselines in the same run: matrix,xmpp or none")
    parser.add_argument("--rate", type=float, default=None,
                        help="messages/s per sender, open loop (default: back to back)")
    parser.add_argument("--flat-check", action="store_true",
                        help="with --rate: the bridged phase again with 2 x --messages")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
