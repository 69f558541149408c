"""KeyPackage creation and validation (RFC 9420 §10, §10.1): :mod:`mls.group.key_package`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mls.enums import CredentialType, ExtensionType, LeafNodeSource, ProtocolVersion
from mls.errors import SignatureError, UsageError, ValidationError
from mls.framing.refs import key_package_ref
from mls.group.key_package import CLOCK_SKEW_ALLOWANCE, create_key_package, validate_key_package
from mls.messages.credentials import Credential
from mls.messages.extensions import Extension
from mls.messages.leaf_node import Capabilities
from tests.mls.fixtures import (
    CS,
    GROUP_ID,
    NOW,
    PRIVATE_EXTENSION,
    TreeGroup,
    make_client,
    required_caps_ext,
    resign_key_package,
    resign_leaf,
    with_leaf,
)

# -- KeyPackage creation (§10) ------------------------------------------------------------


def test_created_key_package_is_valid_and_well_formed() -> None:
    client = make_client(b"alice")
    kp = client.key_package
    verified = validate_key_package(CS, kp, now=NOW)
    assert verified.ref == key_package_ref(CS, kp)
    assert verified.key_package == kp
    assert kp.version == ProtocolVersion.MLS10 and kp.cipher_suite == CS.id
    assert kp.init_key != kp.leaf_node.encryption_key
    assert CS.hpke_public_key(client.bundle.init_priv) == kp.init_key
    assert CS.hpke_public_key(client.bundle.encryption_priv) == kp.leaf_node.encryption_key
    assert CS.signature_public_key(client.signature_priv) == kp.leaf_node.signature_key
    lifetime = kp.leaf_node.lifetime
    assert lifetime is not None
    assert lifetime.not_before == NOW - CLOCK_SKEW_ALLOWANCE
    assert lifetime.not_after == NOW + 90 * 86400
    caps = kp.leaf_node.capabilities
    assert caps.versions == (ProtocolVersion.MLS10,)
    assert caps.cipher_suites == (CS.id,)
    assert set(caps.credentials) == {CredentialType.BASIC, CredentialType.X509}
    assert caps.extensions == () and caps.proposals == ()  # defaults are implied


def test_bundle_repr_hides_private_keys() -> None:
    client = make_client(b"alice")
    text = repr(client.bundle)
    for secret in (client.bundle.init_priv, client.bundle.encryption_priv,
                   client.bundle.signature_priv):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_key_packages_are_fresh() -> None:
    client = make_client(b"alice")
    second = create_key_package(CS, Credential.basic(b"alice"), client.signature_priv,
                                rng=client.rng, now=NOW)
    assert second.key_package.init_key != client.key_package.init_key
    assert (second.key_package.leaf_node.encryption_key
            != client.key_package.leaf_node.encryption_key)


def test_non_default_extensions_are_listed_in_capabilities() -> None:
    client = make_client(
        b"alice",
        leaf_extensions=(Extension(PRIVATE_EXTENSION, b"x"),
                         Extension(ExtensionType.APPLICATION_ID, b"app")),
        extensions=(Extension(PRIVATE_EXTENSION + 1, b"y"),))
    assert set(client.leaf.capabilities.extensions) == {PRIVATE_EXTENSION,
                                                         PRIVATE_EXTENSION + 1}
    validate_key_package(CS, client.key_package, now=NOW)


def test_create_rejects_duplicate_extension_types() -> None:
    with pytest.raises(UsageError, match="twice"):
        make_client(b"alice", extensions=(Extension(PRIVATE_EXTENSION, b""),
                                          Extension(PRIVATE_EXTENSION, b"")))


# -- KeyPackage validation (§10.1) ---------------------------------------------------------


def test_key_package_valid_for_group_context() -> None:
    group = TreeGroup(2)
    validate_key_package(CS, make_client(b"new").key_package, now=NOW,
                         group_context=group.context)


def test_key_package_wrong_version() -> None:
    client = make_client(b"alice")
    kp = resign_key_package(client, client.key_package.replace(version=2))
    with pytest.raises(ValidationError, match="version 2 is not mls10"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_wrong_cipher_suite() -> None:
    client = make_client(b"alice")
    kp = resign_key_package(client, client.key_package.replace(cipher_suite=3))
    with pytest.raises(ValidationError, match="cipher suite 0x0003"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_suite_differs_from_group() -> None:
    group = TreeGroup(1)
    context = replace(group.context, cipher_suite=3)
    with pytest.raises(ValidationError, match="differs from the group"):
        validate_key_package(CS, make_client(b"x").key_package, now=NOW,
                             group_context=context)


def test_key_package_leaf_source_must_be_key_package() -> None:
    client = make_client(b"alice")
    leaf = resign_leaf(client, client.leaf.replace(leaf_node_source=LeafNodeSource.UPDATE,
                                                   lifetime=None), GROUP_ID, 0)
    kp = resign_key_package(client, client.key_package.replace(leaf_node=leaf))
    with pytest.raises(ValidationError, match="expected key_package") as info:
        validate_key_package(CS, kp, now=NOW)
    assert not isinstance(info.value, SignatureError)


def test_key_package_bad_leaf_signature() -> None:
    client = make_client(b"alice")
    leaf = client.leaf.replace(signature=bytes(len(client.leaf.signature)))
    kp = resign_key_package(client, client.key_package.replace(leaf_node=leaf))
    with pytest.raises(SignatureError, match="LeafNode signature"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_bad_signature() -> None:
    client = make_client(b"alice")
    kp = client.key_package.replace(extensions=(Extension(PRIVATE_EXTENSION, b"late"),))
    with pytest.raises(SignatureError, match="KeyPackage signature"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_signed_by_another_key() -> None:
    client, other = make_client(b"alice"), make_client(b"mallory")
    kp = resign_key_package(other, client.key_package)
    with pytest.raises(SignatureError):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_init_key_equals_encryption_key() -> None:
    client = make_client(b"alice")
    kp = resign_key_package(client, client.key_package.replace(
        init_key=client.leaf.encryption_key))
    with pytest.raises(ValidationError, match="init_key equals"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_init_key_wrong_size() -> None:
    client = make_client(b"alice")
    kp = resign_key_package(client, client.key_package.replace(init_key=b"short"))
    with pytest.raises(ValidationError, match="init_key is not"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_lifetime_checked_only_with_now() -> None:
    kp = make_client(b"alice").key_package
    lifetime = kp.leaf_node.lifetime
    assert lifetime is not None
    validate_key_package(CS, kp, now=None)
    validate_key_package(CS, kp, now=lifetime.not_before)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_key_package(CS, kp, now=lifetime.not_after + 1)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_key_package(CS, kp, now=lifetime.not_before - 1)


def test_key_package_max_lifetime() -> None:
    kp = make_client(b"alice", lifetime=400 * 86400).key_package
    with pytest.raises(ValidationError, match="lifetime longer"):
        validate_key_package(CS, kp, now=NOW, max_lifetime=365 * 86400)


def test_key_package_leaf_extension_not_in_capabilities() -> None:
    client = make_client(b"alice")
    kp = with_leaf(client, extensions=(Extension(PRIVATE_EXTENSION, b""),))
    with pytest.raises(ValidationError, match=f"extension {PRIVATE_EXTENSION} not in"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_credential_type_not_in_capabilities() -> None:
    client = make_client(b"alice")
    kp = with_leaf(client, capabilities=replace(client.leaf.capabilities,
                                                credentials=(CredentialType.X509,)))
    with pytest.raises(ValidationError, match="credential type not in its capabilities"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_duplicate_extension_types() -> None:
    client = make_client(b"alice")
    kp = resign_key_package(client, client.key_package.replace(
        extensions=(Extension(PRIVATE_EXTENSION, b""), Extension(PRIVATE_EXTENSION, b""))))
    with pytest.raises(ValidationError, match="appears twice"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_rejected_by_credential_validator() -> None:
    kp = make_client(b"alice", credential=Credential.x509((b"",))).key_package
    with pytest.raises(ValidationError, match="credential rejected"):
        validate_key_package(CS, kp, now=NOW)


def test_key_package_must_meet_required_capabilities() -> None:
    context = TreeGroup(1).context
    required = replace(context, extensions=(
        required_caps_ext(extension_types=(PRIVATE_EXTENSION,)),))
    plain = make_client(b"plain").key_package
    with pytest.raises(ValidationError, match=f"required extension {PRIVATE_EXTENSION}"):
        validate_key_package(CS, plain, now=NOW, group_context=required)
    capable = make_client(b"capable", capabilities=Capabilities(
        (1,), (CS.id,), (PRIVATE_EXTENSION,), (), (1, 2))).key_package
    validate_key_package(CS, capable, now=NOW, group_context=required)


def test_key_package_must_support_group_context_extensions() -> None:
    context = replace(TreeGroup(1).context,
                      extensions=(Extension(PRIVATE_EXTENSION, b"on"),))
    with pytest.raises(ValidationError, match=f"required extension {PRIVATE_EXTENSION}"):
        validate_key_package(CS, make_client(b"x").key_package, now=NOW,
                             group_context=context)


def test_key_package_required_credential_type() -> None:
    context = replace(TreeGroup(1).context, extensions=(
        required_caps_ext(credential_types=(0x0F0F,)),))
    with pytest.raises(ValidationError, match="required credential"):
        validate_key_package(CS, make_client(b"x").key_package, now=NOW,
                             group_context=context)
