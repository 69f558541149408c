"""docs/SECURITY.md and the tests cannot drift: every test its tables name (the last
column, ``file.py::function``, ``::function`` for the file before it, ``file.py`` or
``file.py::*``) exists. Files are resolved as the document says: ``tests/...`` as
written, else under ``tests/authz/``, ``tests/attacks/`` or ``tests/``."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "SECURITY.md"
TOKEN = re.compile(r"`([^`]+)`")
NAMED = re.compile(r"^(?P<file>[\w/.-]+\.py)?(?:::(?P<name>\*|\w+))?$")


def resolve(name: str) -> Path | None:
    candidates = [ROOT / name] if name.startswith("tests/") else [
        ROOT / "tests" / "authz" / name, ROOT / "tests" / "attacks" / name,
        ROOT / "tests" / name]
    return next((path for path in candidates if path.is_file()), None)


@cache
def functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def named_tests() -> list[tuple[int, str, str]]:
    """(line, file, function or '') for each test the tables' last column names."""
    named = []
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        current = ""
        for token in TOKEN.findall(cells[-1]):
            match = NAMED.match(token)
            if match is None or not (match["file"] or match["name"]):
                continue
            current = match["file"] or current
            named.append((number, current, match["name"] or ""))
    return named


def test_every_test_security_md_names_exists() -> None:
    named = named_tests()
    assert len(named) > 60, "the tables' tests column was not found"
    missing = []
    for number, file, name in named:
        path = resolve(file)
        if path is None:
            missing.append(f"line {number}: no file {file}")
        elif name not in ("", "*") and name not in functions(path):
            missing.append(f"line {number}: no {name} in {path.relative_to(ROOT)}")
    assert not missing, "\n".join(missing)


def test_the_attack_table_names_every_attack() -> None:
    """docs/ATTACKS.md has a row for every test in tests/attacks' attack files."""
    table = (ROOT / "docs" / "ATTACKS.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "tests" / "attacks").glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        for name in sorted(functions(path)):
            if name.startswith("test_"):
                assert f"::{name}`" in table, f"{path.name}::{name} is not in ATTACKS.md"
