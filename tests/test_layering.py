"""The layering of docs/ARCHITECTURE.md holds at run time, not only for import-linter:
importing a transport loads neither ``mls`` nor ``bridge``, and ``mls`` loads neither
``bridge`` nor ``transports``."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
