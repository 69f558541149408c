"""The bookkeeping of the load and profile commands, on hand-made inputs: how lost,
duplicated, delivered and latency are counted from what the workers report, and how
py-spy's and strace's outputs are summarized. No servers, no timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import LoadSpec, Room, _count, _plans
from benchmarks.profile_bridge import (
    _aiosqlite_wait,
    busy,
    flamegraph,
    speedscope,
    strace_counts,
    top,
)


def test_count_lost_duplicated_delivered_and_latency() -> None:
    room = Room("r", ["a", "b", "c"], ref="R")
    sent = {"r": [("a", "p r a #0", 1.0), ("b", "p r b #0", 2.0)]}
    received = {
        ("a", "'R'"): {"p r b #0": (1, 2.5)},
        ("b", "'R'"): {"p r a #0": (1, 1.4)},
        # c got a's message twice, never b's, and one of this phase nobody sent here,
        # and one of an earlier phase (not this one's to count)
        ("c", "'R'"): {"p r a #0": (2, 1.6), "p r x #9": (1, 3.0), "q r a #0": (1, 0.5)},
    }
    phase = _count("p", [room], sent, received)
    assert phase.messages == 2
    assert phase.lost == 1  # b's message at c
    assert phase.duplicated == 2  # a's second copy at c, and the stray one
    assert phase.deliveries == 2  # a -> b, b -> a (c's double copy is not a delivery)
    assert phase.latencies == pytest.approx([0.6, 0.5])  # to the last recipient
    assert phase.seconds == pytest.approx(2.5)  # the last arrival
    # per delivery by route (keys of neither network: "other"); c's double copy once
    assert sorted(phase.routes["other -> other"]) == pytest.approx([0.4, 0.5, 0.6])


def test_plans_share_messages_and_stagger_senders_at_a_fixed_rate() -> None:
    class TwoWorkers:
        def __len__(self) -> int:
            return 2

    spec = LoadSpec(rooms=1, members=3, messages=10, commits=2, rate=2.0)
    rooms = [Room("r", ["x0", "m0", "x1"], ref=b"g")]
    sends, plans = _plans(TwoWorkers(), "p", rooms, spec, 10, commits=True)  # type: ignore[arg-type]
    flat = sorted((s for part in sends for s in part), key=lambda s: s.offset)
    assert [s.count for s in flat] == [4, 3, 3]
    assert [s.offset for s in flat] == pytest.approx([0.0, 1 / 6, 2 / 6])
    assert [s.key for s in sends[0]] == ["x0", "m0"] and [s.key for s in sends[1]] == ["x1"]
    commits = sorted((c for part in plans for c in part), key=lambda c: c.at)
    assert len(commits) == 2 and 0 < commits[0].at < commits[1].at <= 4.0


STACKS = [(["main (m.py:1)", "f (bridge/a.py:3)"], 3),
          (["main (m.py:1)", "g (bridge/a.py:5)", "f (bridge/a.py:4)"], 1)]


def test_top_aggregates_per_function_own_and_total() -> None:
    lines = top(STACKS, 5).splitlines()
    assert lines[0] == "4 samples"
    assert lines[2].split() == ["100.0", "100.0", "f", "(bridge/a.py)"]  # both lines of f
    head = "our code (bridge/, transports/, mls/) by total (on the stack), top 5:"
    by_total = lines[lines.index(head) + 1:]
    assert [line.split()[2] for line in by_total] == ["f", "g"]  # main is not ours
    assert by_total[1].split()[:2] == ["0.0", "25.0"]


def test_busy_leaves_out_threads_blocked_waiting() -> None:
    wait = _aiosqlite_wait()
    assert wait.startswith("_connection_worker_thread (aiosqlite/core.py:")
    working = wait.rsplit(":", 1)[0] + ":1)"  # another line of that thread: its work
    stacks = [(["run", "EpollSelector.select (selectors.py:468)"], 5),
              (["boot", wait], 7), (["boot", working], 2),
              (["t", "_ChannelShutdownManager._run_safe_shutdown_loop (pycares/__init__.py:9)"],
               4), *STACKS]
    assert busy(stacks) == [(["boot", working], 2), *STACKS]


def test_speedscope_and_flamegraph_carry_every_sample() -> None:
    profile = speedscope(STACKS, "t")
    frames = profile["shared"]["frames"]
    assert [f["name"] for f in frames] == ["main", "f", "g", "f"]
    assert profile["profiles"][0]["weights"] == [3, 1]
    assert [[frames[i]["line"] for i in s] for s in profile["profiles"][0]["samples"]] == \
        [[1, 3], [1, 5, 4]]
    svg = flamegraph(STACKS, "t")
    assert "(4 samples)" in svg and "g (bridge/a.py:5): 1 samples (25.0 %)" in svg


def test_strace_summary_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "strace.txt"
    path.write_text(
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 61.20    0.012000          23       520        17 futex\n"
        " 20.00    0.004000          10       400           epoll_wait\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.016000          17       920        17 total\n")
    assert strace_counts(path) == {"futex": 520, "epoll_wait": 400, "total": 920}
