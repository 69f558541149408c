"""``python -m mls.vectors FILE...``: run every case of the given mlswg vector files.

Prints one line per file and a closing line ``N passed, M failed``; exits 1 on any
failure.  A case whose cipher suite we cannot run counts as failed, never skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from mls.vectors import KINDS, checker, load_cases, vectors_dir


def _case_count(path: Path) -> int:
    try:
        with path.open() as fh:
            return max(1, len(json.load(fh)))
    except (OSError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mls.vectors", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path,
                        help="vector files (default: every known file in the vector dir)")
    parser.add_argument("--kind", choices=sorted(KINDS), help="override the file-name kind")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    args = parser.parse_args(argv)
    files = args.files or [vectors_dir() / f"{stem}.json" for stem in KINDS]
    passed = failed = 0
    for path in files:
        file_passed = file_failed = 0
        try:
            cases = load_cases(path, args.kind)
        except (OSError, ValueError) as exc:
            count = _case_count(path)
            print(f"{path.name}: cannot run: {exc}; {count} cases count as failed")
            failed += count
            continue
        try:
            check = checker(cases[0].kind) if cases else None
        except ImportError as exc:
            print(f"{path.name}: kind not implemented ({exc}); every case counts as failed")
            check = None
        for labelled in cases:
            try:
                if check is None:
                    raise NotImplementedError(labelled.kind)
                check(labelled.case)
            except Exception as exc:  # noqa: BLE001 - any failure counts, and is reported
                file_failed += 1
                if args.verbose:
                    print(f"  FAIL {labelled.ident}: {type(exc).__name__}: {exc}")
                    traceback.print_exc(limit=-3, file=sys.stdout)
            else:
                file_passed += 1
        print(f"{path.name}: {file_passed} passed, {file_failed} failed")
        passed += file_passed
        failed += file_failed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
