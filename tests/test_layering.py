"""The layering of docs/ARCHITECTURE.md holds at run time, not only for import-linter:
importing a transport loads neither ``mls`` nor ``bridge``, and ``mls`` loads neither
``bridge`` nor ``transports``. And no import cycle hides from import-linter's view in
``mls``, ``bridge`` or ``transports``: every project import sits at the top of its module, never
inside a function or behind ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("mls", "bridge", "transports")

CASES = {
    "transports": ("transports.interface, transports.xmpp.component, transports.xmpp.client, "
                   "transports.matrix.bot, transports.matrix.client, "
                   "transports.matrix.appservice", ("mls", "bridge")),
    "mls": ("mls.group.group, mls.vectors", ("bridge", "transports")),
}


@pytest.mark.parametrize("package", sorted(CASES))
def test_imports_stay_in_their_layer(package: str) -> None:
    modules, forbidden = CASES[package]
    code = (f"import sys, {modules}; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def _project_import(node: ast.AST) -> str | None:
    """The project module ``node`` imports, if it is an import of one."""
    if isinstance(node, ast.ImportFrom):
        name = node.module or ""
        return name or "." if node.level or name.split(".")[0] in PROJECT else None
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names if alias.name.split(".")[0] in PROJECT]
        return names[0] if names else None
    return None


def hidden_imports(source: str) -> list[str]:
    """``line: what`` for each project import not at the top of the module, and each
    use of ``TYPE_CHECKING``."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        name = _project_import(node)
        if name is not None and id(node) not in top:
            found.append((node.lineno, f"import of {name} inside a block"))
        named = node.id if isinstance(node, ast.Name) else \
            node.name if isinstance(node, ast.alias) else ""
        if named == "TYPE_CHECKING":
            found.append((node.lineno, "TYPE_CHECKING"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_the_check_sees_hidden_imports() -> None:
    source = ("from typing import TYPE_CHECKING\nimport os\nfrom bridge import errors\n"
              "if TYPE_CHECKING:\n    from bridge.hub import Hub\n"
              "def f() -> None:\n    import mls.codec\n    from . import x\n    import json\n")
    assert hidden_imports(source) == [
        "1: TYPE_CHECKING", "4: TYPE_CHECKING", "5: import of bridge.hub inside a block",
        "7: import of mls.codec inside a block", "8: import of . inside a block"]


@pytest.mark.parametrize("package", ["mls", "bridge", "transports"])
def test_no_lazy_or_type_checking_imports(package: str) -> None:
    problems = [f"{path.relative_to(ROOT)}:{problem}"
                for path in sorted((ROOT / package).rglob("*.py"))
                for problem in hidden_imports(path.read_text("utf-8"))]
    assert problems == []
