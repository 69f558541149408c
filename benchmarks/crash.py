"""Crash safety: ``kill -9`` the bridge (hub + relay, one process) mid-conversation.

``python -m benchmarks.crash [--seed N] [--runs R] [--kills K] [--ops N] [--relay]
[--graceful]`` runs the longer randomized version; ``tests/crash`` runs a small one in
CI. Both start real Prosody and Synapse on 127.0.0.1.

The scenario: ``mls-bridge run --config`` with one configured room pair (an XMPP room of
the component and a Matrix room of the bot), an MLS group across both, members on each
network. Every member runs a driver that, at seeded random moments, sends a message or
commits (an update: a fresh path, so commits from different members race for the same
epoch and the hub's "wrong epoch" retry path is exercised). Meanwhile a killer sends
SIGKILL to the bridge K times and restarts it on the same store after a seeded random
downtime. Each kill point is one of

* ``commit``: the moment some member has a commit request in flight (sent, no reply
  yet), plus a random 0-30 ms -- inside the hub's accept/fan-out/reply window;
* ``message``: the moment some member has an application message in flight, plus 0-10 ms;
* ``random``: a random moment of the conversation.

With ``--relay`` (``CrashPlan.relay``) a second room pair runs in relay mode
(``relay = true``, :mod:`bridge.relay`): a plain XMPP client without MLS (the bridge
holds its puppet leaf) and one MLS member talk there during the kills (the CI test
runs it). A puppet saves its group state only up to what was re-emitted, and the relay
persists a re-emit cursor after each re-emit, so a kill loses no decrypted message;
one caught between a re-emit and its cursor is sent again (see below).

With ``--graceful`` (``CrashPlan.graceful``) each stop is a SIGTERM instead: the
bridge must exit 0 within ``shutdown_timeout`` + 5 s with no stop phase cut short, and
every request in flight when the stop began must end with a reply (done, or refused
as "unavailable" and retried) -- ``tests/crash`` runs this too.

Every run ends with a graceful stop of the bridge (SIGTERM, nothing in flight): exit 0,
every phase complete, nothing named as not done, and -- the bridge runs in asyncio's
debug mode with ResourceWarnings as errors -- nothing in its stderr or log that names a
leaked resource (:data:`benchmarks.bridge_run.LEAK_MARKERS`). ``--runs N`` runs N
seeds in a row; a failed run is reported with its seed and its workdir (bridge log and
stderr) kept in ``--keep``, and the last line counts runs, passed, lost, duplicated.

The plan (kinds, delays, downtimes, each driver's choices) comes from one
``random.Random(seed)``: a failing seed replays the same plan (thread timing cannot be
replayed exactly; the seed and the kill log are printed).

What is checked afterwards (:func:`verify`), against the members and against the hub's
SQLite store read once the bridge stopped:

* one epoch and one epoch authenticator at every member, equal to the store's epoch,
  and the same roster everywhere;
* the store's log has exactly one commit per epoch 0..E-1; every commit a member was
  told was accepted sits in the log at the sequence number it was given, from it;
* every message whose send was acknowledged is received exactly once by every other
  member; a message whose send failed (the bridge died with it in flight: outcome
  unknown to the sender) was received by every other member or by none, never twice;
  each sender's messages arrive in the order sent; the log holds exactly as many
  application messages as distinct messages were received (no duplicate in the log);
* in the relay room: the MLS member receives each line of the plain client at most once
  and in the order said (a line said while the bridge is down or dying may be lost: a
  MUC message has no acknowledgement), the line said once the bridge is up for good
  exactly once; the plain client shows every acknowledged MLS message exactly once,
  one whose send failed at most once, in the order sent, and nothing else. A re-emit
  that a kill caught between the stanza leaving and the re-emit cursor being saved is
  sent again after the restart with the same XEP-0359 stanza-id and body: the plain
  client drops it as a repeat, as MUC clients do (:class:`benchmarks.bridge_run.
  PlainXmpp`), and the report counts such repeats.

Why accepted commits survive: the hub's SQLite store runs in WAL mode with
``synchronous=FULL`` (:mod:`bridge.hub.store.sqlite`) and ``accept_commit`` is one
``BEGIN IMMEDIATE`` transaction that COMMITs before the commit is fanned out or the
committer gets its reply. Once COMMIT returned, the transaction is in the WAL file: a
SIGKILL after that point cannot lose it (the kernel holds the written pages), and
``synchronous=FULL`` fsyncs the WAL at every COMMIT, so it also survives an OS crash or
power loss (WAL with ``synchronous=NORMAL`` would survive SIGKILL but could lose the
last commits on power loss -- a fork after the hub told members "accepted"). A SIGKILL
before COMMIT rolls the transaction back on the next open (the WAL frame without a
commit marker is ignored): nobody was told, the committer's retry or catch-up decides.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.bridge_run import (
    BridgeProcess,
    Pair,
    Person,
    PlainXmpp,
    bridged_group,
    converge,
    hub_joined,
    matrix_person,
    matrix_room,
    plain_xmpp,
    real_servers,
    roster,
    until,
    write_config,
    xmpp_person,
)
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.errors import BridgeError
from bridge.hub.store import LogEntry, LogKind, open_store
from bridge.identities import relay_identity
from bridge.relay import NOTICE
from mls.errors import MLSError
from transports.errors import TransportError
from transports.interface import Op

KILL_KINDS = ("commit", "message", "random")


@dataclass(frozen=True)
class CrashPlan:
    seed: int = 1
    kills: int = 3
    ops_per_person: int = 14
    xmpp_people: int = 2
    matrix_people: int = 2
    commit_share: float = 0.25
    max_downtime: float = 1.5
    relay: bool = False  # the relay-mode room pair with a plain XMPP client (--relay)
    graceful: bool = False  # SIGTERM (a graceful stop) instead of SIGKILL (--graceful)


@dataclass
class Ledger:
    """What the drivers were told: accepted, or outcome unknown."""

    acked: list[tuple[str, str]] = field(default_factory=list)  # (sender, text)
    unknown: list[tuple[str, str]] = field(default_factory=list)
    commits: list[tuple[str, int]] = field(default_factory=list)  # (committer, seq)
    failed_commits: list[tuple[str, str]] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)  # in sending order
    # requests in flight when a graceful stop began: (member, request number at its Spy)
    stopped_amid: list[tuple[Person, int]] = field(default_factory=list)

    def sent_order(self, sender: str) -> list[str]:
        return [t for s, t in self.sent if s == sender]


@dataclass
class RelayRoom:
    """The relay-mode pair: its group, the plain client, the MLS member, what was said."""

    pair: Pair
    group_id: bytes
    plain: PlainXmpp
    member: Person
    plain_said: list[str] = field(default_factory=list)  # in order; no acknowledgement
    mls_acked: list[str] = field(default_factory=list)
    mls_sent: list[str] = field(default_factory=list)  # in order, acked or not


@dataclass
class CrashReport:
    seed: int
    epoch: int
    messages: int
    acked: int
    unknown: int
    commits: int
    failed_commits: int
    kills: list[str]
    restart_seconds: list[float]
    seconds: float
    relayed: int = 0  # messages in the relay room (both directions)
    relay_repeats: int = 0  # XMPP re-sends the plain client dropped by stanza-id
    stop_seconds: float = 0.0  # the final graceful stop (SIGTERM to exit)


FAILURES = (TransportError, BridgeError, MLSError, TimeoutError)


async def drive(person: Person, group_id: bytes, rng: random.Random, ops: int,
                share: float, ledger: Ledger) -> None:
    """One member's part of the conversation (bounded: ``ops`` operations)."""
    for n in range(ops):
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        if rng.random() < share:
            try:
                seq = await asyncio.wait_for(person.member.update(group_id), 90)
            except FAILURES as exc:
                ledger.failed_commits.append((person.identity, f"{type(exc).__name__}: {exc}"))
            else:
                if seq is not None:
                    ledger.commits.append((person.identity, seq))
            continue
        text = f"{person.identity} #{n} {secrets.token_hex(3)}"
        ledger.sent.append((person.identity, text))
        try:
            await asyncio.wait_for(person.member.send_text(group_id, text), 90)
        except FAILURES:
            ledger.unknown.append((person.identity, text))
        else:
            ledger.acked.append((person.identity, text))


def _in_flight(people: list[Person], op: str) -> bool:
    return any(p.spy.in_flight.get(op, 0) > 0 for p in people)


async def killer(bridge: BridgeProcess, people: list[Person], rng: random.Random,
                 plan: CrashPlan, ledger: Ledger, restarts: list[float]) -> None:
    """SIGKILL the bridge ``plan.kills`` times at seeded points; restart it each time."""
    kinds = [KILL_KINDS[k % len(KILL_KINDS)] if k < len(KILL_KINDS) else rng.choice(KILL_KINDS)
             for k in range(plan.kills)]
    for number, kind in enumerate(kinds, 1):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        delay, downtime = rng.uniform(0, 0.03), rng.uniform(0.1, plan.max_downtime)
        op = {"commit": Op.SUBMIT_COMMIT.value, "message": Op.SEND.value}.get(kind)
        if op is not None:
            try:
                await until(partial(_in_flight, people, op), f"a {kind} in flight", 30,
                            poll=0.002)
            except AssertionError:
                kind = "random (no " + kind + " came)"
            await asyncio.sleep(delay if kind == "commit" else delay * 0.3)
        flying = sorted({op for p in people for op, n in p.spy.in_flight.items() if n})
        if plan.graceful:
            ledger.stopped_amid += [(p, n) for p in people for n in p.spy.pending]
            not_done = check_graceful_stop(bridge, quiet=False)
            ledger.kills.append(f"stop {number} (SIGTERM): {kind}, in flight "
                                f"{flying or '-'}, exit 0 in {bridge.stop_seconds:.2f} s, "
                                f"{len(not_done)} named not done, down {downtime:.2f} s")
        else:
            bridge.kill()
            ledger.kills.append(f"kill {number}: {kind}, in flight {flying or '-'}, "
                                f"down {downtime:.2f} s")
        await asyncio.sleep(downtime)
        restarts.append(await bridge.start())


async def run_crash(prosody: ProsodyServer, synapse: SynapseServer, workdir: Path,
                    plan: CrashPlan) -> CrashReport:
    began = time.monotonic()
    rng = random.Random(plan.seed)
    hub_user, hub_password = synapse.new_user("crashhub")
    people: list[Person] = []
    plain: PlainXmpp | None = None
    bridge: BridgeProcess | None = None
    try:
        for i in range(plan.xmpp_people):
            people.append(await xmpp_person(prosody, f"cx{i}_"))
        for i in range(plan.matrix_people):
            people.append(await matrix_person(synapse, f"cm{i}_", hub_user,
                                              request_timeout=30.0))
        owner = next(p for p in people if p.network == "matrix")
        pair = Pair("crash", f"crash{secrets.token_hex(3)}@{prosody.component_name}",
                    await matrix_room(owner, hub_user), admins=(people[0].identity,))
        pairs = [pair]
        if plan.relay:
            pairs.append(Pair("relay", f"relay{secrets.token_hex(3)}@{prosody.component_name}",
                              await matrix_room(owner, hub_user), relay=True))
            plain = await plain_xmpp(prosody, "cplain")
        db = workdir / "bridge.db"
        config = write_config(workdir / "bridge.toml", db=db, log_file=workdir / "bridge.log",
                              prosody=prosody, synapse=synapse, hub_user=hub_user,
                              hub_password=hub_password, pairs=pairs)
        bridge = BridgeProcess(config, workdir / "bridge.log", debug=True)
        await bridge.start()
        for room in pairs:
            await until(partial(hub_joined, owner, room.matrix_room, hub_user),
                        "the bot joining", 30)
        for person in people[1:]:
            await person.member.publish_key_packages(1)
        group_id = await bridged_group(pair, people[0], people[1:])
        await converge(people, group_id)
        relay = None if plain is None else await relay_group(pairs[1], owner, plain)

        ledger, restarts = Ledger(), list[float]()
        drivers = [drive(p, group_id, random.Random(rng.random()), plan.ops_per_person,
                         plan.commit_share, ledger) for p in people]
        if relay is not None:
            drivers.append(drive_relay(relay, random.Random(rng.random()),
                                       plan.ops_per_person))
        await asyncio.gather(killer(bridge, people, random.Random(rng.random()), plan,
                                    ledger, restarts), *drivers)
        await _final_round(people, group_id, ledger)
        if relay is not None:
            await _final_relay_round(relay)
        epoch, _ = await converge(people, group_id, timeout=90)
        check_graceful_stop(bridge)
        await verify(people, group_id, db, ledger, epoch)
        verify_stopped_amid(ledger)
        if relay is not None:
            verify_relay(relay)
        return CrashReport(plan.seed, epoch, len(ledger.acked) + len(ledger.unknown),
                           len(ledger.acked), len(ledger.unknown), len(ledger.commits),
                           len(ledger.failed_commits), ledger.kills, restarts,
                           time.monotonic() - began,
                           0 if relay is None else len(relay.plain_said) + len(relay.mls_sent),
                           0 if relay is None else len(relay.plain.repeats),
                           bridge.stop_seconds)
    finally:
        for person in people:
            await person.close()
        if plain is not None:
            await plain.close()
        if bridge is not None:
            bridge.stop()


def check_graceful_stop(bridge: BridgeProcess, *, quiet: bool = True) -> list[str]:
    """SIGTERM the bridge: exit 0 within ``shutdown_timeout`` + 5 s (the configuration's
    5 s), no stop step cut short, and no leaked resource in its stderr or log
    (:data:`benchmarks.bridge_run.LEAK_MARKERS`). ``quiet`` (nothing in flight): nothing
    named as not done either. Returns what the stop named as not done."""
    code = bridge.stop()
    assert code == 0, f"the bridge exited with {code}:\n{bridge.tail()}"
    assert bridge.stop_seconds < 10.0, f"the stop took {bridge.stop_seconds:.1f} s"
    report = bridge.stop_report()
    assert report["stopped"] is not None, f"no 'bridge stopped' event:\n{bridge.tail()}"
    assert not report["cut"], f"the stop was cut short: {report}\n{bridge.tail()}"
    not_done = [str(e.get("what")) for e in report["not_done"]]
    assert not (quiet and not_done), f"a quiet stop left work undone: {not_done}"
    leaks = bridge.leaks()
    assert not leaks, "the stop left resources behind:\n" + "\n".join(leaks)
    return not_done


def verify_stopped_amid(ledger: Ledger) -> None:
    """Every request in flight when a graceful stop began ended with a reply (accepted,
    or refused as "unavailable" and retried), never a link error or timeout."""
    ended = [(p.identity, p.spy.outcomes.get(n, "still pending")) for p, n in ledger.stopped_amid]
    failed = [(who, how) for who, how in ended if how != "reply"]
    assert not failed, f"requests in flight at a graceful stop got no reply: {failed}"


async def _final_round(people: list[Person], group_id: bytes, ledger: Ledger) -> None:
    """With the bridge up for good, everyone says one last thing (must be accepted),
    then every acknowledged message must arrive."""
    for person in people:
        text = f"{person.identity} final {secrets.token_hex(3)}"
        ledger.sent.append((person.identity, text))
        await asyncio.wait_for(person.member.send_text(group_id, text), 90)
        ledger.acked.append((person.identity, text))
    for person in people:
        expected = {t for s, t in ledger.acked if s != person.identity}
        await until(partial(_has_all, person, group_id, expected),
                    f"{person.identity} to receive every acknowledged message", 90, poll=0.1)


async def relay_group(pair: Pair, member: Person, plain: PlainXmpp) -> RelayRoom:
    """``member`` makes a group in the relay pair's Matrix room; the plain client enters
    the XMPP room and the bridge gives it a puppet leaf (external commit)."""
    group_id = await member.member.create_group(transport="matrix", room_id=pair.matrix_room)
    await plain.join(pair.xmpp_room, "plain")
    await until(lambda: relay_identity(plain.identity) in roster(member, group_id),
                "the plain client's puppet in the relay group", 60)
    await converge([member], group_id)
    return RelayRoom(pair, group_id, plain, member)


async def drive_relay(relay: RelayRoom, rng: random.Random, ops: int) -> None:
    """The relay room's conversation: the plain client and the MLS member take turns
    at random (the plain client's lines get no acknowledgement)."""
    for n in range(ops):
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        if rng.random() < 0.5:
            text = f"plain #{n} {secrets.token_hex(3)}"
            relay.plain_said.append(text)
            relay.plain.say(relay.pair.xmpp_room, text)
            continue
        text = f"relayed #{n} {secrets.token_hex(3)}"
        relay.mls_sent.append(text)
        try:
            await asyncio.wait_for(relay.member.member.send_text(relay.group_id, text), 90)
        except FAILURES:
            continue
        relay.mls_acked.append(text)


async def _final_relay_round(relay: RelayRoom) -> None:
    """With the bridge up for good both say one last thing; both must arrive, and
    everything acknowledged must have reached the plain client."""
    said = f"plain final {secrets.token_hex(3)}"
    relay.plain_said.append(said)
    relay.plain.say(relay.pair.xmpp_room, said)
    sent = f"relayed final {secrets.token_hex(3)}"
    relay.mls_sent.append(sent)
    await asyncio.wait_for(relay.member.member.send_text(relay.group_id, sent), 90)
    relay.mls_acked.append(sent)
    await until(lambda: said in _relay_read(relay), "the MLS member reading the plain "
                "client's last line", 90, poll=0.1)
    await until(lambda: set(relay.mls_acked) <= set(_plain_read(relay)),
                "the plain client reading every acknowledged MLS message", 90, poll=0.1)
    await asyncio.sleep(1.0)  # a late duplicate re-emit would show up by now


def _relay_read(relay: RelayRoom) -> list[str]:
    """What the MLS member received from the plain client, in order."""
    puppet = relay_identity(relay.plain.identity)  # the plain client's puppet
    return [t for s, t in relay.member.texts(relay.group_id) if s == puppet]


def _plain_read(relay: RelayRoom) -> list[str]:
    return [body for _, body in relay.plain.messages if body != NOTICE]


def verify_relay(relay: RelayRoom) -> None:
    """The relay room's checks listed in the module docstring."""
    read = _relay_read(relay)
    twice = [t for t, n in Counter(read).items() if n > 1]
    assert not twice, f"the MLS member received the plain client's lines twice: {twice}"
    assert read == [t for t in relay.plain_said if t in read], \
        "the plain client's lines arrived out of order (or were never said)"
    assert relay.plain_said[-1] in read
    shown = _plain_read(relay)
    twice = [t for t, n in Counter(shown).items() if n > 1]
    assert not twice, f"the plain client received relayed messages twice: {twice}"
    assert shown == [t for t in relay.mls_sent if t in shown], \
        f"the plain client received something else or out of order: {shown}"
    missing = [t for t in relay.mls_acked if t not in shown]
    assert not missing, f"acknowledged but never shown to the plain client: {missing}"


def _has_all(person: Person, group_id: bytes, expected: set[str]) -> bool:
    return expected <= {t for _, t in person.texts(group_id)}


async def verify(people: list[Person], group_id: bytes, db: Path, ledger: Ledger,
                 epoch: int) -> None:
    """The checks listed in the module docstring (AssertionError on any failure)."""
    identities = {p.identity for p in people}
    for person in people:
        assert roster(person, group_id) == identities, person.identity
    log = await verify_log(f"sqlite:///{db}", group_id, epoch)
    by_seq = {e.seq: e for e in log}
    for committer, seq in ledger.commits:
        assert by_seq[seq].kind == LogKind.COMMIT and by_seq[seq].sender == committer
    applications = [e for e in log if e.kind == LogKind.APPLICATION]
    payloads = Counter(e.payload for e in applications)
    repeated = [(e.seq, e.sender) for e in applications if payloads[e.payload] > 1]
    assert not repeated, f"the same message stored twice: {repeated}"
    seen = {r.seq for p in people for r in p.member.received(group_id)}
    unread = [(e.seq, e.epoch, e.sender) for e in applications if e.seq not in seen]
    assert not unread, f"stored but received by nobody: {unread}"
    _verify_messages(people, group_id, ledger, len(applications))


async def verify_log(store_url: str, group_id: bytes, epoch: int) -> list[LogEntry]:
    """The store (read once the bridge stopped) holds the group at ``epoch`` and a log
    without gaps with exactly one commit per epoch 0..epoch-1; returns the log."""
    store = await open_store(store_url)
    try:
        record = await store.get_group(group_id)
        log: list[LogEntry] = []
        while True:
            page = await store.log_since(group_id, log[-1].seq if log else 0, 500)
            if not page:
                break
            log += page
    finally:
        await store.close()
    assert record.epoch == epoch, (record.epoch, epoch)
    assert [e.seq for e in log] == list(range(1, len(log) + 1)), "gaps in the log"
    commit_epochs = [e.epoch for e in log if e.kind == LogKind.COMMIT]
    assert commit_epochs == list(range(epoch)), commit_epochs
    return log


def _verify_messages(people: list[Person], group_id: bytes, ledger: Ledger,
                     logged: int) -> None:
    received = {p.identity: [t for _, t in p.texts(group_id)] for p in people}
    for identity, texts in received.items():
        twice = [t for t, n in Counter(texts).items() if n > 1]
        assert not twice, f"{identity} received twice: {twice}"
        for sender, text in ledger.acked:
            if sender != identity:
                assert text in texts, f"{identity} lost acknowledged {text!r}"
        for sender in {s for s, _ in ledger.acked + ledger.unknown} - {identity}:
            order = [t for t in ledger.sent_order(sender) if t in texts]
            assert [t for t in texts if t in order] == order, f"{identity}: order of {sender}"
    delivered = set()
    for sender, text in ledger.unknown:
        got = {i for i, texts in received.items() if i != sender and text in texts}
        assert got in (set(), set(received) - {sender}), f"{text!r} reached only {got}"
        if got:
            delivered.add(text)
    distinct = len(ledger.acked) + len(delivered)
    assert logged == distinct, f"{logged} application messages in the log, " \
                               f"{distinct} distinct ones delivered"


def print_report(report: CrashReport) -> None:
    print(f"seed {report.seed}: {len(report.kills)} kills in {report.seconds:.1f} s; "
          f"final epoch {report.epoch}")
    for line in report.kills:
        print("  " + line)
    print(f"  restarts (s): {', '.join(f'{s:.2f}' for s in report.restart_seconds)}")
    print(f"  messages {report.messages} (acknowledged {report.acked}, outcome unknown "
          f"{report.unknown}); commits accepted {report.commits}, given up "
          f"{report.failed_commits}")
    print(f"CRASH seed={report.seed} kills={len(report.kills)} epoch={report.epoch} "
          f"messages={report.messages} unknown={report.unknown} commits={report.commits} "
          "lost=0 duplicated=0")
    if report.relayed:
        print(f"  relay room: {report.relayed} messages between a plain XMPP client and "
              f"an MLS member, none lost, none shown twice ({report.relay_repeats} "
              "re-sent after a kill, dropped by the client as XEP-0359 repeats)")


def _kind_of(failure: str) -> str:
    """What a failed run's assertion says went wrong: a loss, a duplicate, or else."""
    if "twice" in failure:
        return "duplicated"
    if any(word in failure for word in ("lost", "never shown", "received by nobody",
                                        "reached only")):
        return "lost"
    return "other"


async def _main(args: argparse.Namespace) -> int:
    """``--runs`` runs (seeds ``--seed``.. on), each ending in a graceful stop; a failed
    run is reported with its seed and its workdir (log, stderr) copied to ``--keep``,
    and the next run goes on. Exit 1 if any run failed."""
    keep = Path(args.keep)
    tally: Counter[str] = Counter()
    with real_servers("mls-crash-") as (root, prosody, synapse):
        for run in range(args.runs):
            workdir = root / f"run{run}"
            workdir.mkdir()
            plan = CrashPlan(seed=args.seed + run, kills=args.kills,
                             ops_per_person=args.ops, xmpp_people=args.xmpp,
                             matrix_people=args.matrix, relay=args.relay,
                             graceful=args.graceful)
            try:
                report = await run_crash(prosody, synapse, workdir, plan)
            except (AssertionError, *FAILURES) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                kept = keep / f"seed-{plan.seed}"
                shutil.copytree(workdir, kept, dirs_exist_ok=True)
                tally["failed"] += 1
                tally[_kind_of(failure)] += 1
                print(f"FAILED seed={plan.seed}: kept {kept}\n{failure}", flush=True)
                if args.stop_on_failure:
                    break
                continue
            tally["passed"] += 1
            print_report(report)
            print(f"  graceful stop: exit 0 in {report.stop_seconds:.2f} s, complete, "
                  "no leaked resource", flush=True)
    print(f"CRASH-SUMMARY runs={tally['passed'] + tally['failed']} passed={tally['passed']} "
          f"failed={tally['failed']} lost={tally['lost']} duplicated={tally['duplicated']} "
          f"other={tally['other']}", flush=True)
    return 1 if tally["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="runs, seeds seed..seed+runs-1")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ops", type=int, default=40, help="operations per member")
    parser.add_argument("--relay", action="store_true",
                        help="add the relay-mode room pair with a plain XMPP client")
    parser.add_argument("--xmpp", type=int, default=3, help="XMPP members")
    parser.add_argument("--matrix", type=int, default=3, help="Matrix members")
    parser.add_argument("--graceful", action="store_true",
                        help="stop the bridge with SIGTERM instead of SIGKILL")
    parser.add_argument("--keep", default="/tmp/mls-crash-failures",
                        help="where a failed run's workdir (bridge log, stderr) is copied")
    parser.add_argument("--stop-on-failure", action="store_true",
                        help="end the loop at the first failed run")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
