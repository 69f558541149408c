"""LeafNode validation in a group (RFC 9420 §7.3): :mod:`mls.group.leaf_validation`."""

from __future__ import annotations

import pytest

from mls.enums import CredentialType, LeafNodeSource
from mls.errors import ProposalValidationError, SignatureError, ValidationError
from mls.group.leaf_validation import validate_leaf_node
from mls.messages.credentials import Credential
from mls.messages.leaf_node import Capabilities
from mls.tree.math import LeafIndex
from tests.mls.fixtures import CS, GROUP_ID, NOW, TreeGroup, make_client, resign_leaf, update_leaf


def test_update_leaf_valid() -> None:
    group = TreeGroup(3)
    leaf = update_leaf(group.clients[1], 1)
    validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                       leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                       now=NOW, replacing=LeafIndex(1))


def test_leaf_signed_for_another_index_fails_signature() -> None:
    group = TreeGroup(3)
    leaf = update_leaf(group.clients[1], 2)
    with pytest.raises(SignatureError):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_signed_for_another_group_fails_signature() -> None:
    group = TreeGroup(3)
    leaf = update_leaf(group.clients[1], 1, group_id=b"other group")
    with pytest.raises(SignatureError):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_wrong_source() -> None:
    group = TreeGroup(2)
    leaf = update_leaf(group.clients[1], 1)
    with pytest.raises(ValidationError, match="expected commit"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.COMMIT,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_encryption_key_must_change() -> None:
    group = TreeGroup(2)
    leaf = update_leaf(group.clients[1], 1, encryption_key=group.clients[1].leaf.encryption_key)
    with pytest.raises(ValidationError, match="encryption_key already in use"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_encryption_key_of_another_member() -> None:
    group = TreeGroup(3)
    leaf = update_leaf(group.clients[1], 1, encryption_key=group.clients[2].leaf.encryption_key)
    with pytest.raises(ValidationError, match="encryption_key already in use"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_new_leaf_signature_key_of_a_member() -> None:
    group = TreeGroup(3)
    member = group.clients[2]
    leaf = resign_leaf(member, member.leaf.replace(
        encryption_key=CS.generate_hpke_key_pair(member.rng)[1],
        leaf_node_source=LeafNodeSource.COMMIT, lifetime=None), GROUP_ID, 3)
    with pytest.raises(ValidationError, match="signature_key already used by leaf 2"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(3), expected_source=LeafNodeSource.COMMIT,
                           now=NOW)


def test_leaf_credential_type_unsupported_by_a_member() -> None:
    group = TreeGroup(1)
    basic_only = make_client(b"basic only", capabilities=Capabilities(
        (1,), (CS.id,), (), (), (CredentialType.BASIC,)))
    group.tree.add_leaf(basic_only.leaf)
    x509 = make_client(b"x509", credential=Credential.x509((b"cert",)))
    with pytest.raises(ValidationError, match="credential type 2 is not supported by leaf 1"):
        validate_leaf_node(CS, x509.leaf, group_context=group.context, tree=group.tree,
                           leaf_index=None, expected_source=LeafNodeSource.KEY_PACKAGE,
                           now=NOW)


def test_leaf_must_support_credential_types_in_use() -> None:
    group = TreeGroup(1)
    group.tree.add_leaf(make_client(b"x509", credential=Credential.x509((b"c",))).leaf)
    newcomer = make_client(b"basic only", capabilities=Capabilities(
        (1,), (CS.id,), (), (), (CredentialType.BASIC,)))
    with pytest.raises(ValidationError, match="does not support credential type 2"):
        validate_leaf_node(CS, newcomer.leaf, group_context=group.context, tree=group.tree,
                           leaf_index=None, expected_source=LeafNodeSource.KEY_PACKAGE,
                           now=NOW)


def test_leaf_credential_successor_checked() -> None:
    group = TreeGroup(2)
    leaf = update_leaf(group.clients[1], 1, credential=Credential.basic(b"someone else"))
    with pytest.raises(ValidationError, match="may not replace"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_error_class_is_selectable() -> None:
    group = TreeGroup(2)
    leaf = update_leaf(group.clients[1], 1)
    with pytest.raises(ProposalValidationError):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.COMMIT,
                           now=NOW, replacing=LeafIndex(1),
                           error_class=ProposalValidationError)
