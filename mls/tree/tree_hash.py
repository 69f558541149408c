"""Tree hashes (RFC 9420 §7.8).

The tree hash of a node is the hash of its ``TreeHashInput``::

    struct {
      NodeType node_type;
      select (TreeHashInput.node_type) {
        case leaf:   LeafNodeHashInput leaf_node;
        case parent: ParentNodeHashInput parent_node;
      };
    } TreeHashInput;

    struct { uint32 leaf_index; optional<LeafNode> leaf_node; } LeafNodeHashInput;
    struct { optional<ParentNode> parent_node;
             opaque left_hash<V>; opaque right_hash<V>; } ParentNodeHashInput;

:class:`~mls.tree.ratchet_tree.RatchetTree` caches every node's hash and recomputes
only the paths above changed nodes; this module holds the hash inputs and the
"original" tree hash of §7.9 (the tree hash with some leaves removed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from mls.codec import Writer, opaque_bytes
from mls.enums import NodeType
from mls.errors import UsageError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree_nodes import ParentNode
from mls.tree.math import LeafIndex, NodeIndex, leaves_under, left, level, right

if TYPE_CHECKING:
    from mls.tree.ratchet_tree import RatchetTree


_LEAF_PREFIX = bytes((NodeType.LEAF,))
_PARENT_PREFIX = bytes((NodeType.PARENT,))
_BLANK_PARENT_PREFIX = bytes((NodeType.PARENT, 0))


def leaf_hash_input(leaf_index: LeafIndex, leaf: LeafNode | None) -> bytes:
    """Serialized ``TreeHashInput`` of a leaf (RFC 9420 §7.8)."""
    if not 0 <= leaf_index < 1 << 32:
        raise UsageError(f"leaf index {leaf_index} does not fit in uint32")
    head = _LEAF_PREFIX + leaf_index.to_bytes(4, "big")
    if leaf is None:
        return head + b"\x00"
    return head + b"\x01" + leaf.to_bytes()


def parent_hash_input(node: ParentNode | None, left_hash: bytes, right_hash: bytes) -> bytes:
    """Serialized ``TreeHashInput`` of a parent node (RFC 9420 §7.8)."""
    if node is None:
        return _BLANK_PARENT_PREFIX + opaque_bytes(left_hash) + opaque_bytes(right_hash)
    w = Writer()
    w.raw(_PARENT_PREFIX)
    w.optional(node)
    w.opaque(left_hash)
    w.opaque(right_hash)
    return w.getvalue()


def original_tree_hash(tree: RatchetTree, node: NodeIndex,
                       removed_leaves: Collection[int]) -> bytes:
    """Tree hash of ``node`` after blanking ``removed_leaves`` and deleting them from
    every ``unmerged_leaves`` list (the "original sibling tree hash", RFC 9420 §7.9).

    Subtrees holding none of the removed leaves reuse the tree's cached hashes, so
    the cost is proportional to the removed leaves times the tree depth.
    """
    removed = frozenset(removed_leaves)
    if not removed:
        return tree.node_hash(node)
    hash_fn = tree.suite.hash
    return _original_hash(tree, node, removed, hash_fn)


def _original_hash(tree: RatchetTree, node: NodeIndex, removed: frozenset[int],
                   hash_fn: Callable[[bytes], bytes]) -> bytes:
    covered = leaves_under(node, tree.n_leaves)
    if not any(leaf in covered for leaf in removed):
        return tree.node_hash(node)
    value = tree.node(node)
    if level(node) == 0:
        leaf_index = LeafIndex(node >> 1)
        leaf = None if leaf_index in removed else value
        assert leaf is None or isinstance(leaf, LeafNode)
        return hash_fn(leaf_hash_input(leaf_index, leaf))
    left_hash = _original_hash(tree, left(node), removed, hash_fn)
    right_hash = _original_hash(tree, right(node), removed, hash_fn)
    parent: ParentNode | None = None
    if isinstance(value, ParentNode):
        kept = tuple(leaf for leaf in value.unmerged_leaves if leaf not in removed)
        parent = dataclasses.replace(value, unmerged_leaves=kept)
    return hash_fn(parent_hash_input(parent, left_hash, right_hash))
