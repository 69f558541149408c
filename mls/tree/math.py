"""Array-based tree math (RFC 9420 Appendix C, terminology of §4.1).

Nodes of a left-balanced binary tree are numbered in-order: leaf ``i`` is node
``2*i`` and parent nodes have odd indices.  :data:`LeafIndex` and :data:`NodeIndex`
are distinct types so that mypy catches a leaf index used as a node index (the
classic MLS bug).  In RFC 9420 the tree always has a power-of-two number of leaves
(§7.7), but these functions work for any positive leaf count.

Every function is O(log n) or better; none builds the tree.
"""

from __future__ import annotations

from typing import NewType

from mls.errors import UsageError

#: Index of a leaf among the leaves (0, 1, 2, ...).
LeafIndex = NewType("LeafIndex", int)
#: Index of a node in the array representation (leaves are even, parents odd).
NodeIndex = NewType("NodeIndex", int)


def leaf_to_node(leaf: LeafIndex) -> NodeIndex:
    """The node index of a leaf: ``2 * leaf``."""
    return NodeIndex(2 * leaf)


def node_to_leaf(node: NodeIndex) -> LeafIndex:
    """The leaf index of a leaf node (RFC 9420 Appendix C)."""
    if node & 1:
        raise UsageError(f"node {node} is not a leaf")
    return LeafIndex(node >> 1)


def is_leaf(node: NodeIndex) -> bool:
    """Leaves have even node indices."""
    return node & 1 == 0


def level(node: NodeIndex) -> int:
    """Height above the leaves: the number of trailing one bits of the index."""
    return ((~node) & (node + 1)).bit_length() - 1


def node_width(n_leaves: int) -> int:
    """Number of array slots needed for a tree with ``n_leaves`` leaves."""
    if n_leaves <= 0:
        return 0
    return 2 * (n_leaves - 1) + 1


def leaf_count_for_width(width: int) -> int:
    """Inverse of :func:`node_width` for an odd width (``(width + 1) // 2``)."""
    return (width + 1) // 2


def root(n_leaves: int) -> NodeIndex:
    """The root of a tree with ``n_leaves`` leaves."""
    width = node_width(n_leaves)
    if width == 0:
        raise UsageError("an empty tree has no root")
    return NodeIndex((1 << (width.bit_length() - 1)) - 1)


def left(node: NodeIndex) -> NodeIndex:
    """The left child of a parent node."""
    k = level(node)
    if k == 0:
        raise UsageError(f"leaf node {node} has no children")
    return NodeIndex(node ^ (1 << (k - 1)))


def right(node: NodeIndex) -> NodeIndex:
    """The right child of a parent node."""
    k = level(node)
    if k == 0:
        raise UsageError(f"leaf node {node} has no children")
    return NodeIndex(node ^ (3 << (k - 1)))


def parent(node: NodeIndex, n_leaves: int) -> NodeIndex:
    """The parent of a non-root node of a tree with ``n_leaves`` leaves."""
    if node == root(n_leaves):
        raise UsageError(f"root node {node} has no parent")
    return _parent_unchecked(node)


def _parent_unchecked(node: int) -> NodeIndex:
    k = level(NodeIndex(node))
    b = (node >> (k + 1)) & 1
    return NodeIndex((node | (1 << k)) ^ (b << (k + 1)))


def sibling(node: NodeIndex, n_leaves: int) -> NodeIndex:
    """The other child of the node's parent."""
    p = parent(node, n_leaves)
    return right(p) if node < p else left(p)


def direct_path(node: NodeIndex, n_leaves: int) -> list[NodeIndex]:
    """Ancestors of ``node`` from its parent up to the root (RFC 9420 §4.1)."""
    r = root(n_leaves)
    if node >= node_width(n_leaves) and node != r:
        raise UsageError(f"node {node} is outside a tree of {n_leaves} leaves")
    path: list[NodeIndex] = []
    current = node
    while current != r:
        current = _parent_unchecked(current)
        path.append(current)
    return path


def copath(node: NodeIndex, n_leaves: int) -> list[NodeIndex]:
    """Siblings of ``node`` and of each of its ancestors below the root (§4.1)."""
    path = direct_path(node, n_leaves)
    if not path:
        return []
    chain = [node, *path[:-1]]
    return [right(p) if x < p else left(p) for x, p in zip(chain, path, strict=True)]


def is_ancestor(ancestor: NodeIndex, node: NodeIndex) -> bool:
    """Whether ``ancestor`` is ``node`` or lies on ``node``'s direct path.

    A node at level ``k`` covers the indices sharing its bits above bit ``k``.
    """
    k = level(ancestor)
    return (ancestor >> (k + 1)) == (node >> (k + 1)) and level(node) <= k


def common_ancestor(x: NodeIndex, y: NodeIndex) -> NodeIndex:
    """The lowest node on the direct paths of both ``x`` and ``y`` (or one of them)."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    xn, yn, k = int(x), int(y), 0
    while xn != yn:
        xn, yn = xn >> 1, yn >> 1
        k += 1
    return NodeIndex((xn << k) + (1 << (k - 1)) - 1)


def leaves_under(node: NodeIndex, n_leaves: int) -> range:
    """The leaf indices below (or at) ``node``, clipped to ``n_leaves``."""
    k = level(node)
    first = (node >> (k + 1) << (k + 1)) >> 1
    return range(first, min(first + (1 << k), n_leaves))
