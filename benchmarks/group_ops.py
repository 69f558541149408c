"""Group-operation benchmark: create/add, join, commits, application messages, memory.

Run as ``python -m benchmarks.group_ops [--sizes 10,100,1000,10000] [--reps 5]
[--peers ours,rfc9420,mls-rs,ts-mls] [--profile]``.  See benchmarks/README.md for the
rows and the methodology.  Prints a markdown table: our median time, the crypto floor
(benchmarks/floor.py), and for each peer implementation its median and our/their ratio.
This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import floor as crypto_floor
from benchmarks.peers import Driver, PeerUnavailable
from benchmarks.primitives import machine_line
from mls.crypto.suite import suite

SIZES = (10, 100, 1000, 10000)
APP_GROUP = 10
APP_SIZE = 1024
#: Seconds one row may spend on repetitions after its first run (per N, per peer).
ROW_BUDGET = 20.0
#: Seconds a peer implementation may spend in total; larger N are skipped (with the
#: projection printed) when the previous N projects beyond what is left.
PEER_BUDGET = 200.0

ROWS = (
    ("create_add", "1. create + add N-1 in one commit (committer)"),
    ("join", "2. join from Welcome (one joiner)"),
    ("sparse_create", "3. empty commit, sparse tree: create"),
    ("sparse_process", "3. empty commit, sparse tree: process"),
    ("populated_create", "4. empty commit, populated tree: create"),
    ("populated_process", "4. empty commit, populated tree: process"),
    ("app", "5. 1 KiB app messages, encrypt+decrypt (group of 10)"),
    ("state_bytes", "6. member state, len(to_bytes())"),
    ("join_peak", "6. tracemalloc peak during join"),
)
RATE_ROWS = {"app"}
SIZE_ROWS = {"state_bytes", "join_peak"}


@dataclass
class Measure:
    """Samples of one row for one implementation and N (seconds, msgs/s or bytes)."""

    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


Results = dict[tuple[str, str, int], Measure]


def repeat(reps: int, run: Callable[[int], float], budget: float = ROW_BUDGET) -> Measure:
    """Run ``run(rep)`` (which returns one sample) up to ``reps`` times; stop early
    when the next run would exceed ``budget`` seconds; note how many runs were made."""
    measure = Measure()
    started = time.perf_counter()
    for rep in range(reps):
        measure.samples.append(run(rep))
        spent = time.perf_counter() - started
        if rep + 1 < reps and spent / (rep + 1) * (rep + 2) > budget:
            break
    if len(measure.samples) < reps:
        count = len(measure.samples)
        measure.note = "1 run" if count == 1 else f"median of {count}"
    return measure


def failed(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return "fails: " + (text[:110] + "…" if len(text) > 110 else text)


class SizeRun:
    """All rows of one implementation at one N (rows 1-4 and 6)."""

    def __init__(self, driver: Driver, n: int, reps: int, results: Results) -> None:
        self.driver, self.n, self.reps, self.results = driver, n, reps, results
        self.processor: Any = None  # leaf 0's group, whose state size row 6 reports

    def put(self, row: str, measure: Measure) -> None:
        self.results[(self.driver.name, row, self.n)] = measure

    def note_all(self, rows: tuple[str, ...], note: str) -> None:
        for row in rows:
            self.put(row, Measure(note=note))

    def run(self) -> None:
        d, n = self.driver, self.n
        members = d.make_members(n)
        key_packages = [d.key_package(m) for m in members[1:]]
        creator_state: dict[str, Any] = {}

        def create(rep: int) -> float:
            elapsed, group, welcome = d.create_and_add(members[0], key_packages)
            creator_state.update(group=group, welcome=welcome)
            return elapsed

        try:
            self.put("create_add", repeat(self.reps, create))
        except Exception as exc:  # noqa: BLE001 - a peer's failure is reported in the table
            self.put("create_add", Measure(note=failed(exc)))
            self.note_all(("join", "sparse_create", "sparse_process", "populated_create",
                           "populated_process", "state_bytes", "join_peak"),
                          "not run: row 1 failed")
            return
        welcome = creator_state["welcome"]
        joined: dict[int, Any] = {}

        def join(rep: int) -> float:
            leaf = n - 1 - rep
            elapsed, group = d.join(members[leaf], welcome)
            joined[leaf] = group
            return elapsed

        try:
            self.put("join", repeat(min(self.reps, n - 1), join))
        except Exception as exc:  # noqa: BLE001
            self.put("join", Measure(note=failed(exc)))
            self.note_all(("sparse_create", "sparse_process", "populated_create",
                           "populated_process", "state_bytes", "join_peak"),
                          "not run: row 2 failed")
            return
        peak = d.join_peak_memory(members[n - 1], welcome)
        self.put("join_peak", Measure([float(peak)]) if peak is not None
                 else Measure(note="n/a (not Python-heap memory)"))
        try:
            self.commits(members, creator_state["group"], joined, welcome)
        except Exception as exc:  # noqa: BLE001
            for row in ("sparse_create", "sparse_process", "populated_create",
                        "populated_process"):
                self.results.setdefault((d.name, row, n), Measure(note=failed(exc)))
        size = d.state_size(self.processor)
        self.put("state_bytes", Measure([float(size)]) if size is not None
                 else Measure(note="not available"))

    def commits(self, members: list[Any], creator: Any, joined: dict[int, Any],
                welcome: bytes) -> None:
        """Rows 3 and 4: committer leaf N-1, processor leaf 0.  The members at leaves
        1, 2, 4, ... are kept in sync through row 3 so that they can populate the tree
        for row 4; the committer's own earlier commits do not change its copath."""
        d, n = self.driver, self.n
        populators = [leaf for leaf in crypto_floor.populating_leaves(n) if leaf != n - 1]
        synced: dict[int, Any] = {0: creator, n - 1: joined[n - 1]}
        self.processor = creator
        for leaf in populators:
            synced[leaf] = joined[leaf] if leaf in joined else d.join(members[leaf],
                                                                        welcome)[1]
        joined.clear()
        gc.collect()
        ok = self.commit_rows("sparse", synced, sync_others=True)
        self.processor = synced[0]
        if not ok:
            self.note_all(("populated_create", "populated_process"),
                          "not run: its commits cannot be processed (row 3)")
            return
        for leaf in populators:
            _, synced[leaf], commit = d.commit_empty(synced[leaf])
            for other in list(synced):
                if other != leaf:
                    synced[other] = d.process(synced[other], commit)[1]
        final = {0: synced[0], n - 1: synced[n - 1]}
        synced.clear()
        self.commit_rows("populated", final, sync_others=False)
        self.processor = final[0]

    def commit_rows(self, kind: str, synced: dict[int, Any], *, sync_others: bool) -> bool:
        d, n = self.driver, self.n
        create, process = Measure(), Measure()
        started = time.perf_counter()
        for rep in range(self.reps):
            try:
                elapsed, synced[n - 1], commit = d.commit_empty(synced[n - 1])
            except Exception as exc:  # noqa: BLE001
                create.note = failed(exc)
                break
            create.samples.append(elapsed)
            if not process.note:
                try:
                    elapsed, synced[0] = d.process(synced[0], commit)
                    process.samples.append(elapsed)
                except Exception as exc:  # noqa: BLE001
                    process.note = failed(exc)
            if sync_others and not process.note:
                for leaf in synced:
                    if leaf not in (0, n - 1):
                        synced[leaf] = d.process(synced[leaf], commit)[1]
            spent = time.perf_counter() - started
            if rep + 1 < self.reps and spent / (rep + 1) * (rep + 2) > ROW_BUDGET:
                break
        # Decided before the "median of k" notes below: a row cut short by its time
        # budget still ran, and the populated rows can follow it.
        processed = not process.note and bool(process.samples)
        for measure in (create, process):
            count = len(measure.samples)
            if count and count < self.reps and not measure.note:
                measure.note = "1 run" if count == 1 else f"median of {count}"
        self.put(f"{kind}_create", create)
        self.put(f"{kind}_process", process)
        return processed


def run_app_row(driver: Driver, reps: int, results: Results) -> None:
    """Row 5: application messages in a group of 10, sender leaf 0, receiver leaf 9."""
    try:
        members = driver.make_members(APP_GROUP)
        _, sender, welcome = driver.create_and_add(
            members[0], [driver.key_package(m) for m in members[1:]])
        _, receiver = driver.join(members[-1], welcome)
        elapsed, sender, receiver = driver.app_messages(sender, receiver, 20, APP_SIZE)
        count = max(20, int(20 * 0.3 / max(elapsed, 1e-6)))
        samples = []
        for _ in range(reps):
            elapsed, sender, receiver = driver.app_messages(sender, receiver, count, APP_SIZE)
            samples.append(count / elapsed)
        results[(driver.name, "app", APP_GROUP)] = Measure(samples)
    except Exception as exc:  # noqa: BLE001
        results[(driver.name, "app", APP_GROUP)] = Measure(note=failed(exc))


def run_driver(driver: Driver, sizes: list[int], reps: int, results: Results,
               budget: float | None) -> None:
    started = time.perf_counter()
    previous: tuple[int, float] | None = None
    for n in sizes:
        spent = time.perf_counter() - started
        if budget is not None and previous is not None:
            projected = previous[1] * n / previous[0] * 1.3
            if spent + projected > budget:
                for row, _ in ROWS:
                    if row != "app":
                        results[(driver.name, row, n)] = Measure(
                            note=f"skipped: N={previous[0]} took {previous[1]:.0f} s, "
                                 f"N={n} projected ~{projected:.0f} s (budget {budget:.0f} s)")
                continue
        size_started = time.perf_counter()
        SizeRun(driver, n, reps, results).run()
        gc.collect()
        previous = (n, time.perf_counter() - size_started)
        print(f"  {driver.name} N={n}: {previous[1]:.1f} s", file=sys.stderr, flush=True)
    run_app_row(driver, reps, results)


# -- output ------------------------------------------------------------------------

def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_bytes(size: float) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.2f} MiB"
    if size >= 1 << 10:
        return f"{size / (1 << 10):.1f} KiB"
    return f"{size:.0f} B"


def fmt(row: str, measure: Measure | None) -> str:
    if measure is None:
        return "—"
    value = measure.value
    if value is None:
        return measure.note or "no result"
    if row in RATE_ROWS:
        text = f"{value:,.0f} msg/s"
    elif row in SIZE_ROWS:
        text = fmt_bytes(value)
    else:
        text = fmt_time(value)
    return f"{text} ({measure.note})" if measure.note else text


def ratio(row: str, ours: Measure | None, theirs: Measure | None) -> str:
    if ours is None or theirs is None or ours.value is None or theirs.value is None:
        return "—"
    if row in RATE_ROWS:  # our time / their time = their rate / our rate
        return f"{theirs.value / ours.value:.2f}"
    return f"{ours.value / theirs.value:.2f}"


def floor_measures(sizes: list[int]) -> dict[tuple[str, int], float]:
    units = crypto_floor.measure_units(suite(1))
    out: dict[tuple[str, int], float] = {}
    for n in sizes:
        f = crypto_floor.floors_for(units, n)
        out.update({("create_add", n): f.create_add, ("join", n): f.join,
                    ("sparse_create", n): f.sparse_create,
                    ("sparse_process", n): f.sparse_process,
                    ("populated_create", n): f.populated_create,
                    ("populated_process", n): f.populated_process})
    out[("app", APP_GROUP)] = 1 / crypto_floor.floor_app_message(units, APP_SIZE)
    return out


def print_table(drivers: list[tuple[str, Driver | str]], sizes: list[int],
                results: Results, floors: dict[tuple[str, int], float]) -> None:
    peers = [(name, d) for name, d in drivers if name != "ours"]
    header = ["row", "N", "ours", "crypto floor", "ours/floor"]
    for name, _ in peers:
        header += [name, f"ours/{name}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(header) - 2))
    for row, title in ROWS:
        for n in ([APP_GROUP] if row == "app" else sizes):
            ours = results.get(("ours", row, n))
            cells = [title, str(n), fmt(row, ours)]
            if (row, n) in floors:
                floor_value = floors[(row, n)]
                floor_measure = Measure([floor_value])
                cells += [fmt(row, floor_measure), ratio(row, ours, floor_measure)]
            else:
                cells += ["—", "—"]
            for _, peer in peers:
                if isinstance(peer, str):
                    cells += [peer, "—"]
                    continue
                theirs = results.get((peer.name, row, n))
                cells += [fmt(row, theirs), ratio(row, ours, theirs)]
            print("| " + " | ".join(cells) + " |")


# -- drivers --------------------------------------------------------------------------

def load_driver(name: str) -> Driver | str:
    """The driver, or the reason it is unavailable."""
    try:
        if name == "ours":
            from benchmarks.peers.ours import OursDriver
            return OursDriver()
        if name == "rfc9420":
            from benchmarks.peers.rfc9420_peer import Rfc9420Driver
            return Rfc9420Driver()
        if name == "mls-rs":
            from benchmarks.peers.mls_rs_peer import MlsRsDriver
            return MlsRsDriver()
        if name == "ts-mls":
            from benchmarks.peers.ts_mls_peer import TsMlsDriver
            return TsMlsDriver()
    except PeerUnavailable as exc:
        return f"not available: {exc}"
    except ImportError as exc:
        return f"not installed ({exc.name})"
    return f"unknown peer {name}"


def profile_rows(n: int = 1000, top: int = 15) -> None:
    """cProfile of rows 1-3 at N for our implementation; top functions."""
    from benchmarks.peers.ours import OursDriver

    driver = OursDriver()
    members = driver.make_members(n)
    key_packages = [driver.key_package(m) for m in members[1:]]
    profiler = cProfile.Profile()
    profiler.enable()
    _, creator, welcome = driver.create_and_add(members[0], key_packages)
    _, joiner = driver.join(members[n - 1], welcome)
    _, joiner, commit = driver.commit_empty(joiner)
    driver.process(creator, commit)
    profiler.disable()
    for key, title in (("cumulative", "cumulative time"), ("tottime", "self time")):
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats(key).print_stats(top)
        print(f"\n### Profile of rows 1-3 at N={n}: top {top} by {title}\n")
        print("```")
        text = stream.getvalue()
        print(text[text.find("   ncalls"):].rstrip())
        print("```")


def versions() -> str:
    parts = []
    for dist in ("rfc9420", "agentvault-mls-rs-uniffi"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--peers", default="ours,rfc9420,mls-rs,ts-mls")
    parser.add_argument("--peer-budget", type=float, default=PEER_BUDGET,
                        help="seconds per peer implementation before larger N are skipped")
    parser.add_argument("--profile", action="store_true",
                        help="also profile rows 1-3 at N=1000 (cProfile)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    if "ours" not in names:
        names.insert(0, "ours")
    started = time.perf_counter()
    print(machine_line())
    print(f"Cipher suite 1; medians of {args.reps} runs unless noted; {versions()}")
    drivers = [(name, load_driver(name)) for name in names]
    for name, driver in drivers:
        print(f"- {name}: {driver if isinstance(driver, str) else driver.describe()}")
    results: Results = {}
    floors = floor_measures(sizes)
    for name, driver in drivers:
        if isinstance(driver, str):
            continue
        try:
            run_driver(driver, sizes, args.reps, results,
                       None if name == "ours" else args.peer_budget)
        finally:
            driver.close()
    print()
    print_table(drivers, sizes, results, floors)
    if args.profile:
        profile_rows()
    print(f"\nTotal run time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
