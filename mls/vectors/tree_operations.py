"""tree-operations.json: applying Add, Update and Remove proposals to a ratchet tree
(RFC 9420 §12.1.1-§12.1.3, §7.7, §7.8)."""

from __future__ import annotations

from typing import Any

from mls.codec import Reader
from mls.crypto.suite import suite
from mls.messages.proposals import Add, Remove, Update, decode_proposal
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["tree_before"]))
    assert tree.tree_hash() == bytes.fromhex(case["tree_hash_before"]), "tree_hash_before"
    reader = Reader(bytes.fromhex(case["proposal"]))
    proposal = decode_proposal(reader)
    reader.finish("proposal")
    after = tree.copy()
    sender = LeafIndex(case["proposal_sender"])
    if isinstance(proposal, Add):
        after.add_leaf(proposal.key_package.leaf_node)
    elif isinstance(proposal, Update):
        after.update_leaf(sender, proposal.leaf_node)
    elif isinstance(proposal, Remove):
        after.remove_leaf(LeafIndex(proposal.removed))
    else:
        raise AssertionError(f"unexpected proposal {type(proposal).__name__}")
    assert after.to_bytes().hex() == case["tree_after"], "tree_after"
    assert after.tree_hash() == bytes.fromhex(case["tree_hash_after"]), "tree_hash_after"
    # The copy must not have disturbed the original.
    assert tree.tree_hash() == bytes.fromhex(case["tree_hash_before"]), "original changed"
    assert RatchetTree(cs, after.nodes()).tree_hash() == after.tree_hash(), "stale hash cache"
