"""The curated ``mls`` package API: every advertised name is there, once, and
importing the package loads neither the conformance runner nor anything outside
``mls``."""

from __future__ import annotations

import subprocess
import sys

import mls


def test_all_names_resolve_once() -> None:
    assert len(set(mls.__all__)) == len(mls.__all__)
    assert [name for name in mls.__all__ if not hasattr(mls, name)] == []
    assert mls.Group.__module__ == "mls.group.group"
    assert mls.PublicGroup.__module__ == "mls.group.public"
    assert issubclass(mls.SignatureError, mls.ValidationError)


def test_import_is_limited_to_the_library() -> None:
    code = ("import sys, mls; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'bridge', 'transports'}), 'mls.vectors' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.split() == ["[]", "False"]
