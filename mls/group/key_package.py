"""Creating and validating KeyPackages (RFC 9420 §10, §10.1).

Sans-I/O: the caller supplies the time (``now``, seconds since the Unix epoch) and the
randomness (``rng``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto.suite import CipherSuite, Rng
from mls.enums import CredentialType, LeafNodeSource, ProtocolVersion
from mls.errors import CryptoError, SignatureError, UsageError, ValidationError
from mls.framing.refs import key_package_ref
from mls.group.credentials import CredentialValidator
from mls.group.leaf_validation import check_leaf_alone, group_requirements
from mls.messages.credentials import Credential
from mls.messages.extensions import Extension, GroupContext
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import Capabilities, LeafNode, Lifetime
from mls.tree.validation import (
    DEFAULT_EXTENSION_TYPES,
    NO_REQUIREMENTS,
    check_unique_extension_types,
)

#: Default KeyPackage lifetime: 90 days.
DEFAULT_LIFETIME = 90 * 86400
#: How far ``not_before`` is set in the past, to tolerate clock skew between clients.
CLOCK_SKEW_ALLOWANCE = 3600


@dataclass(frozen=True, slots=True)
class KeyPackageBundle:
    """A KeyPackage with the private keys its creator keeps (never in repr)."""

    key_package: KeyPackage
    init_priv: bytes = field(repr=False)
    encryption_priv: bytes = field(repr=False)
    signature_priv: bytes = field(repr=False)


def default_capabilities(cs: CipherSuite,
                         extension_types: tuple[int, ...] = ()) -> Capabilities:
    """Capabilities for a KeyPackage of suite ``cs`` (RFC 9420 §7.2): version mls10,
    this suite, credential types basic and x509, and only the *non-default* extension
    types in ``extension_types``.  Default proposal and extension types are implied and
    MUST NOT be listed, so the proposals list is empty."""
    non_default = tuple(dict.fromkeys(
        t for t in extension_types if t not in DEFAULT_EXTENSION_TYPES))
    return Capabilities(
        versions=(ProtocolVersion.MLS10,),
        cipher_suites=(cs.id,),
        extensions=non_default,
        proposals=(),
        credentials=(CredentialType.BASIC, CredentialType.X509),
    )


def create_key_package(cs: CipherSuite, credential: Credential, signature_priv: bytes, *,
                       rng: Rng, now: int, lifetime: int = DEFAULT_LIFETIME,
                       capabilities: Capabilities | None = None,
                       extensions: tuple[Extension, ...] = (),
                       leaf_extensions: tuple[Extension, ...] = ()) -> KeyPackageBundle:
    """Create a signed KeyPackage (RFC 9420 §10).

    Draws a fresh HPKE init key pair and a fresh leaf encryption key pair from ``rng``.
    The leaf's lifetime is ``[now - 1 h, now + lifetime]``: ``not_before`` lies an hour
    in the past so that a receiver whose clock is slightly behind still accepts it.
    Without explicit ``capabilities`` the defaults of :func:`default_capabilities` are
    used, listing the non-default types of ``extensions`` and ``leaf_extensions``.
    The leaf is signed with SignWithLabel("LeafNodeTBS") (no group_id/leaf_index for
    the key_package source) and the package with SignWithLabel("KeyPackageTBS").
    """
    if lifetime <= 0:
        raise UsageError("KeyPackage lifetime must be positive")
    if now < 0:
        raise UsageError("now must be a non-negative Unix time")
    check_unique_extension_types(extensions, "KeyPackage extensions", UsageError)
    check_unique_extension_types(leaf_extensions, "leaf extensions", UsageError)
    if capabilities is None:
        capabilities = default_capabilities(
            cs, tuple(ext.extension_type for ext in (*extensions, *leaf_extensions)))
    init_priv, init_pub = cs.generate_hpke_key_pair(rng)
    encryption_priv, encryption_pub = cs.generate_hpke_key_pair(rng)
    if init_pub == encryption_pub:
        raise UsageError("rng returned the same key material twice")
    unsigned_leaf = LeafNode(
        encryption_key=encryption_pub,
        signature_key=cs.signature_public_key(signature_priv),
        credential=credential,
        capabilities=capabilities,
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(max(0, now - CLOCK_SKEW_ALLOWANCE), now + lifetime),
        extensions=leaf_extensions,
    )
    leaf = unsigned_leaf.replace(signature=cs.sign_with_label(
        signature_priv, b"LeafNodeTBS", unsigned_leaf.tbs_bytes()))
    unsigned = KeyPackage(ProtocolVersion.MLS10, cs.id, init_pub, leaf, extensions)
    key_package = unsigned.replace(signature=cs.sign_with_label(
        signature_priv, b"KeyPackageTBS", unsigned.tbs_bytes()))
    return KeyPackageBundle(key_package, init_priv, encryption_priv, signature_priv)


@dataclass(frozen=True, slots=True)
class VerifiedKeyPackage:
    """A KeyPackage that passed :func:`validate_key_package`, with its
    KeyPackageRef (RFC 9420 §5.2)."""

    key_package: KeyPackage
    ref: bytes


def validate_key_package(cs: CipherSuite, key_package: KeyPackage, *, now: int | None,
                         group_context: GroupContext | None = None,
                         credential_validator: CredentialValidator | None = None,
                         max_lifetime: int | None = None,
                         error_class: type[ValidationError] = ValidationError
                         ) -> VerifiedKeyPackage:
    """Validate a KeyPackage (RFC 9420 §10, §10.1).

    Checks: version mls10 and cipher suite ``cs`` (and those of ``group_context``
    when given); ``init_key`` is an HPKE public key of the suite; each extension type
    once (§13.4); the leaf node is valid for a KeyPackage by the one rule set of
    :func:`mls.group.leaf_validation.check_leaf_alone` (§7.3: source key_package,
    credential, signature, capabilities, and with a group context the group's
    requirements); the KeyPackage signature verifies with the leaf's signature key;
    ``init_key`` differs from the leaf's ``encryption_key``.  Checks that need the
    group's members (unique keys, credential types) belong to the proposal list
    (:mod:`mls.group.proposal_list`).

    ``now`` judges the leaf's lifetime (§7.3): give it before using a downloaded
    KeyPackage and when committing its Add; a receiver of an Add passes ``None``.
    The leaf's capabilities need not list the KeyPackage's own version and cipher
    suite (see :func:`mls.tree.validation.check_leaf_node`).  Unknown and
    GREASE extensions in ``KeyPackage.extensions`` are ignored and need not be in the
    leaf's capabilities (§13.4, §13.5; §10.1 does not check them).

    Raises :class:`SignatureError` for either signature, ``error_class`` otherwise.
    """
    if key_package.version != ProtocolVersion.MLS10:
        raise error_class(f"KeyPackage version {key_package.version} is not mls10")
    if key_package.cipher_suite != cs.id:
        raise error_class(f"KeyPackage cipher suite 0x{key_package.cipher_suite:04x} "
                          f"is not 0x{cs.id:04x}")
    requirements = NO_REQUIREMENTS
    if group_context is not None:
        if key_package.version != group_context.version:
            raise error_class("KeyPackage version differs from the group's")
        if key_package.cipher_suite != group_context.cipher_suite:
            raise error_class("KeyPackage cipher suite differs from the group's")
        requirements = group_requirements(group_context.extensions)
    if len(key_package.init_key) != cs.kem.n_pk:
        raise error_class(f"KeyPackage init_key is not a {cs.id.name} HPKE public key")
    check_unique_extension_types(key_package.extensions, "KeyPackage", error_class)
    leaf = key_package.leaf_node
    check_leaf_alone(cs, leaf, requirements=requirements, group_id=None, leaf_index=None,
                     expected_source=LeafNodeSource.KEY_PACKAGE, now=now,
                     credential_validator=credential_validator, max_lifetime=max_lifetime,
                     error_class=error_class)
    try:
        valid = cs.verify_with_label(leaf.signature_key, b"KeyPackageTBS",
                                     key_package.tbs_bytes(), key_package.signature)
    except CryptoError as exc:
        raise SignatureError("invalid KeyPackage signature") from exc
    if not valid:
        raise SignatureError("invalid KeyPackage signature")
    if key_package.init_key == leaf.encryption_key:
        raise error_class("KeyPackage init_key equals the leaf encryption_key")
    return VerifiedKeyPackage(key_package, key_package_ref(cs, key_package))
