"""The bridge profiled under the load of ``benchmarks/load.py``:

    python -m benchmarks.profile_bridge [--rooms 5] [--members 4] [--messages 100]
        [--commits 2] [--top 20] [--out DIR] [--no-strace]

The load runs as usual (members in worker processes, no native phases); the bridge runs
as ``python -m benchmarks.counting_bridge`` (the unchanged command with store counters,
see there). Around the measured bridged phase:

* ``py-spy record --pid <bridge> --format raw`` (py-spy, PyPI; the ``bench`` extra):
  the collapsed stacks are written to ``DIR/bridge.raw.txt`` and turned here into a flame
  graph (``bridge.svg``), a speedscope profile (``bridge.speedscope.json``, open it at
  https://www.speedscope.app) and a ``py-spy top``-like table (``top.txt``, printed):
  per function, the share of samples where it was running (own) and on the stack (total);
* the counters per message: SQLite transactions (and write transactions, statements),
  store calls (each one hand-off to the hub store's thread) and the batches the thread
  ran them in (group commit), and aiosqlite thread hand-offs (the relay's secrets file).

Then one more bridged phase of the same size under ``strace -c -f -p <bridge>`` (apt
``strace``; skipped, and said so, when it is missing): syscalls and futex calls per
message. strace slows the bridge a lot, so that phase's timings mean nothing; only its
counts are reported. py-spy and strace both use ptrace, hence two phases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from benchmarks.bridge_run import real_servers, until
from benchmarks.load import LoadSpec, run_load
from benchmarks.load_report import Phase, print_report

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")
OURS = re.compile(r"\((bridge|transports|mls)/[^()]*\)$")
# Threads blocked waiting, which py-spy still samples as active on a busy machine: the
# event loop in epoll, c-ares's shutdown thread on its queue (its only work), the hub
# store's thread waiting for work (``Condition.wait``), and aiosqlite's thread on its
# request queue (the line of ``tx.get()``, found below).
WAITING = ("EpollSelector.select (selectors.py)",
           "_ChannelShutdownManager._run_safe_shutdown_loop (pycares/__init__.py)",
           "Condition.wait (threading.py)")


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count`` per line, root first."""
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def function(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``: samples aggregated per function."""
    match = FRAME.match(frame)
    return f"{match['name']} ({match['file']})" if match else frame


def _aiosqlite_wait() -> str:
    lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    line = first + next(i for i, text in enumerate(lines) if "tx.get()" in text)
    return f"_connection_worker_thread (aiosqlite/core.py:{line})"


def busy(stacks: list[tuple[list[str], int]]) -> list[tuple[list[str], int]]:
    """The samples whose innermost frame is not a thread waiting (:data:`WAITING`)."""
    wait = _aiosqlite_wait()
    return [(frames, count) for frames, count in stacks
            if frames[-1] != wait and function(frames[-1]) not in WAITING]


def top(stacks: list[tuple[list[str], int]], n: int) -> str:
    """The ``py-spy top`` view of a whole recording: own and total share per function."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = sum(count for _, count in stacks)
    for frames, count in stacks:
        names = [function(f) for f in frames]
        own[names[-1]] += count
        for name in set(names):
            total[name] += count
    lines = [f"{samples} samples", f"{'own %':>7} {'total %':>8}  function (file)"]
    for name, count in own.most_common(n):
        lines.append(f"{count / samples * 100:7.1f} {total[name] / samples * 100:8.1f}  {name}")
    lines += ["", f"our code (bridge/, transports/, mls/) by total (on the stack), top {n}:"]
    ours = Counter({name: count for name, count in total.items() if OURS.search(name)})
    for name, count in ours.most_common(n):
        lines.append(f"{own[name] / samples * 100:7.1f} {count / samples * 100:8.1f}  {name}")
    return "\n".join(lines)


def speedscope(stacks: list[tuple[list[str], int]], name: str) -> dict[str, Any]:
    """A speedscope "sampled" profile (https://www.speedscope.app/file-format-schema.json)."""
    index: dict[str, int] = {}
    frames: list[dict[str, Any]] = []
    samples, weights = [], []
    for stack, count in stacks:
        row = []
        for frame in stack:
            if frame not in index:
                index[frame] = len(frames)
                match = FRAME.match(frame)
                frames.append({"name": match["name"], "file": match["file"],
                               "line": int(match["line"] or 0)} if match else {"name": frame})
            row.append(index[frame])
        samples.append(row)
        weights.append(count)
    total = sum(weights)
    return {"$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": frames}, "name": name, "exporter": "benchmarks.profile_bridge",
            "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0,
                          "endValue": total, "samples": samples, "weights": weights}]}


@dataclass
class Node:
    count: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def flamegraph(stacks: list[tuple[list[str], int]], title: str, width: float = 1200.0) -> str:
    """A static flame graph (SVG, root at the bottom; hover a box for its numbers)."""
    root = Node()
    for frames, count in stacks:
        root.count += count
        node = root
        for frame in frames:
            node = node.children.setdefault(frame, Node())
            node.count += count
    boxes: list[tuple[int, float, float, str, int]] = []  # depth, x, w, frame, count

    def walk(node: Node, depth: int, x: float) -> int:
        deepest = depth
        for frame, child in sorted(node.children.items()):
            w = child.count / root.count * width
            if w >= 0.3:
                boxes.append((depth, x, w, frame, child.count))
                deepest = max(deepest, walk(child, depth + 1, x))
            x += w
        return deepest

    depth = walk(root, 0, 0.0) + 1
    row, top_margin = 16, 24
    height = depth * row + top_margin
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
           'font-family="monospace" font-size="11">',
           f'<text x="4" y="16">{html.escape(title)} ({root.count} samples)</text>']
    for d, x, w, frame, count in boxes:
        y = height - (d + 1) * row
        hue = zlib.crc32(function(frame).encode()) % 60
        label = html.escape(frame[: int(w / 7)]) if w > 21 else ""
        out.append(f'<g><title>{html.escape(frame)}: {count} samples '
                   f'({count / root.count * 100:.1f} %)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                   f'fill="hsl({hue},80%,60%)"/>'
                   f'<text x="{x + 2:.1f}" y="{y + 12}">{label}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def strace_counts(path: Path) -> Counter[str]:
    """Calls per syscall from ``strace -c`` output (``total`` included)."""
    calls: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit():
            calls[fields[-1]] += int(fields[3])
    return calls


class Profiler:
    """The :class:`benchmarks.load.PhaseProbe` of this command."""

    module = "benchmarks.counting_bridge"

    def __init__(self, out: Path, top_n: int, use_strace: bool) -> None:
        self.out = out
        self.top_n = top_n
        self.strace = shutil.which("strace") if use_strace else None
        self.extra: tuple[str, ...] = ("strace",) if self.strace else ()
        self.counters = out / "counters.json"
        self.child: subprocess.Popen[bytes] | None = None
        self.before: dict[str, int] = {}
        self.pid = 0  # the bridge's
        self.lines: list[str] = []

    async def _counts(self, pid: int) -> dict[str, int]:
        self.counters.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
        await until(self.counters.exists, "the bridge's counters", 10.0)
        return dict(json.loads(self.counters.read_text(encoding="utf-8")))

    async def start(self, label: str, pid: int) -> None:
        self.pid = pid
        if label == "strace":
            assert self.strace is not None
            command = [self.strace, "-c", "-f", "-p", str(pid), "-o",
                       str(self.out / "strace.txt")]
        else:
            self.before = await self._counts(pid)
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            command = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                       "--output", str(self.out / "bridge.raw.txt")]
        self.child = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                      stderr=(self.out / f"{label}.stderr").open("wb"))
        await asyncio.sleep(1.0)  # attached before the phase's first send
        if self.child.poll() is not None:
            raise RuntimeError(f"{command[0]} exited: "
                               + (self.out / f"{label}.stderr").read_text())

    async def stop(self, label: str, phase: Phase) -> None:
        assert self.child is not None
        self.child.send_signal(signal.SIGINT)  # both write their output and exit
        await asyncio.get_running_loop().run_in_executor(None, self.child.wait, 60)
        per = max(phase.messages, 1)
        if label == "strace":
            calls = strace_counts(self.out / "strace.txt")
            self.lines.append(f"syscalls per message (strace -c -f): {calls['total'] / per:.1f}"
                              f", of them futex {calls['futex'] / per:.1f}; most: "
                              + ", ".join(f"{n} {c / per:.1f}" for n, c in calls.most_common(9)
                                          if n != "total"))
            return
        after = await self._counts(self.pid)
        delta = {k: after.get(k, 0) - self.before.get(k, 0) for k in after}
        self.lines.append(
            f"per message ({phase.messages} messages): "
            f"transactions {delta.get('transactions', 0) / per:.2f} "
            f"(write {delta.get('write_transactions', 0) / per:.2f}), "
            f"statements {delta.get('statements', 0) / per:.1f}, "
            f"store calls (hand-offs to the store's thread) "
            f"{delta.get('store_calls', 0) / per:.2f} in {delta.get('store_batches', 0) / per:.2f}"
            f" batches, aiosqlite thread hand-offs {delta.get('aiosqlite_handoffs', 0) / per:.1f}")
        self._summarize()

    def _summarize(self) -> None:
        self.lines.append(summarize(self.out / "bridge.raw.txt", self.out, self.top_n))


def summarize(raw: Path, out: Path, top_n: int) -> str:
    """Flame graph, speedscope profile and top table of the busy samples in ``raw``
    (py-spy's collapsed stacks, all kept there); the table."""
    every = read_raw(raw)
    stacks = busy(every)
    if not stacks:
        return "py-spy recorded no busy samples"
    title = f"bridge under load, {sum(c for _, c in stacks)} busy samples"
    (out / "bridge.svg").write_text(flamegraph(stacks, title), "utf-8")
    (out / "bridge.speedscope.json").write_text(json.dumps(speedscope(stacks, title)), "utf-8")
    table = (f"{sum(c for _, c in every)} samples, of them waiting (left out): "
             f"{sum(c for _, c in every) - sum(c for _, c in stacks)}; busy: " + top(stacks, top_n))
    (out / "top.txt").write_text(table + "\n", "utf-8")
    return table


async def _main(args: argparse.Namespace) -> int:
    out = Path(args.out or tempfile.mkdtemp(prefix="mls-profile-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        print(summarize(Path(args.summarize), out, args.top))
        return 0
    os.environ["MLS_BENCH_COUNTERS"] = str(out / "counters.json")
    profiler = Profiler(out, args.top, not args.no_strace)
    spec = LoadSpec(rooms=args.rooms, members=args.members, messages=args.messages,
                    commits=args.commits, pool=args.pool, workers=args.workers)
    with real_servers("mls-profile-") as (root, prosody, synapse):
        (root / "run").mkdir()
        report = await run_load(prosody, synapse, root / "run", spec, probe=profiler)
    print_report(report)
    print()
    if profiler.strace is None:
        print("strace: " + ("not installed (apt-get install strace)" if not args.no_strace
                            else "skipped (--no-strace)"))
    for line in profiler.lines:
        print(line)
    print(f"\nfiles in {out}: bridge.raw.txt bridge.svg bridge.speedscope.json top.txt"
          + (" strace.txt" if profiler.strace else ""))
    with contextlib.suppress(OSError):
        (out / "counters.json").unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--messages", type=int, default=100, help="messages per room")
    parser.add_argument("--commits", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=20, help="rows of the top table")
    parser.add_argument("--out", default="", help="output directory (default: a new temp dir)")
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--summarize", default="", metavar="RAW",
                        help="only summarize an earlier bridge.raw.txt into --out")
    began = time.monotonic()
    code = asyncio.run(_main(parser.parse_args(argv)))
    print(f"({time.monotonic() - began:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
