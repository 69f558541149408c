"""Leaf node validation in the context of a group (RFC 9420 §7.3).

One rule set for every path a LeafNode takes into a group: a KeyPackage (§10.1, via
:mod:`mls.group.key_package`) in an Add, an Update, the UpdatePath of a Commit, the
UpdatePath of an external Commit, and a ratchet tree received on join (§12.4.3.1,
:func:`mls.tree.validation.validate_tree`).  The per-leaf rules are
:func:`mls.tree.validation.check_leaf_node`'s (see there for the choices made where
the RFC leaves room); this module adds what needs the group:

* the requirements of the GroupContext (:func:`group_requirements`);
* the credential is accepted by the Authentication Service (§5.3.1), and a
  replacing credential is an acceptable successor;
* its credential type is supported by every member and it supports every credential
  type in use;
* ``encryption_key`` and ``signature_key`` are unique in the tree.
"""

from __future__ import annotations

from collections.abc import Iterable

from mls.codec import decode
from mls.crypto.suite import CipherSuite
from mls.enums import ExtensionType, LeafNodeSource
from mls.errors import (
    DecodeError,
    SignatureError,
    TreeValidationError,
    UsageError,
    ValidationError,
)
from mls.group.credentials import CredentialValidator, check_credential, check_successor
from mls.messages.extension_types import RequiredCapabilities
from mls.messages.extensions import Extension, GroupContext, find_extension
from mls.messages.leaf_node import LeafNode
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import LeafRequirements, check_leaf_node, verify_leaf_signature


def required_capabilities(extensions: tuple[Extension, ...]) -> RequiredCapabilities:
    """The ``required_capabilities`` extension among ``extensions`` (empty if absent);
    a malformed body is a :class:`ValidationError` (RFC 9420 §11.1)."""
    ext = find_extension(extensions, ExtensionType.REQUIRED_CAPABILITIES)
    if ext is None:
        return RequiredCapabilities()
    try:
        return decode(RequiredCapabilities, ext.extension_data)
    except DecodeError as exc:
        raise ValidationError(f"malformed required_capabilities extension: {exc}") from exc


def group_requirements(extensions: tuple[Extension, ...]) -> LeafRequirements:
    """What a leaf must list to be in a group with these GroupContext extensions:
    every extension type in use (§13.4) and the ``required_capabilities`` (§7.3,
    §11.1).  Not the group's version and cipher suite: see
    :func:`mls.tree.validation.check_leaf_node`."""
    required = required_capabilities(extensions)
    extension_types = dict.fromkeys(
        [ext.extension_type for ext in extensions] + list(required.extension_types))
    return LeafRequirements(tuple(extension_types), required.proposal_types,
                            required.credential_types)


def check_leaf_alone(cs: CipherSuite, leaf: LeafNode, *, requirements: LeafRequirements,
                     group_id: bytes | None, leaf_index: LeafIndex | None,
                     expected_source: LeafNodeSource, now: int | None,
                     credential_validator: CredentialValidator | None = None,
                     max_lifetime: int | None = None,
                     error_class: type[ValidationError] = ValidationError) -> None:
    """The checks of RFC 9420 §7.3 that need no other member of the group: the
    Authentication Service accepts the credential (§5.3.1), the application's
    ``max_lifetime`` (§7.2) and :func:`mls.tree.validation.check_leaf_node`.

    ``now`` judges a key_package leaf's lifetime: give it for a leaf we send (§7.3
    MUST), ``None`` for one we receive.  Raises :class:`SignatureError` for a bad
    signature and ``error_class`` otherwise.
    """
    if expected_source != LeafNodeSource.KEY_PACKAGE and (group_id is None
                                                         or leaf_index is None):
        raise UsageError("update/commit leaves are validated with group_id and leaf_index")
    where = f"leaf {leaf_index}" if leaf_index is not None else "leaf node"
    try:
        check_credential(credential_validator, leaf.credential, leaf.signature_key)
    except ValidationError as exc:
        raise error_class(f"{where}: credential rejected: {exc}") from exc
    if max_lifetime is not None and leaf.lifetime is not None and (
            leaf.lifetime.not_after - leaf.lifetime.not_before > max_lifetime):
        raise error_class(f"{where}: lifetime longer than {max_lifetime} seconds")
    try:
        check_leaf_node(cs, leaf, group_id, leaf_index, requirements=requirements,
                        expected_source=expected_source, now=now)
    except TreeValidationError as exc:
        # Only the failure path verifies a second time, to classify the failure.
        if leaf.leaf_node_source == expected_source and not verify_leaf_signature(
                cs, leaf, group_id, leaf_index):
            raise SignatureError(f"{where}: invalid LeafNode signature") from exc
        raise error_class(str(exc)) from exc


def check_keys_unique(tree: RatchetTree, leaf: LeafNode, where: str, *,
                      replacing: LeafIndex | None,
                      error_class: type[ValidationError] = ValidationError) -> None:
    """``encryption_key`` appears in no node of ``tree`` (also not in the leaf being
    replaced: an Update/UpdatePath MUST change it, §7.3, §12.4.2) and
    ``signature_key`` in no leaf other than the one being replaced."""
    if tree.find_node_by_encryption_key(leaf.encryption_key) is not None:
        raise error_class(f"{where}: encryption_key already in use in the tree")
    holder = tree.find_leaf_by_signature_key(leaf.signature_key)
    if holder is not None and holder != replacing:
        raise error_class(f"{where}: signature_key already used by leaf {holder}")


def check_credential_types(tree: RatchetTree, leaf: LeafNode, where: str, *,
                           ignore: Iterable[int] = (),
                           error_class: type[ValidationError] = ValidationError) -> None:
    """Every other member supports the leaf's credential type and the leaf supports
    every credential type the other members use (RFC 9420 §7.3).  Leaves in
    ``ignore`` (being replaced or removed) do not count.  O(members)."""
    ignored = frozenset(ignore)
    own_type = leaf.credential.credential_type
    supported = frozenset(leaf.capabilities.credentials)
    if _credential_types_fit(tree, own_type, supported, ignored):
        return
    for index, member in tree.member_leaves():  # find the offending member
        if index in ignored:
            continue
        if own_type not in member.capabilities.credentials:
            raise error_class(f"{where}: credential type {own_type} is not supported "
                              f"by leaf {index}")
        if member.credential.credential_type not in supported:
            raise error_class(f"{where}: does not support credential type "
                              f"{member.credential.credential_type} used by leaf {index}")


def _credential_types_fit(tree: RatchetTree, own_type: int, supported: frozenset[int],
                          ignored: frozenset[int]) -> bool:
    """The test of :func:`check_credential_types` from the tree's tallies of credential
    types, in O(len(ignored)) instead of O(members)."""
    used = dict(tree.credential_types_used())
    support = dict(tree.credential_types_supported())
    members = tree.member_count()
    for index in ignored:
        member = tree.leaf(LeafIndex(index)) if 0 <= index < tree.n_leaves else None
        if member is None:
            continue
        members -= 1
        used[member.credential.credential_type] -= 1
        for kind in set(member.capabilities.credentials):
            support[kind] -= 1
    if support.get(own_type, 0) != members:
        return False
    return all(kind in supported for kind, count in used.items() if count > 0)


def validate_leaf_node(cs: CipherSuite, leaf: LeafNode, *, group_context: GroupContext,
                       tree: RatchetTree, leaf_index: LeafIndex | None,
                       expected_source: LeafNodeSource, now: int | None,
                       credential_validator: CredentialValidator | None = None,
                       replacing: LeafIndex | None = None,
                       max_lifetime: int | None = None,
                       error_class: type[ValidationError] = ValidationError) -> None:
    """Validate a LeafNode about to enter ``tree`` (RFC 9420 §7.3).

    ``leaf_index`` is where the leaf will sit (part of the signed TBS for the update
    and commit sources).  ``replacing`` is the leaf it replaces, if any (the sender of
    an Update or UpdatePath, or the member an external "resync" commit removes,
    §12.4.3.2): its signature key may be reused, its encryption key may not, and the
    AS is asked whether the new credential may succeed the old one (§5.3.1).
    ``tree`` must not contain ``leaf`` yet, and must still hold ``replacing`` (for
    the committer's UpdatePath leaf: the tree after the proposals; for a resync
    external commit: the tree before them, where the removed leaf is still present).

    Raises :class:`SignatureError` for a bad signature and ``error_class``
    (:class:`ValidationError` by default) for every other failure.
    """
    requirements = group_requirements(group_context.extensions)
    check_leaf_alone(cs, leaf, requirements=requirements, group_id=group_context.group_id,
                     leaf_index=leaf_index, expected_source=expected_source, now=now,
                     credential_validator=credential_validator, max_lifetime=max_lifetime,
                     error_class=error_class)
    where = f"leaf {leaf_index}" if leaf_index is not None else "leaf node"
    if replacing is not None:
        old = tree.leaf(replacing)
        if old is None:
            raise error_class(f"{where}: replaces blank leaf {replacing}")
        try:
            check_successor(credential_validator, old.credential, leaf.credential)
        except ValidationError as exc:
            raise error_class(f"{where}: credential may not replace that of leaf "
                              f"{replacing}: {exc}") from exc
    check_keys_unique(tree, leaf, where, replacing=replacing, error_class=error_class)
    ignore = () if replacing is None else (replacing,)
    check_credential_types(tree, leaf, where, ignore=ignore, error_class=error_class)
