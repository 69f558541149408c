"""tree-math.json: array-based tree math (RFC 9420 Appendix C)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mls.errors import UsageError
from mls.tree import math as tm
from mls.tree.math import NodeIndex


def _optional(fn: Callable[[NodeIndex], int], node: NodeIndex) -> int | None:
    try:
        return fn(node)
    except UsageError:
        return None


def check(case: dict[str, Any]) -> None:
    n_leaves: int = case["n_leaves"]
    n_nodes = tm.node_width(n_leaves)
    assert n_nodes == case["n_nodes"], f"n_nodes {n_nodes} != {case['n_nodes']}"
    assert tm.root(n_leaves) == case["root"], "root"
    for i in range(n_nodes):
        x = NodeIndex(i)
        assert _optional(tm.left, x) == case["left"][i], f"left({i})"
        assert _optional(tm.right, x) == case["right"][i], f"right({i})"
        assert _optional(lambda n: tm.parent(n, n_leaves), x) == case["parent"][i], f"parent({i})"
        assert _optional(lambda n: tm.sibling(n, n_leaves), x) == case["sibling"][i], (
            f"sibling({i})")
