"""Validation of a ratchet tree received from a peer (RFC 9420 §7.3, §7.9.2,
§12.4.3.1).

:func:`check_leaf_node` is the one set of per-leaf rules of §7.3 (plus the leaf-level
rules of §7.2, §10 and §13.4) that every path applies -- a KeyPackage, an Add, an
Update, an UpdatePath, an external Commit and a tree received on join;
:mod:`mls.group.leaf_validation` adds what needs the group's members and its
Authentication Service.  :func:`validate_tree` runs every structural and
cryptographic check a joiner must make: leaf node validity, parent-hash validity of
every parent node, consistency of the ``unmerged_leaves`` lists, uniqueness of HPKE
and signature keys, and credential types supported by every member.  The tree hash is
compared with the GroupInfo by the caller.  Failures raise
:class:`~mls.errors.TreeValidationError` naming the offending node.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from mls.crypto.suite import CipherSuite
from mls.enums import ExtensionType, LeafNodeSource, ProposalType
from mls.errors import CryptoError, MLSError, TreeValidationError, ValidationError
from mls.messages.extensions import Extension
from mls.messages.leaf_node import Capabilities, LeafNode
from mls.messages.tree_nodes import ParentNode
from mls.tree.math import LeafIndex, NodeIndex, direct_path, is_ancestor, leaf_to_node
from mls.tree.parent_hash import verify_parent_hashes
from mls.tree.ratchet_tree import RatchetTree

#: Extension and proposal types every client supports implicitly (RFC 9420 §7.2).
DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)
DEFAULT_PROPOSAL_TYPES = frozenset(int(t) for t in ProposalType)


@dataclass(frozen=True, slots=True)
class LeafRequirements:
    """What every leaf of a group must list in its capabilities.

    ``extensions``: the types of every GroupContext extension (RFC 9420 §13.4: "The
    capabilities field MUST indicate support for each extension in the GroupContext")
    and the extension types of ``required_capabilities``; ``proposals`` and
    ``credentials``: those of ``required_capabilities`` (§7.3, §11.1).  Default
    extension and proposal types are implied and need not be listed (§7.2, §11.1);
    credential types have no defaults.  Built from a GroupContext by
    :func:`mls.group.leaf_validation.group_requirements`.
    """

    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    def missing(self, capabilities: Capabilities) -> list[str]:
        """The requirements ``capabilities`` does not list, as ``"extension 65281"``
        etc. (empty if it meets them all).  Values not required are ignored, so
        unknown and GREASE values in ``capabilities`` never matter (§13.5)."""
        missing = [f"extension {t}" for t in self.extensions
                   if t not in DEFAULT_EXTENSION_TYPES and t not in capabilities.extensions]
        missing += [f"proposal {t}" for t in self.proposals
                    if t not in DEFAULT_PROPOSAL_TYPES and t not in capabilities.proposals]
        missing += [f"credential type {t}" for t in self.credentials
                    if t not in capabilities.credentials]
        return missing


NO_REQUIREMENTS = LeafRequirements()


def check_unique_extension_types(extensions: Iterable[Extension], where: str,
                                 error_class: type[MLSError] = ValidationError) -> None:
    """A list of extensions holds each type at most once (RFC 9420 §13.4)."""
    seen: set[int] = set()
    for ext in extensions:
        if ext.extension_type in seen:
            raise error_class(f"{where}: extension type {ext.extension_type} appears twice")
        seen.add(ext.extension_type)


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
                    leaf_index: LeafIndex | None, *,
                    requirements: LeafRequirements = NO_REQUIREMENTS,
                    expected_source: LeafNodeSource | None = None,
                    now: int | None = None) -> None:
    """The per-leaf rules of RFC 9420 §7.3 that need no other member, the same on
    every path:

    * ``leaf_node_source`` is ``expected_source`` when given (key_package in a
      KeyPackage, update in an Update, commit in an UpdatePath);
    * ``encryption_key`` is an HPKE public key of the suite (§7.2, §10) and no
      extension type appears twice (§13.4);
    * the signature verifies (``group_id``/``leaf_index`` are in the TBS for the
      update and commit sources);
    * the leaf's credential type and its non-default extension types are listed in
      its own capabilities (§7.2, §7.3);
    * its capabilities meet ``requirements``: the ``required_capabilities`` of the
      GroupContext and every GroupContext extension type (§7.3, §11.1, §13.4);
    * if ``now`` is given, a key_package leaf is within its lifetime (§7.3).

    Where the RFC leaves room, this accepts what the other implementations accept:

    * the group's cipher suite and protocol version need not be listed in
      ``capabilities`` -- §7.3 has no such step (the KeyPackage's own ``version`` and
      ``cipher_suite`` fields are checked, §10.1), and leaves from other
      implementations omit the suite in use;
    * unknown and GREASE values in ``capabilities`` are ignored, and a GREASE leaf
      extension is valid when listed like any other (§13.4, §13.5);
    * the lifetime is judged only for leaves we send, where §7.3 makes it a MUST;
      callers pass ``now=None`` for received leaves (the check is only RECOMMENDED
      there, as the leaf may have expired in transit, and other implementations do
      not make it).

    Raises :class:`TreeValidationError`; callers validating a proposal may catch it
    and re-raise their own error class.
    """
    where = f"leaf {leaf_index}" if leaf_index is not None else "leaf node"
    if expected_source is not None and leaf.leaf_node_source != expected_source:
        raise TreeValidationError(
            f"{where}: leaf_node_source is {leaf.leaf_node_source.name.lower()}, "
            f"expected {expected_source.name.lower()}")
    if len(leaf.encryption_key) != suite.kem.n_pk:
        raise TreeValidationError(
            f"{where}: encryption_key is not a {suite.id.name} HPKE public key")
    check_unique_extension_types(leaf.extensions, where, TreeValidationError)
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
    missing = requirements.missing(caps)
    if missing:
        raise TreeValidationError(f"{where}: does not support required "
                                  f"{', '.join(missing)}")
    if now is not None and leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
        lifetime = leaf.lifetime
        if lifetime is None or not lifetime.not_before <= now <= lifetime.not_after:
            raise TreeValidationError(f"{where}: outside its lifetime")


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


def validate_tree(tree: RatchetTree, group_id: bytes, *,
                  requirements: LeafRequirements = NO_REQUIREMENTS) -> None:
    """Full validation of a ratchet tree received on join (RFC 9420 §12.4.3.1):
    unique keys, consistent unmerged leaves, every leaf valid per
    :func:`check_leaf_node` against the group's ``requirements``, every credential
    type in use supported by every member (§7.3), and valid parent hashes.

    The tree is received, so the lifetimes of its key_package leaves are not judged
    (§7.3 only recommends it; a leaf keeps the lifetime of the KeyPackage it was
    added with until its member updates, and other implementations accept it).

    Raises :class:`TreeValidationError` on the first failure.
    """
    if tree.member_count() == 0:
        raise TreeValidationError("ratchet tree has no members")
    check_unique_keys(tree)
    check_unmerged_leaves(tree)
    for leaf_index, leaf in tree.member_leaves():
        check_leaf_node(tree.suite, leaf, group_id, leaf_index, requirements=requirements)
    check_credential_support(tree)
    verify_parent_hashes(tree)
