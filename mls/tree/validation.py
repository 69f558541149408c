"""Validation of a ratchet tree received from a peer (RFC 9420 §7.3, §7.9.2,
§12.4.3.1).

:func:`validate_tree` runs every structural and cryptographic check a joiner must
make: leaf node validity (signature, capabilities, extensions, lifetime when a time
is given), parent-hash validity of every parent node, consistency of the
``unmerged_leaves`` lists, and uniqueness of HPKE and signature keys.  The tree hash
is compared with the GroupInfo by the caller.  Failures raise
:class:`~mls.errors.TreeValidationError` naming the offending node.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from mls.crypto.suite import CipherSuite
from mls.enums import ExtensionType, LeafNodeSource, ProposalType
from mls.errors import CryptoError, TreeValidationError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree_nodes import ParentNode
from mls.tree.math import LeafIndex, NodeIndex, direct_path, is_ancestor, leaf_to_node
from mls.tree.parent_hash import verify_parent_hashes
from mls.tree.ratchet_tree import RatchetTree

#: Extension and proposal types every client supports implicitly (RFC 9420 §7.2).
DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)
DEFAULT_PROPOSAL_TYPES = frozenset(int(t) for t in ProposalType)


def verify_leaf_signature(suite: CipherSuite, leaf: LeafNode, group_id: bytes | None,
                          leaf_index: LeafIndex | None) -> bool:
    """Verify ``SignWithLabel(., "LeafNodeTBS", LeafNodeTBS)`` (RFC 9420 §7.2).

    ``group_id`` and ``leaf_index`` are part of the TBS for the update and commit
    sources only.  A malformed signature key counts as a failed verification.
    """
    if leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
        tbs = leaf.tbs_bytes()
    else:
        tbs = leaf.tbs_bytes(group_id, leaf_index)
    try:
        return suite.verify_with_label(leaf.signature_key, b"LeafNodeTBS", tbs, leaf.signature)
    except CryptoError:
        return False


def check_leaf_node(suite: CipherSuite, leaf: LeafNode, group_id: bytes | None,
                    leaf_index: LeafIndex | None, *, now: int | None = None,
                    expected_source: LeafNodeSource | None = None,
                    required_extensions: Iterable[int] = (),
                    required_proposals: Iterable[int] = (),
                    required_credentials: Iterable[int] = ()) -> None:
    """Per-leaf checks of RFC 9420 §7.3 that need no other member: signature,
    credential type and extensions listed in the leaf's own capabilities, the
    group's required capabilities, the ``leaf_node_source`` (if ``expected_source``
    is given: key_package in a KeyPackage, update in an Update, commit in an
    UpdatePath) and (if ``now`` is given) the lifetime.

    Raises :class:`TreeValidationError`; callers validating a proposal may catch it
    and re-raise their own error class.
    """
    where = f"leaf {leaf_index}" if leaf_index is not None else "leaf node"
    if expected_source is not None and leaf.leaf_node_source != expected_source:
        raise TreeValidationError(
            f"{where}: leaf_node_source is {leaf.leaf_node_source.name.lower()}, "
            f"expected {expected_source.name.lower()}")
    if not verify_leaf_signature(suite, leaf, group_id, leaf_index):
        raise TreeValidationError(f"{where}: invalid LeafNode signature")
    caps = leaf.capabilities
    if leaf.credential.credential_type not in caps.credentials:
        raise TreeValidationError(f"{where}: credential type not in its capabilities")
    for ext in leaf.extensions:
        if ext.extension_type not in DEFAULT_EXTENSION_TYPES and (
                ext.extension_type not in caps.extensions):
            raise TreeValidationError(
                f"{where}: extension {ext.extension_type} not in its capabilities")
    _check_required(where, "extension", required_extensions, caps.extensions,
                    DEFAULT_EXTENSION_TYPES)
    _check_required(where, "proposal", required_proposals, caps.proposals,
                    DEFAULT_PROPOSAL_TYPES)
    _check_required(where, "credential", required_credentials, caps.credentials, frozenset())
    if now is not None and leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
        lifetime = leaf.lifetime
        if lifetime is None or not lifetime.not_before <= now <= lifetime.not_after:
            raise TreeValidationError(f"{where}: outside its lifetime")


def _check_required(where: str, what: str, required: Iterable[int], listed: Iterable[int],
                    implicit: frozenset[int]) -> None:
    if not required:
        return
    listed_set = set(listed)
    for value in required:
        if value not in implicit and value not in listed_set:
            raise TreeValidationError(f"{where}: required {what} {value} not supported")


def check_unique_keys(tree: RatchetTree) -> None:
    """HPKE keys are unique across all nodes and signature keys across all leaves
    (RFC 9420 §7.3, §12.4.3.1)."""
    encryption_keys: set[bytes] = set()
    signature_keys: set[bytes] = set()
    for index in range(tree.width):
        node = tree.node(NodeIndex(index))
        if node is None:
            continue
        if node.encryption_key in encryption_keys:
            raise TreeValidationError(f"node {index}: duplicate encryption key")
        encryption_keys.add(node.encryption_key)
        if isinstance(node, LeafNode):
            if node.signature_key in signature_keys:
                raise TreeValidationError(f"node {index}: duplicate signature key")
            signature_keys.add(node.signature_key)


def check_credential_support(tree: RatchetTree) -> None:
    """Every member supports every credential type in use (RFC 9420 §7.3)."""
    in_use = {leaf.credential.credential_type for _, leaf in tree.member_leaves()}
    for leaf_index, leaf in tree.member_leaves():
        missing = in_use.difference(leaf.capabilities.credentials)
        if missing:
            raise TreeValidationError(
                f"leaf {leaf_index}: does not support credential types {sorted(missing)}")


def check_unmerged_leaves(tree: RatchetTree) -> None:
    """Each ``unmerged_leaves`` list is sorted, names non-blank descendant leaves, and
    every non-blank node between such a leaf and the parent lists it too
    (RFC 9420 §7.1, §12.4.3.1)."""
    n_leaves = tree.n_leaves
    for index in range(1, tree.width, 2):
        parent_index = NodeIndex(index)
        parent = tree.node(parent_index)
        if parent is None:
            continue
        assert isinstance(parent, ParentNode)
        unmerged = parent.unmerged_leaves
        if any(a >= b for a, b in itertools.pairwise(unmerged)):
            raise TreeValidationError(f"node {index}: unmerged_leaves not strictly increasing")
        for leaf in unmerged:
            _check_unmerged_entry(tree, parent_index, LeafIndex(leaf), n_leaves)


def _check_unmerged_entry(tree: RatchetTree, parent_index: NodeIndex, leaf: LeafIndex,
                          n_leaves: int) -> None:
    if leaf >= n_leaves or tree.leaf(leaf) is None:
        raise TreeValidationError(f"node {parent_index}: unmerged leaf {leaf} is blank")
    leaf_node_index = leaf_to_node(leaf)
    if not is_ancestor(parent_index, leaf_node_index) or parent_index == leaf_node_index:
        raise TreeValidationError(
            f"node {parent_index}: unmerged leaf {leaf} is not a descendant")
    for between in direct_path(leaf_node_index, n_leaves):
        if between == parent_index:
            break
        node = tree.node(between)
        if node is None:
            continue
        assert isinstance(node, ParentNode)
        if leaf not in node.unmerged_leaves:
            raise TreeValidationError(
                f"node {between}: missing unmerged leaf {leaf} listed above it")


def validate_tree(tree: RatchetTree, group_id: bytes, *, now: int | None = None,
                  required_extensions: Iterable[int] = (),
                  required_proposals: Iterable[int] = (),
                  required_credentials: Iterable[int] = ()) -> None:
    """Full validation of a ratchet tree received on join (RFC 9420 §12.4.3.1).

    Raises :class:`TreeValidationError` on the first failure.
    """
    if tree.member_count() == 0:
        raise TreeValidationError("ratchet tree has no members")
    check_unique_keys(tree)
    check_unmerged_leaves(tree)
    required_extensions = tuple(required_extensions)
    required_proposals = tuple(required_proposals)
    required_credentials = tuple(required_credentials)
    for leaf_index, leaf in tree.member_leaves():
        check_leaf_node(tree.suite, leaf, group_id, leaf_index, now=now,
                        required_extensions=required_extensions,
                        required_proposals=required_proposals,
                        required_credentials=required_credentials)
    check_credential_support(tree)
    verify_parent_hashes(tree)
