"""tree-validation.json: resolutions, tree hashes and validity of received trees
(RFC 9420 §4.1.1, §7.8, §7.9.2, §12.4.3.1)."""

from __future__ import annotations

from typing import Any

from mls.crypto.suite import suite
from mls.tree.math import NodeIndex
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import validate_tree


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["tree"]))
    expected_hashes = [bytes.fromhex(h) for h in case["tree_hashes"]]
    assert len(expected_hashes) == tree.width, (
        f"tree width {tree.width} != {len(expected_hashes)}")
    for index, expected in enumerate(expected_hashes):
        assert tree.node_hash(NodeIndex(index)) == expected, f"tree hash of node {index}"
    assert len(case["resolutions"]) == tree.width, "resolution count"
    for index, expected_resolution in enumerate(case["resolutions"]):
        got = tree.resolution(NodeIndex(index))
        assert got == expected_resolution, f"resolution of node {index}: {got}"
    # Parent hashes, leaf signatures (with group_id as context), unmerged leaves,
    # key uniqueness and credential support, exactly as when joining.
    validate_tree(tree, bytes.fromhex(case["group_id"]))
