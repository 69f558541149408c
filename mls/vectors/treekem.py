"""treekem.json: UpdatePath merge, decryption and creation (RFC 9420 §7.4-§7.6, §7.9).

For each update path: merge it (checking the leaf's parent hash), compare the tree
hash, let every other leaf with private state decrypt it (path secret at the common
ancestor and commit secret), then create a fresh UpdatePath from the same sender and
check that every other leaf derives the same commit secret.
"""

from __future__ import annotations

import random
from typing import Any

from mls import codec
from mls.crypto.suite import CipherSuite, suite
from mls.enums import ProtocolVersion
from mls.messages.extensions import GroupContext
from mls.messages.tree_nodes import UpdatePath
from mls.tree.math import LeafIndex, NodeIndex, leaf_to_node
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import (
    create_update_path,
    decrypt_update_path,
    merge_update_path,
    node_key_pair,
)

Private = dict[NodeIndex, bytes]


def _private_state(cs: CipherSuite, tree: RatchetTree, entry: dict[str, Any]) -> Private:
    """The private keys of one leaf, checked against the tree's public keys."""
    leaf = LeafIndex(entry["index"])
    leaf_node = tree.leaf(leaf)
    assert leaf_node is not None, f"leaf {leaf} is blank"
    encryption_priv = bytes.fromhex(entry["encryption_priv"])
    assert cs.kem.public_key(encryption_priv) == leaf_node.encryption_key, "leaf key"
    keys: Private = {leaf_to_node(leaf): encryption_priv}
    for item in entry["path_secrets"]:
        node = NodeIndex(item["node"])
        private, public = node_key_pair(cs, bytes.fromhex(item["path_secret"]))
        value = tree.node(node)
        assert value is not None, f"node {node} with a path secret is blank"
        assert value.encryption_key == public, f"node {node} key mismatch"
        keys[node] = private
    return keys


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["ratchet_tree"]))
    group_id = bytes.fromhex(case["group_id"])

    def context(tree_hash: bytes) -> bytes:
        return codec.encode(GroupContext(
            ProtocolVersion.MLS10, case["cipher_suite"], group_id, case["epoch"], tree_hash,
            bytes.fromhex(case["confirmed_transcript_hash"])))

    privates = {LeafIndex(e["index"]): _private_state(cs, tree, e)
                for e in case["leaves_private"]}
    signature_keys = {LeafIndex(e["index"]): bytes.fromhex(e["signature_priv"])
                      for e in case["leaves_private"]}
    rng = random.Random(case["epoch"] ^ case["cipher_suite"]).randbytes
    for number, entry in enumerate(case["update_paths"]):
        sender = LeafIndex(entry["sender"])
        update_path = codec.decode(UpdatePath, bytes.fromhex(entry["update_path"]))
        merged = merge_update_path(tree, sender, update_path)
        assert merged.tree_hash().hex() == entry["tree_hash_after"], f"path {number}: hash"
        ctx = context(merged.tree_hash())
        for receiver, keys in privates.items():
            if receiver == sender:
                continue
            result = decrypt_update_path(merged, sender, receiver, keys, update_path, ctx)
            assert result.path_secret.hex() == entry["path_secrets"][receiver], (
                f"path {number}: path secret of leaf {receiver}")
            assert result.commit_secret.hex() == entry["commit_secret"], (
                f"path {number}: commit secret of leaf {receiver}")
        _check_fresh_path(tree, sender, signature_keys[sender], group_id, privates,
                          context, rng)


def _check_fresh_path(tree: RatchetTree, sender: LeafIndex, signature_key: bytes,
                      group_id: bytes, privates: dict[LeafIndex, Private],
                      context: Any, rng: Any) -> None:
    template = tree.leaf(sender)
    assert template is not None
    created = create_update_path(tree, sender, template, signature_key, group_id, context, rng)
    merged = merge_update_path(tree, sender, created.update_path)
    assert merged == created.tree, "merged tree differs from the creator's"
    assert merged.tree_hash() == created.tree.tree_hash()
    ctx = context(merged.tree_hash())
    for receiver, keys in privates.items():
        if receiver == sender:
            continue
        result = decrypt_update_path(merged, sender, receiver, keys, created.update_path, ctx)
        assert result.commit_secret == created.commit_secret, (
            f"fresh path: commit secret of leaf {receiver}")
