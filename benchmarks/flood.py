"""Floods against the bridge process, beside the same run without them: what the
limits of docs/SECURITY.md ("Limits") cost the attacker and spare everyone else.

    python -m benchmarks.flood [--honest 4] [--flooders 2] [--messages 20]
                               [--flood-rate 50] [--refs 3] [--src DIR]

One bridge (``mls-bridge run --config``, default limits) with one configured room pair
and one MLS group; honest members and flooders, half on each network, all in the group.
Three phases, one after the other, in the same run:

* ``baseline`` -- every honest member sends ``--messages`` messages one after another
  (each awaits the hub's acknowledgement); nobody floods;
* ``flood`` -- the same while every flooder fires ``fetch-log`` requests at
  ``--flood-rate`` per second without waiting for answers;
* ``max refs`` -- the same while ``--refs`` requests per network reference the largest
  payloads a reference may declare (Matrix: four media references of 32 MiB each, to a
  real upload; XMPP: four XEP-0363 references of 16 MiB each, served on loopback).

Reported per phase: requests sent by the attackers and their answers by code (``-``:
none came), the honest members' acknowledgement latency p50/p99, and the bridge's
resident memory (``/proc/<pid>/status``: VmRSS before and after the phase, and its peak
VmHWM during it, reset at the start of each phase). ``--src DIR`` runs the bridge from
another source tree (say, ``git archive main``) for a before/after table; the harness
and the members are this tree's. A table, never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import nio
from slixmpp.exceptions import IqError, IqTimeout

from benchmarks.bridge_run import (
    REPO,
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
from bridge.devservers.files import BlobServer
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from transports.errors import LinkError
from transports.interface import Inbound, Op
from transports.matrix import namespace as ns
from transports.matrix.media import MediaRepository
from transports.xmpp.namespace import NS

MiB = 1024 * 1024
MATRIX_REF = 32 * MiB  # the largest size a Matrix media reference may declare
XMPP_REF = 16 * MiB  # the largest an XEP-0363 download could be before the limits
BLOBS = ("payload", "welcome", "group_info", "ratchet_tree")


@dataclass(frozen=True)
class FloodSpec:
    honest: int = 4
    flooders: int = 2
    messages: int = 20  # per honest member and phase
    flood_rate: float = 50.0  # requests per second per flooder
    refs: int = 3  # requests with maximal references, per network
    src: Path = REPO
    timeout: float = 600.0


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    rss: tuple[int, int, int] = (0, 0, 0)  # before, peak, after (KiB)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- the bridge's memory ----------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (proc(5), clear_refs value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# -- the attackers --------------------------------------------------------------------------


class Flooder:
    """Fires ``fetch-log`` requests at ``rate`` per second, never waiting for answers."""

    def __init__(self, person: Person, group_id: bytes, rate: float, phase: Phase) -> None:
        self.person, self.group_id, self.rate, self.phase = person, group_id, rate, phase
        self.tasks: set[asyncio.Task[None]] = set()

    async def one(self) -> None:
        try:
            reply = await self.person.spy.inner.request(Inbound(
                Op.FETCH_LOG, self.person.identity, request_id=secrets.token_hex(8),
                group_id=self.group_id, limit=1))
        except LinkError:
            self.phase.codes["-"] += 1
            return
        self.phase.codes["ok" if reply.ok else reply.code] += 1

    async def run(self, stop: asyncio.Event) -> None:
        wave = max(1, int(self.rate / 10))
        while not stop.is_set():
            for _ in range(wave):
                task = asyncio.get_running_loop().create_task(self.one())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                self.phase.sent += 1
            await asyncio.sleep(0.1)  # paces the flood

    async def end(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def matrix_refs(person: Person, hub_user: str, media: dict[str, Any],
                      phase: Phase) -> None:
    """One submit-commit whose four payloads reference the largest media each."""
    assert person.link is not None
    request_id = secrets.token_hex(6)
    content = {ns.K_VERSION: ns.VERSION, ns.K_REQUEST_ID: request_id,
               ns.K_OP: str(Op.SUBMIT_COMMIT), ns.K_REPLY_DEVICE: str(person.client.device_id),
               **{key: media for key in BLOBS}}
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    person.link._pending[request_id] = future
    phase.sent += 1
    await person.client.to_device(nio.ToDeviceMessage(ns.REQUEST_TO_DEVICE, hub_user, "*",
                                                       content))
    try:
        reply = await asyncio.wait_for(future, 120.0)
        phase.codes[str(reply.get(ns.K_CODE, "ok"))] += 1
    except TimeoutError:
        phase.codes["-"] += 1


async def xmpp_refs(person: Person, component: str, server: BlobServer, phase: Phase) -> None:
    """One submit-commit IQ whose four payloads reference 16 MiB downloads each."""
    digest = hashlib.sha256(server.body).hexdigest()
    refs = "".join(f"<{name} url='{server.url(name)}' sha256='{digest}' "
                   f"size='{len(server.body)}'/>"
                   for name in ("payload", "welcome", "group-info", "ratchet-tree"))
    iq = person.client.make_iq_set(ET.fromstring(
        f"<submit-commit xmlns='{NS}' request='{secrets.token_hex(4)}'>{refs}"
        "</submit-commit>"), ito=component)
    phase.sent += 1
    try:
        await iq.send(timeout=120)
        phase.codes["ok"] += 1
    except IqError as exc:
        rejected = exc.iq["error"].xml.find(f"{{{NS}}}rejected")
        phase.codes[rejected.get("code", "") if rejected is not None
                    else exc.iq["error"]["condition"]] += 1
    except IqTimeout:
        phase.codes["-"] += 1


# -- the run ----------------------------------------------------------------------------------


async def _talk(person: Person, group_id: bytes, count: int, phase: Phase) -> None:
    for n in range(count):
        began = time.monotonic()
        await person.member.send_text(group_id, f"{phase.name} {person.identity} #{n}")
        phase.latencies.append(time.monotonic() - began)


async def _phase(name: str, bridge: BridgeProcess, honest: list[Person], group_id: bytes,
                 spec: FloodSpec, attack: Any = None) -> Phase:
    phase = Phase(name)
    before = _status(bridge.pid)["VmRSS"]
    _reset_peak(bridge.pid)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    attackers = [loop.create_task(c) for c in attack(phase, stop)] if attack else []
    talk = asyncio.gather(*(_talk(p, group_id, spec.messages, phase) for p in honest))
    await asyncio.wait_for(talk, spec.timeout)
    stop.set()
    await asyncio.gather(*attackers)
    status = _status(bridge.pid)
    phase.rss = (before, status["VmHWM"], status["VmRSS"])
    return phase


async def flood_people(prosody: ProsodyServer, synapse: SynapseServer, hub_user: str,
                       spec: FloodSpec) -> tuple[list[Person], list[Person]]:
    """Everyone (the honest members first, half on each network, then the flooders,
    alternating networks), and the flooders."""
    people: list[Person] = []
    half = (spec.honest + 1) // 2
    for i in range(spec.honest):
        people.append(await (xmpp_person(prosody, f"h{i}_") if i < half
                             else matrix_person(synapse, f"h{i}_", hub_user)))
    flooders = []
    for i in range(spec.flooders):
        flooders.append(await (xmpp_person(prosody, f"f{i}_") if i % 2 == 0
                               else matrix_person(synapse, f"f{i}_", hub_user,
                                                  request_timeout=10.0)))
    return people + flooders, flooders


async def refs_phase(bridge: BridgeProcess, synapse: SynapseServer, prosody: ProsodyServer,
                     hub_user: str, flooders: list[Person], group_id: bytes,
                     spec: FloodSpec, honest: list[Person], server: BlobServer) -> Phase:
    """The honest members' phase while flooders send requests with maximal references."""
    await server.start()
    matrix_attacker = next((p for p in flooders if p.network == "matrix"), None)
    xmpp_attacker = next((p for p in flooders if p.network == "xmpp"), None)
    media: dict[str, Any] = {}
    if matrix_attacker is not None:
        repo = MediaRepository(synapse.url, matrix_attacker.client.access_token)
        media = (await repo.upload(secrets.token_bytes(MATRIX_REF))).to_json()
        await repo.close()

    def refs(phase: Phase, _stop: asyncio.Event) -> list[Any]:
        async def matrix() -> None:
            for _ in range(spec.refs if matrix_attacker is not None else 0):
                assert matrix_attacker is not None
                await matrix_refs(matrix_attacker, hub_user, media, phase)

        async def xmpp() -> None:
            for _ in range(spec.refs if xmpp_attacker is not None else 0):
                assert xmpp_attacker is not None
                await xmpp_refs(xmpp_attacker, prosody.component_name, server, phase)
        return [matrix(), xmpp()]

    phase = await _phase("max refs", bridge, honest, group_id, spec, refs)
    phase.codes["(XMPP GETs)"] = server.gets
    return phase


async def run_flood(prosody: ProsodyServer, synapse: SynapseServer, workdir: Path,
                    spec: FloodSpec) -> list[Phase]:
    hub_user, hub_password = synapse.new_user("floodhub")
    people, flooders = await flood_people(prosody, synapse, hub_user, spec)
    owner = next(p for p in people if p.network == "matrix")
    pair = Pair("flood", f"flood-{secrets.token_hex(2)}@{prosody.component_name}",
                await matrix_room(owner, hub_user), admins=(people[0].identity,))
    config = write_config(workdir / "bridge.toml", db=workdir / "bridge.db",
                          log_file=workdir / "bridge.log", prosody=prosody, synapse=synapse,
                          hub_user=hub_user, hub_password=hub_password, pairs=[pair])
    bridge = BridgeProcess(config, workdir / "bridge.log", src=spec.src)
    honest = people[:spec.honest]
    server = BlobServer(secrets.token_bytes(XMPP_REF))
    try:
        await bridge.start(timeout=120)
        await until(lambda: hub_joined(owner, pair.matrix_room, hub_user), "the bot joining",
                    120, poll=0.2)
        for person in people[1:]:
            await person.member.publish_key_packages(1)
        group_id = await bridged_group(pair, people[0], people[1:], timeout=300)
        await converge(people, group_id, timeout=300)
        phases = [await _phase("baseline", bridge, honest, group_id, spec)]

        def flood(phase: Phase, stop: asyncio.Event) -> list[Any]:
            runs = [Flooder(p, group_id, spec.flood_rate, phase) for p in flooders]

            async def one(f: Flooder) -> None:
                await f.run(stop)
                await f.end()
            return [one(f) for f in runs]

        phases.append(await _phase("flood", bridge, honest, group_id, spec, flood))
        phases.append(await refs_phase(bridge, synapse, prosody, hub_user, flooders,
                                       group_id, spec, honest, server))
        code = bridge.stop()
        assert code == 0, f"the bridge exited with {code}:\n{bridge.tail()}"
        return phases
    finally:
        await server.stop()
        bridge.stop()
        for person in people:
            await person.close()


def print_report(phases: list[Phase], spec: FloodSpec) -> None:
    print(f"bridge from {spec.src}; {spec.honest} honest members x {spec.messages} messages "
          f"per phase; {spec.flooders} flooders at {spec.flood_rate:g}/s each; "
          f"{spec.refs} max-ref requests per network")
    print("| phase | attacker requests | answers by code | honest p50 | honest p99 "
          "| RSS before | RSS peak | RSS after |")
    print("|---|---|---|---|---|---|---|---|")
    for phase in phases:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(phase.codes.items())) or "-"
        before, peak, after = (kib / 1024 for kib in phase.rss)
        print(f"| {phase.name} | {phase.sent} | {codes} | {phase.percentile(50) * 1000:.0f} ms "
              f"| {phase.percentile(99) * 1000:.0f} ms | {before:.0f} MB | {peak:.0f} MB "
              f"| {after:.0f} MB |")
    print("FLOOD " + " ".join(f"{p.name.replace(' ', '_')}:p50={statistics.median(p.latencies):.4f}"
                             f",peak_kib={p.rss[1]}" for p in phases))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flood",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--honest", type=int, default=4,
                        help="honest members, alternating XMPP and Matrix (at least 2)")
    parser.add_argument("--flooders", type=int, default=2)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--flood-rate", type=float, default=50.0)
    parser.add_argument("--refs", type=int, default=3)
    parser.add_argument("--src", type=Path, default=REPO,
                        help="source tree to run the bridge from (default: this one)")
    args = parser.parse_args(argv)
    if args.honest < 2:
        parser.error("--honest must be at least 2: one member on each network")
    spec = FloodSpec(args.honest, args.flooders, args.messages, args.flood_rate, args.refs,
                     args.src.resolve())
    with real_servers("mls-flood-") as (root, prosody, synapse):
        phases = asyncio.run(run_flood(prosody, synapse, root, spec))
    print_report(phases, spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())

