"""Per-operation cProfile of our implementation (a development aid, not a benchmark).

Run as ``python -m benchmarks.profile_ops [--n 1000] [--ops create,join,create_path,
process,app] [--top 25] [--sort tottime]``.  Each operation is profiled on its own,
with the same scenario as :mod:`benchmarks.group_ops` (rows 1, 2, 3 and 5); the
timings printed beside each profile are without the profiler.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from typing import Any

from benchmarks.floor import populating_leaves
from benchmarks.peers.ours import OursDriver


def _profile(title: str, run: Callable[[], Any], top: int, sort: str) -> Any:
    start = time.perf_counter()
    run()
    plain = time.perf_counter() - start
    profiler = cProfile.Profile()
    profiler.enable()
    result = run()
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats(sort).print_stats(top)
    text = stream.getvalue()
    print(f"\n### {title}: {plain * 1e3:.2f} ms without profiler\n")
    print(text[text.find("   ncalls"):].rstrip())
    return result


def _populated(driver: OursDriver, members: list[Any], welcome: bytes, creator: Any,
               n: int, top: int, sort: str) -> None:
    """Row 4: leaves 1, 2, 4, ... commit once; then leaf N-1 commits, leaf 0 processes."""
    leaves = [leaf for leaf in populating_leaves(n) if leaf != n - 1]
    synced = {0: creator, n - 1: driver.join(members[n - 1], welcome)[1]}
    for leaf in leaves:
        synced[leaf] = driver.join(members[leaf], welcome)[1]
    for leaf in leaves:
        _, synced[leaf], commit = driver.commit_empty(synced[leaf])
        for other in list(synced):
            if other != leaf:
                synced[other] = driver.process(synced[other], commit)[1]
    committer = synced[n - 1]
    _profile("empty commit with path (populated): create",
             lambda: driver.commit_empty(committer), top, sort)
    _, _, commit = driver.commit_empty(committer)
    _profile("empty commit with path (populated): process",
             lambda: driver.process(synced[0], commit), top, sort)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--ops", default="create,join,create_path,process,populated,app")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args(argv)
    ops = set(args.ops.split(","))
    driver = OursDriver()
    n = args.n
    members = driver.make_members(n)
    key_packages = [driver.key_package(m) for m in members[1:]]
    _, creator, welcome = driver.create_and_add(members[0], key_packages)
    if "create" in ops:
        _profile(f"create + add {n - 1}", lambda: driver.create_and_add(members[0],
                                                                          key_packages),
                 args.top, args.sort)
    _, joiner = driver.join(members[n - 1], welcome)
    if "join" in ops:
        _profile("join", lambda: driver.join(members[n - 2], welcome), args.top, args.sort)
    _, joiner, commit = driver.commit_empty(joiner)
    if "create_path" in ops:
        _profile("empty commit with path (sparse): create",
                 lambda: driver.commit_empty(joiner), args.top, args.sort)
    if "process" in ops:
        _profile("empty commit with path (sparse): process",
                 lambda: driver.process(creator, commit), args.top, args.sort)
    if "populated" in ops:
        _populated(driver, members, welcome, creator, n, args.top, args.sort)
    if "app" in ops:
        small = driver.make_members(10)
        _, sender, small_welcome = driver.create_and_add(
            small[0], [driver.key_package(m) for m in small[1:]])
        _, receiver = driver.join(small[-1], small_welcome)
        state = {"sender": sender, "receiver": receiver}

        def app() -> None:
            _, state["sender"], state["receiver"] = driver.app_messages(
                state["sender"], state["receiver"], 500, 1024)

        _profile("500 app messages, 1 KiB, group of 10", app, args.top, args.sort)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
