"""Parent hashes (RFC 9420 §7.9).

``ParentHashInput``::

    struct {
        HPKEPublicKey encryption_key;
        opaque parent_hash<V>;
        opaque original_sibling_tree_hash<V>;
    } ParentHashInput;

The parent hash of a parent node P "with copath child S" hashes P's key, P's own
``parent_hash`` field and the tree hash of S computed as if the leaves in
``P.unmerged_leaves`` were blank and absent from every ``unmerged_leaves`` list
(the *original* sibling tree hash, §7.9: :func:`original_tree_hash`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection

from mls.codec import Writer
from mls.crypto.suite import CipherSuite
from mls.errors import TreeValidationError, UsageError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree_nodes import ParentNode
from mls.tree.math import (
    LeafIndex,
    NodeIndex,
    leaf_to_node,
    leaves_under,
    left,
    level,
    right,
)
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.tree_hash import leaf_hash_input, parent_hash_input


def parent_hash(suite: CipherSuite, encryption_key: bytes, parent_hash_field: bytes,
                original_sibling_tree_hash: bytes) -> bytes:
    """Hash of a ``ParentHashInput`` (RFC 9420 §7.9)."""
    w = Writer()
    w.opaque(encryption_key)
    w.opaque(parent_hash_field)
    w.opaque(original_sibling_tree_hash)
    return suite.hash(w.getvalue())


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


def parent_hash_of(tree: RatchetTree, parent: NodeIndex, sibling: NodeIndex) -> bytes:
    """The parent hash of the non-blank node ``parent`` with copath child ``sibling``."""
    node = tree.parent_node(parent)
    if node is None:
        raise UsageError(f"parent node {parent} is blank")
    sibling_hash = original_tree_hash(tree, sibling, node.unmerged_leaves)
    return parent_hash(tree.suite, node.encryption_key, node.parent_hash, sibling_hash)


def _copath_child(ancestor: NodeIndex, descendant: NodeIndex) -> NodeIndex:
    """The child of ``ancestor`` that is not above ``descendant``."""
    return right(ancestor) if descendant < ancestor else left(ancestor)


def set_path_parent_hashes(tree: RatchetTree, leaf_index: LeafIndex,
                           filtered_path: list[NodeIndex]) -> bytes:
    """Fill the ``parent_hash`` fields along a freshly set filtered direct path.

    The path nodes must already hold their new keys with empty ``unmerged_leaves``
    (RFC 9420 §7.5).  Hashes are computed from the root down: the topmost node gets
    an empty parent hash; each lower node gets the parent hash of the node above it
    with that node's copath child.  Returns the parent hash for the leaf (empty when
    the filtered direct path is empty, e.g. for the only member of a group).
    """
    next_hash = b""
    below = [leaf_to_node(leaf_index), *filtered_path][:len(filtered_path)]
    for node_index, child_index in zip(reversed(filtered_path), reversed(below), strict=True):
        node = tree.parent_node(node_index)
        if node is None:
            raise UsageError(f"path node {node_index} is blank")
        updated = ParentNode(node.encryption_key, next_hash, node.unmerged_leaves)
        tree.set_node(node_index, updated)
        sibling = _copath_child(node_index, child_index)
        next_hash = parent_hash(tree.suite, updated.encryption_key, next_hash,
                                original_tree_hash(tree, sibling, updated.unmerged_leaves))
    return next_hash


def _parent_hash_field(node: LeafNode | ParentNode) -> bytes:
    return node.parent_hash


def _is_valid_with_respect_to(tree: RatchetTree, parent: NodeIndex,
                              parent_node: ParentNode, child: NodeIndex) -> bool:
    """Whether some D in the resolution of ``child`` is parent-hash valid with respect
    to ``parent`` (RFC 9420 §7.9.2)."""
    sibling = right(parent) if child == left(parent) else left(parent)
    resolution = tree.resolution(child)
    if not resolution:
        return False
    expected = parent_hash_of(tree, parent, sibling)
    covered = leaves_under(child, tree.n_leaves)
    unmerged_below = {leaf_to_node(LeafIndex(leaf)) for leaf in parent_node.unmerged_leaves
                      if leaf in covered}
    resolution_set = set(resolution)
    for candidate in resolution:
        if candidate >= tree.width:
            raise TreeValidationError(f"node {parent}: unmerged leaf outside the tree")
        node = tree.node(candidate)
        if node is None or _parent_hash_field(node) != expected:
            continue
        if resolution_set - {candidate} == unmerged_below:
            return True
    return False


def verify_parent_hashes(tree: RatchetTree) -> None:
    """Check that every non-blank parent node is parent-hash valid (RFC 9420 §7.9.2,
    "top down"): some descendant D holds the parent hash of the node with its other
    child as copath child, with consistent unmerged leaves.  Since every descendant
    parent node is itself checked, each such link extends to a chain from a leaf.
    """
    for index in range(1, tree.width, 2):
        node_index = NodeIndex(index)
        node = tree.parent_node(node_index)
        if node is None:
            continue
        if not (_is_valid_with_respect_to(tree, node_index, node, left(node_index))
                or _is_valid_with_respect_to(tree, node_index, node, right(node_index))):
            raise TreeValidationError(f"parent node {index} is not parent-hash valid")
