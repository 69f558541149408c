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
only the paths above changed nodes.  This module holds only the hash inputs, so the
tree depends on it and not the other way round; the "original" tree hash of §7.9,
which walks a whole tree, is :func:`mls.tree.parent_hash.original_tree_hash`.
"""

from __future__ import annotations

from mls.codec import Writer, opaque_bytes
from mls.enums import NodeType
from mls.errors import UsageError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree_nodes import ParentNode
from mls.tree.math import LeafIndex

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
