"""The ratchet tree (RFC 9420 §4.1, §7.1-§7.5, §7.7, §7.8, §12.1.1-§12.1.3).

A :class:`RatchetTree` is an array of optional nodes (``LeafNode | ParentNode | None``)
in the in-order layout of Appendix C, always of full width ``2^(d+1) - 1``.  Node
values are immutable wire structs, so :meth:`RatchetTree.copy` shares them and only
copies the arrays: group operations work on a copy and keep the old state intact.

Tree hashes (§7.8) are cached per node.  Changing a node invalidates only the hashes
on its path to the root, so a commit rehashes O(changed nodes * log n) nodes, never
the whole tree.  Key indexes (encryption and signature keys) make look-ups O(1); they
are shared between copies (a frozen base plus each copy's own changes), so copying a
tree copies two flat arrays, not the indexes.  Each node also counts the non-blank
nodes of its subtree, so blank subtrees are recognised (and skipped by
:meth:`RatchetTree.resolution`) in O(1), and the tree tallies the credential types its
members use and support (RFC 9420 §7.3 checks them for every new leaf).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping, Sequence

from mls.crypto.suite import CipherSuite
from mls.errors import DecodeError, UsageError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree_nodes import (
    ParentNode,
    TreeNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
)
from mls.tree.math import (
    LeafIndex,
    NodeIndex,
    direct_path,
    leaf_to_node,
    left,
    right,
    root,
)
from mls.tree.tree_hash import leaf_hash_input, parent_hash_input

#: Largest tree accepted (2^30 leaves would not fit the uint32 leaf indices anyway).
MAX_TREE_WIDTH = (1 << 31) - 1


class _KeyIndex:
    """A ``bytes -> int`` map shared between tree copies: a base dict that is never
    changed once shared, plus this copy's own changes (``None`` marks a deletion).
    Copying is O(own changes); the changes are folded into a fresh base when they
    grow past a fraction of it, so the amortized cost per change stays O(1)."""

    __slots__ = ("_base", "_changes")

    def __init__(self, base: dict[bytes, int] | None = None) -> None:
        self._base: dict[bytes, int] = {} if base is None else base
        self._changes: dict[bytes, int | None] = {}

    def get(self, key: bytes) -> int | None:
        changes = self._changes
        if key in changes:
            return changes[key]
        return self._base.get(key)

    def __setitem__(self, key: bytes, value: int) -> None:
        self._changes[key] = value

    def __delitem__(self, key: bytes) -> None:
        self._changes[key] = None

    def copy(self) -> _KeyIndex:
        changes = self._changes
        if len(changes) * 8 > len(self._base) + 64:
            merged = dict(self._base)
            for key, value in changes.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            self._base, self._changes = merged, {}
            return _KeyIndex(merged)
        clone = _KeyIndex(self._base)
        clone._changes = changes.copy()
        return clone


#: Weight of a non-blank parent node in the subtree counts (a leaf weighs 1): a
#: count is ``leaves + parents * _PARENT``, so ``count < _PARENT`` means that no
#: parent node of the subtree is set and ``count & _LEAVES`` is its member count.
_PARENT = 1 << 32
_LEAVES = _PARENT - 1


def _subtree_counts(nodes: list[TreeNode]) -> list[int]:
    """For each node index, the non-blank leaves and parents of its subtree (see
    :data:`_PARENT`)."""
    width = len(nodes)
    counts = [0 if node is None else (_PARENT if index & 1 else 1)
              for index, node in enumerate(nodes)]
    step = 2
    while step <= width:  # level k: indices (2^k - 1) + j * 2^(k+1), children at +-2^(k-1)
        half = step // 2
        for index in range(step - 1, width, 2 * step):
            counts[index] += counts[index - half] + counts[index + half]
        step *= 2
    return counts


def full_width(length: int) -> int:
    """The smallest width ``2^(d+1) - 1`` that holds ``length`` nodes."""
    width = 1
    while width < length:
        width = 2 * width + 1
    return width


class RatchetTree:
    """A ratchet tree with cached tree hashes (RFC 9420 §7)."""

    __slots__ = ("_blank_hint", "_cred_support", "_cred_used", "_enc_keys", "_filled",
                 "_hashes", "_members", "_nodes", "_sig_keys", "_unhashed", "suite")

    def __init__(self, suite: CipherSuite, nodes: Sequence[TreeNode] = (None,)) -> None:
        if not nodes:
            raise UsageError("a ratchet tree has at least one node")
        width = full_width(len(nodes))
        if width > MAX_TREE_WIDTH:
            raise DecodeError(f"ratchet tree of {len(nodes)} nodes is too large")
        self.suite = suite
        self._nodes: list[TreeNode] = list(nodes) + [None] * (width - len(nodes))
        self._hashes: list[bytes | None] = [None] * width
        #: No hash computed yet: the first tree hash is computed level by level.
        self._unhashed = True
        self._enc_keys = _KeyIndex()
        self._sig_keys = _KeyIndex()
        #: Every leaf below this leaf index is non-blank.
        self._blank_hint = 0
        #: Number of non-blank leaves; per credential type, the members using it and
        #: the members listing it in their capabilities.
        self._members = 0
        self._cred_used: dict[int, int] = {}
        self._cred_support: dict[int, int] = {}
        for index, node in enumerate(self._nodes):
            if node is not None:
                if isinstance(node, LeafNode) != (index & 1 == 0):
                    raise DecodeError(f"wrong node type at array index {index}")
                self._index_node(NodeIndex(index), node)
        self._filled = array("Q", _subtree_counts(self._nodes))

    # -- construction, serialization, copying -------------------------------------

    @classmethod
    def from_bytes(cls, suite: CipherSuite, data: bytes) -> RatchetTree:
        """Parse the ``ratchet_tree`` extension body (RFC 9420 §12.4.3.3)."""
        return cls(suite, decode_ratchet_tree(data))

    @classmethod
    def one_member(cls, suite: CipherSuite, leaf: LeafNode) -> RatchetTree:
        """The tree of a freshly created group (RFC 9420 §11)."""
        return cls(suite, (leaf,))

    def to_bytes(self) -> bytes:
        """Serialize without trailing blank nodes (RFC 9420 §12.4.3.3)."""
        return encode_ratchet_tree(self.trimmed_nodes())

    def trimmed_nodes(self) -> list[TreeNode]:
        """The node array without trailing blank nodes."""
        end = len(self._nodes)
        while end > 1 and self._nodes[end - 1] is None:
            end -= 1
        return self._nodes[:end]

    def copy(self) -> RatchetTree:
        """An independent tree sharing the (immutable) node values and cached hashes."""
        clone = RatchetTree.__new__(RatchetTree)
        clone.suite = self.suite
        clone._nodes = self._nodes.copy()
        clone._hashes = self._hashes.copy()
        clone._unhashed = self._unhashed
        clone._filled = self._filled[:]  # a flat array of counts: one memcpy
        clone._enc_keys = self._enc_keys.copy()
        clone._sig_keys = self._sig_keys.copy()
        clone._blank_hint = self._blank_hint
        clone._members = self._members
        clone._cred_used = self._cred_used.copy()
        clone._cred_support = self._cred_support.copy()
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.suite.id == other.suite.id and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RatchetTree({self.suite.id.name}, leaves={self.n_leaves})"

    # -- shape and node access --------------------------------------------------------

    @property
    def width(self) -> int:
        return len(self._nodes)

    @property
    def n_leaves(self) -> int:
        return (len(self._nodes) + 1) // 2

    @property
    def root(self) -> NodeIndex:
        return root(self.n_leaves)

    def node(self, index: NodeIndex) -> TreeNode:
        if not 0 <= index < len(self._nodes):
            raise UsageError(f"node {index} is outside the tree")
        return self._nodes[index]

    def leaf(self, leaf_index: LeafIndex) -> LeafNode | None:
        """The leaf node at ``leaf_index`` (``None`` if blank)."""
        node = self.node(leaf_to_node(leaf_index))
        assert node is None or isinstance(node, LeafNode)
        return node

    def parent_node(self, index: NodeIndex) -> ParentNode | None:
        node = self.node(index)
        assert node is None or isinstance(node, ParentNode)
        return node

    def nodes(self) -> tuple[TreeNode, ...]:
        """All nodes in array order (full width)."""
        return tuple(self._nodes)

    def member_leaves(self) -> Iterator[tuple[LeafIndex, LeafNode]]:
        """Every non-blank leaf with its index, left to right."""
        for position in range(0, len(self._nodes), 2):
            node = self._nodes[position]
            if node is not None:
                assert isinstance(node, LeafNode)
                yield LeafIndex(position >> 1), node

    def member_count(self) -> int:
        return self._members

    def subtree_member_count(self, index: NodeIndex) -> int:
        """The number of non-blank leaves under (and at) ``index``."""
        return self._filled[index] & _LEAVES

    def credential_types_used(self) -> Mapping[int, int]:
        """Credential type -> number of members whose credential has that type."""
        return self._cred_used

    def credential_types_supported(self) -> Mapping[int, int]:
        """Credential type -> number of members listing it in their capabilities."""
        return self._cred_support

    def find_leaf_by_signature_key(self, signature_key: bytes) -> LeafIndex | None:
        found = self._sig_keys.get(signature_key)
        return None if found is None else LeafIndex(found)

    def find_node_by_encryption_key(self, encryption_key: bytes) -> NodeIndex | None:
        """The node (leaf or parent) holding an HPKE public key, if any."""
        found = self._enc_keys.get(encryption_key)
        return None if found is None else NodeIndex(found)

    def find_leaf_by_encryption_key(self, encryption_key: bytes) -> LeafIndex | None:
        node = self._enc_keys.get(encryption_key)
        if node is None or node & 1:
            return None
        return LeafIndex(node >> 1)

    # -- resolution and paths (RFC 9420 §4.1.1, §4.1.2) -----------------------------

    def resolution(self, index: NodeIndex,
                   excluded_leaves: frozenset[int] = frozenset()) -> list[NodeIndex]:
        """Resolution of a node (§4.1.1), omitting the leaves in ``excluded_leaves``
        (leaves added in the current Commit, §7.6).  Blank subtrees are skipped and a
        subtree without parent nodes is read as its run of leaves, so the cost follows
        the size of the resolution, not of the subtree."""
        out: list[NodeIndex] = []
        stack = [index]
        nodes = self._nodes
        filled = self._filled
        while stack:
            current = stack.pop()
            count = filled[current]
            if not count:
                continue  # a blank subtree: empty resolution
            node = nodes[current]
            if node is not None:
                if current & 1 == 0 and (current >> 1) in excluded_leaves:
                    continue
                out.append(current)
                if isinstance(node, ParentNode):
                    out.extend(NodeIndex(2 * leaf) for leaf in node.unmerged_leaves
                               if leaf not in excluded_leaves)
            elif count < _PARENT:  # only leaves below: the non-blank ones, in order
                span = (~current & (current + 1)) - 1
                out.extend(NodeIndex(position) for position in
                           range(current - span, current + span + 1, 2)
                           if nodes[position] is not None
                           and (position >> 1) not in excluded_leaves)
            else:
                stack.append(right(current))
                stack.append(left(current))
        return out

    def resolution_size(self, index: NodeIndex,
                        excluded_leaves: frozenset[int] = frozenset()) -> int:
        """``len(self.resolution(index, excluded_leaves))``, counted without listing
        the runs of leaves under blank parents."""
        if not excluded_leaves:
            size = 0
            stack = [index]
            nodes = self._nodes
            filled = self._filled
            while stack:
                current = stack.pop()
                count = filled[current]
                if not count:
                    continue
                node = nodes[current]
                if node is not None:
                    size += 1
                    if isinstance(node, ParentNode):
                        size += len(node.unmerged_leaves)
                elif count < _PARENT:
                    size += count
                else:
                    stack.append(right(current))
                    stack.append(left(current))
            return size
        return len(self.resolution(index, excluded_leaves))

    def subtree_is_blank(self, index: NodeIndex) -> bool:
        """Whether every node under (and at) ``index`` is blank: its resolution is
        empty.  O(1): each node counts the non-blank nodes of its subtree."""
        return self._filled[index] == 0

    def filtered_direct_path(self, leaf_index: LeafIndex) -> list[NodeIndex]:
        """Direct path of a leaf without the nodes whose copath child has an empty
        resolution (§4.1.2)."""
        node = leaf_to_node(leaf_index)
        out: list[NodeIndex] = []
        child = node
        for ancestor in direct_path(node, self.n_leaves):
            copath_child = right(ancestor) if child < ancestor else left(ancestor)
            if not self.subtree_is_blank(copath_child):
                out.append(ancestor)
            child = ancestor
        return out

    def direct_path_of_leaf(self, leaf_index: LeafIndex) -> list[NodeIndex]:
        return direct_path(leaf_to_node(leaf_index), self.n_leaves)

    # -- mutation -------------------------------------------------------------------

    def set_node(self, index: NodeIndex, value: TreeNode) -> None:
        """Replace one node (leaves at even, parents at odd indices) and invalidate
        the cached hashes on its path to the root."""
        if not 0 <= index < len(self._nodes):
            raise UsageError(f"node {index} is outside the tree")
        if value is not None and isinstance(value, LeafNode) != (index & 1 == 0):
            raise UsageError(f"wrong node type for index {index}")
        old = self._nodes[index]
        if old is value:
            return
        if old is not None:
            self._unindex_node(index, old)
        self._nodes[index] = value
        if value is not None:
            self._index_node(index, value)
        elif index & 1 == 0:
            self._blank_hint = min(self._blank_hint, index >> 1)
        if (old is None) != (value is None):
            weight = _PARENT if index & 1 else 1
            self._count_filled(index, weight if old is None else -weight)
        self._invalidate(index)

    def set_leaf(self, leaf_index: LeafIndex, leaf: LeafNode | None) -> None:
        self.set_node(leaf_to_node(leaf_index), leaf)

    def blank_direct_path(self, leaf_index: LeafIndex) -> None:
        for ancestor in self.direct_path_of_leaf(leaf_index):
            self.set_node(ancestor, None)

    def leftmost_blank_leaf(self) -> LeafIndex | None:
        """The leftmost blank leaf (amortized O(1) over successive Adds)."""
        nodes = self._nodes
        for position in range(2 * self._blank_hint, len(nodes), 2):
            if nodes[position] is None:
                self._blank_hint = position >> 1
                return LeafIndex(position >> 1)
        self._blank_hint = self.n_leaves
        return None

    def extend(self) -> None:
        """Double the number of leaves: a new blank root over the old tree and a
        new blank right subtree (§7.7)."""
        width = len(self._nodes)
        if 2 * width + 1 > MAX_TREE_WIDTH:
            raise UsageError("ratchet tree cannot grow further")
        old_root = self.root
        self._nodes.extend([None] * (width + 1))
        self._hashes.extend([None] * (width + 1))
        self._filled.extend([0] * (width + 1))
        self._filled[width] = self._filled[old_root]  # the new root, over the old tree

    def truncate(self) -> None:
        """Halve the tree while its right subtree has no non-blank leaf (§7.7,
        §12.1.3)."""
        while len(self._nodes) > 1:
            half = len(self._nodes) // 2  # index of the root
            if any(node is not None for node in self._nodes[half + 1::2]):
                break
            for index in range(half, len(self._nodes)):
                old = self._nodes[index]
                if old is not None:
                    self._unindex_node(NodeIndex(index), old)
            del self._nodes[half:]
            del self._hashes[half:]
            del self._filled[half:]
            self._blank_hint = min(self._blank_hint, self.n_leaves)

    def add_leaf(self, leaf: LeafNode) -> LeafIndex:
        """Apply an Add (RFC 9420 §12.1.1): place ``leaf`` in the leftmost blank leaf
        (extending the tree if there is none) and record it as unmerged at every
        non-blank ancestor.  Returns the new leaf's index."""
        leaf_index = self.leftmost_blank_leaf()
        if leaf_index is None:
            leaf_index = LeafIndex(self.n_leaves)
            self.extend()
        for ancestor in self.direct_path_of_leaf(leaf_index):
            parent = self._nodes[ancestor]
            if parent is not None:
                assert isinstance(parent, ParentNode)
                unmerged = tuple(sorted({*parent.unmerged_leaves, leaf_index}))
                self.set_node(ancestor, ParentNode(parent.encryption_key,
                                                   parent.parent_hash, unmerged))
        self.set_leaf(leaf_index, leaf)
        return leaf_index

    def add_leaves(self, leaves: Sequence[LeafNode]) -> list[LeafIndex]:
        """Apply several Adds in order (RFC 9420 §12.1.1), as :meth:`add_leaf` one by
        one would, but rebuilding each non-blank ancestor's ``unmerged_leaves`` once
        for the whole batch (Adds blank no parent and fill none, so the ancestors to
        update do not change along the batch)."""
        placed: list[LeafIndex] = []
        unmerged: dict[NodeIndex, list[int]] = {}
        nodes = self._nodes
        for leaf in leaves:
            leaf_index = self.leftmost_blank_leaf()
            if leaf_index is None:
                leaf_index = LeafIndex(self.n_leaves)
                self.extend()
                nodes = self._nodes
            for ancestor in self.direct_path_of_leaf(leaf_index):
                if nodes[ancestor] is not None:
                    unmerged.setdefault(ancestor, []).append(leaf_index)
            self.set_leaf(leaf_index, leaf)
            placed.append(leaf_index)
        for ancestor, new_leaves in unmerged.items():
            parent = nodes[ancestor]
            assert isinstance(parent, ParentNode)
            merged = tuple(sorted({*parent.unmerged_leaves, *new_leaves}))
            self.set_node(ancestor, ParentNode(parent.encryption_key, parent.parent_hash,
                                               merged))
        return placed

    def update_leaf(self, leaf_index: LeafIndex, leaf: LeafNode) -> None:
        """Apply an Update (RFC 9420 §12.1.2): replace the leaf, blank its direct path."""
        if self.leaf(leaf_index) is None:
            raise UsageError(f"leaf {leaf_index} is blank")
        self.set_leaf(leaf_index, leaf)
        self.blank_direct_path(leaf_index)

    def remove_leaf(self, leaf_index: LeafIndex) -> None:
        """Apply a Remove (RFC 9420 §12.1.3): blank the leaf and its direct path, then
        truncate."""
        if not 0 <= leaf_index < self.n_leaves or self.leaf(leaf_index) is None:
            raise UsageError(f"leaf {leaf_index} is not a member")
        self.set_leaf(leaf_index, None)
        self.blank_direct_path(leaf_index)
        self.truncate()

    # -- tree hashes (RFC 9420 §7.8) ------------------------------------------------

    def tree_hash(self) -> bytes:
        """The tree hash of the root."""
        return self.node_hash(self.root)

    def node_hash(self, index: NodeIndex) -> bytes:
        """The tree hash of any node, computed only where the cache is stale."""
        cached = self._hashes[index]
        if cached is not None:
            return cached
        return self._compute_hash(index)

    def _hash_all(self) -> None:
        """Every node's tree hash, leaves first then level by level (a fresh tree)."""
        hashes = self._hashes
        nodes = self._nodes
        hash_fn = self.suite.hash
        width = len(nodes)
        for position in range(0, width, 2):
            leaf = nodes[position]
            assert leaf is None or isinstance(leaf, LeafNode)
            hashes[position] = hash_fn(leaf_hash_input(LeafIndex(position >> 1), leaf))
        step = 2
        while step <= width:
            half = step // 2
            for position in range(step - 1, width, 2 * step):
                parent = nodes[position]
                assert parent is None or isinstance(parent, ParentNode)
                left_hash, right_hash = hashes[position - half], hashes[position + half]
                assert left_hash is not None and right_hash is not None
                hashes[position] = hash_fn(parent_hash_input(parent, left_hash, right_hash))
            step *= 2

    def _compute_hash(self, index: NodeIndex) -> bytes:
        if self._unhashed:
            self._unhashed = False
            self._hash_all()
            result = self._hashes[index]
            assert result is not None
            return result
        hashes = self._hashes
        nodes = self._nodes
        hash_fn = self.suite.hash
        # Iterative post-order walk over the stale part of the subtree.
        stack: list[tuple[int, bool]] = [(index, False)]
        while stack:
            current, children_done = stack.pop()
            if hashes[current] is not None:
                continue
            node = nodes[current]
            if current & 1 == 0:
                assert node is None or isinstance(node, LeafNode)
                hashes[current] = hash_fn(leaf_hash_input(LeafIndex(current >> 1), node))
                continue
            lchild, rchild = left(NodeIndex(current)), right(NodeIndex(current))
            if not children_done:
                stack.append((current, True))
                stack.append((rchild, False))
                stack.append((lchild, False))
                continue
            left_hash, right_hash = hashes[lchild], hashes[rchild]
            assert left_hash is not None and right_hash is not None
            assert node is None or isinstance(node, ParentNode)
            hashes[current] = hash_fn(parent_hash_input(node, left_hash, right_hash))
        result = hashes[index]
        assert result is not None
        return result

    def _count_filled(self, index: NodeIndex, delta: int) -> None:
        """Add ``delta`` to the non-blank counts of ``index`` and its ancestors."""
        filled = self._filled
        filled[index] += delta
        r = self.root
        current = int(index)
        while current != r:
            k = ((~current) & (current + 1)).bit_length() - 1
            b = (current >> (k + 1)) & 1
            current = (current | (1 << k)) ^ (b << (k + 1))
            filled[current] += delta

    def _invalidate(self, index: NodeIndex) -> None:
        hashes = self._hashes
        hashes[index] = None
        r = self.root
        current = int(index)
        while current != r:
            k = ((~current) & (current + 1)).bit_length() - 1
            b = (current >> (k + 1)) & 1
            current = (current | (1 << k)) ^ (b << (k + 1))
            if hashes[current] is None:
                break  # everything above is already stale
            hashes[current] = None

    # -- key indexes --------------------------------------------------------------------

    def _index_node(self, index: NodeIndex, node: LeafNode | ParentNode) -> None:
        self._enc_keys[node.encryption_key] = index
        if isinstance(node, LeafNode):
            self._sig_keys[node.signature_key] = index >> 1
            self._count_member(node, 1)

    def _unindex_node(self, index: NodeIndex, node: LeafNode | ParentNode) -> None:
        if self._enc_keys.get(node.encryption_key) == index:
            del self._enc_keys[node.encryption_key]
        if isinstance(node, LeafNode):
            if self._sig_keys.get(node.signature_key) == index >> 1:
                del self._sig_keys[node.signature_key]
            self._count_member(node, -1)

    def _count_member(self, leaf: LeafNode, delta: int) -> None:
        self._members += delta
        for tally, kinds in ((self._cred_used, (leaf.credential.credential_type,)),
                             (self._cred_support, set(leaf.capabilities.credentials))):
            for kind in kinds:
                count = tally.get(kind, 0) + delta
                if count:
                    tally[kind] = count
                else:
                    del tally[kind]
