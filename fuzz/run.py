"""The long fuzz runner: ``python -m fuzz.run --family mls-message --inputs 1000000``.

Engines (``--engine``):

* ``atheris`` -- coverage-guided (libFuzzer through atheris, when it is installed:
  ``pip install atheris``). The project's packages are instrumented; the seeds of
  :mod:`fuzz.seeds` are the initial corpus (written to a temporary directory, never
  into the project); each mutation is libFuzzer's own or, half of the time, the
  family's structure-aware mutator from :mod:`fuzz.mutate`.
* ``mutator`` -- no coverage feedback: the structure-aware mutator over the seeds,
  with inputs the decoder accepted fed back into the pool.
* ``auto`` (default) -- atheris if it imports, else the mutator.

A crash (anything but the family's allowed errors, or a failed post-condition) does not
stop the run: each distinct crash (exception type and innermost project frame) is saved
once to ``OUT/crashes/`` with its traceback. Progress and the final figures (inputs
tried, seconds, inputs per second, crashes) go to ``OUT/<family>.json`` every 10,000
inputs and at the end, and one line per report to stdout. Run it niced:
``nice -n 19 python -m fuzz.run --family all --inputs 1000000``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPORT_EVERY = 10_000
PROJECT_PACKAGES = ("mls", "bridge", "transports")


class Runner:
    """Runs one family's target and keeps the figures and distinct crashes."""

    def __init__(self, family: Any, engine: str, out: Path, limit: int) -> None:
        self.family = family
        self.engine = engine
        self.out = out
        self.limit = limit
        self.inputs = 0
        self.accepted_pool: list[bytes] = []
        self.crashes: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        (out / "crashes").mkdir(parents=True, exist_ok=True)

    def run_one(self, data: bytes) -> None:
        self.inputs += 1
        try:
            self.family.target(data)
        except Exception as exc:  # noqa: BLE001 -- every escape is a finding to record
            self._record(data, exc)
        if self.inputs % REPORT_EVERY == 0 or self.inputs == self.limit:
            self.report()

    def _record(self, data: bytes, exc: Exception) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if any(f"/{p}/" in f.filename for p in PROJECT_PACKAGES)]
        where = own[-1] if own else frames[-1]
        key = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
        entry = self.crashes.get(key)
        if entry is not None:
            entry["count"] += 1
            return
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = self.out / "crashes" / f"{self.family.name}-{digest}.bin"
        path.write_bytes(data)
        path.with_suffix(".txt").write_text(
            "".join(traceback.format_exception(exc)) + f"\ninput: {data[:512]!r}\n")
        self.crashes[key] = {"count": 1, "input": str(path), "error": repr(exc)[:300]}
        print(f"[{self.family.name}] CRASH {key}: {repr(exc)[:200]} -> {path}", flush=True)
        self.report()

    def report(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        figures = {
            "family": self.family.name, "engine": self.engine, "inputs": self.inputs,
            "seconds": round(seconds, 1),
            "inputs_per_second": round(self.inputs / seconds, 1) if seconds else 0.0,
            "distinct_crashes": len(self.crashes), "crashes": self.crashes,
        }
        (self.out / f"{self.family.name}.json").write_text(json.dumps(figures, indent=2))
        print(f"[{self.family.name}] {self.engine}: {self.inputs} inputs, {seconds:.0f} s, "
              f"{figures['inputs_per_second']}/s, {len(self.crashes)} distinct crashes",
              flush=True)
        return figures


def run_mutator(runner: Runner, seeds: list[bytes], rng: random.Random) -> None:
    from fuzz.mutate import mutate

    family = runner.family
    pool = list(seeds)
    for seed in seeds:
        runner.run_one(seed)
    while runner.inputs < runner.limit:
        if rng.random() < 0.01:
            data = rng.randbytes(rng.randrange(64))
        else:
            data = mutate(rng.choice(pool), rng, seeds, family.mutator)
        before = len(runner.crashes)
        runner.run_one(data)
        if len(runner.crashes) == before and rng.random() < 0.002 and len(pool) < 5000:
            pool.append(data)  # widen the pool now and then with what we reached


def run_atheris(runner: Runner, seeds: list[bytes], rng: random.Random, max_len: int,
                seed: int) -> None:
    import atheris

    from fuzz.mutate import mutate

    family = runner.family
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{family.name}-"))
    for index, data in enumerate(seeds):
        (corpus / f"seed-{index:05d}").write_bytes(data[:max_len])

    def test_one_input(data: bytes) -> None:
        runner.run_one(data)
        if runner.inputs >= runner.limit:
            runner.report()
            sys.stdout.flush()
            os._exit(0)  # libFuzzer's own exit skips Python's shutdown anyway

    def custom_mutator(data: bytes, max_size: int, mutation_seed: int) -> bytes:
        local = random.Random(mutation_seed)
        if local.random() < 0.5:
            return bytes(atheris.Mutate(data, max_size))
        return mutate(data, local, seeds, family.mutator, max_size)

    args = [sys.argv[0], str(corpus), f"-runs={runner.limit * 2}", f"-max_len={max_len}",
            f"-seed={seed}", "-rss_limit_mb=4096", "-timeout=60", "-print_final_stats=1"]
    atheris.Setup(args, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def _load_families(engine: str) -> dict[str, Any]:
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=list(PROJECT_PACKAGES)):
            from fuzz.families import FAMILIES
    else:
        from fuzz.families import FAMILIES
    return FAMILIES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True,
                        help="a family name (see --list) or 'all' (one after another)")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per family")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutator"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=1 << 16)
    parser.add_argument("--out", type=Path, default=Path("fuzz-results"))
    parser.add_argument("--list", action="store_true", help="list the families and exit")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "mutator"
    families = _load_families(engine)
    if args.list:
        for name, family in families.items():
            print(f"{name:15} {family.description}")
        return 0
    names = list(families) if args.family == "all" else [args.family]
    unknown = [name for name in names if name not in families]
    if unknown:
        parser.error(f"unknown family {unknown[0]!r}; one of: {', '.join(families)}")
    if engine == "atheris" and len(names) > 1:
        parser.error("atheris runs one family per process (libFuzzer exits when done)")
    for name in names:
        family = families[name]
        runner = Runner(family, engine, args.out, args.inputs)
        seeds = family.seeds()
        rng = random.Random(args.seed)
        if engine == "atheris":
            run_atheris(runner, seeds, rng, args.max_len, args.seed)
        else:
            run_mutator(runner, seeds, rng)
            runner.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
