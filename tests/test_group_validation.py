"""Behaviour of the group layer's validation building blocks: credentials (§5.3),
KeyPackages (§10), leaf nodes (§7.3), proposal lists (§12.2, §12.3, §12.4,
§12.4.3.2), PSK resolution (§8.4) and external senders (§12.1.8)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest

from mls import codec
from mls.crypto.suite import CipherSuite, Rng, suite
from mls.enums import (
    ContentType,
    CredentialType,
    ExtensionType,
    LeafNodeSource,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
    SenderType,
)
from mls.errors import (
    ProposalValidationError,
    SignatureError,
    UsageError,
    ValidationError,
)
from mls.framing.refs import key_package_ref
from mls.group.credentials import BasicCredentialValidator
from mls.group.external_senders import (
    external_proposal_signature_key,
    validate_external_senders,
)
from mls.group.key_package import (
    CLOCK_SKEW_ALLOWANCE,
    KeyPackageBundle,
    create_key_package,
    validate_key_package,
)
from mls.group.leaf_validation import validate_leaf_node
from mls.group.proposal_list import (
    SenderProposal,
    apply_proposals,
    path_required,
    validate_proposal_list,
)
from mls.group.psk import PskResolver
from mls.messages.credentials import Credential
from mls.messages.extension_types import (
    ExternalSender,
    RequiredCapabilities,
    encode_external_senders,
)
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import Sender
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import Capabilities, LeafNode
from mls.messages.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from mls.messages.psk import PreSharedKeyID
from mls.messages.tree_nodes import ParentNode
from mls.tree.math import LeafIndex, NodeIndex
from mls.tree.ratchet_tree import RatchetTree

CS = suite(1)
NOW = 1_700_000_000
GROUP_ID = b"validation group"
PRIVATE_EXTENSION = 0xFF01  # a non-default extension type from the private-use range


def make_rng(seed: bytes) -> Rng:
    """A deterministic rng (SHA-256 in counter mode) so failures reproduce."""
    counter = itertools.count()

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + next(counter).to_bytes(8, "big")).digest()
        return out[:n]

    return rng


@dataclass
class Client:
    name: bytes
    signature_priv: bytes
    bundle: KeyPackageBundle
    rng: Rng

    @property
    def key_package(self) -> KeyPackage:
        return self.bundle.key_package

    @property
    def leaf(self) -> LeafNode:
        return self.bundle.key_package.leaf_node


def make_client(name: bytes, cs: CipherSuite = CS, **kwargs: object) -> Client:
    rng = make_rng(name)
    signature_priv, _ = cs.generate_signature_key_pair(rng)
    credential = kwargs.pop("credential", Credential.basic(name))
    assert isinstance(credential, Credential)
    bundle = create_key_package(cs, credential, signature_priv, rng=rng, now=NOW,
                                **kwargs)  # type: ignore[arg-type]
    return Client(name, signature_priv, bundle, rng)


def resign_leaf(client: Client, leaf: LeafNode, group_id: bytes | None = None,
                leaf_index: int | None = None, cs: CipherSuite = CS) -> LeafNode:
    tbs = leaf.tbs_bytes(group_id, leaf_index)
    return leaf.replace(signature=cs.sign_with_label(client.signature_priv, b"LeafNodeTBS",
                                                     tbs))


def resign_key_package(client: Client, key_package: KeyPackage,
                       cs: CipherSuite = CS) -> KeyPackage:
    return key_package.replace(signature=cs.sign_with_label(
        client.signature_priv, b"KeyPackageTBS", key_package.tbs_bytes()))


def with_leaf(client: Client, **changes: object) -> KeyPackage:
    """The client's KeyPackage with leaf fields changed, everything re-signed."""
    leaf = resign_leaf(client, client.leaf.replace(**changes))
    return resign_key_package(client, client.key_package.replace(leaf_node=leaf))


def update_leaf(client: Client, leaf_index: int, group_id: bytes = GROUP_ID,
                **changes: object) -> LeafNode:
    """A signed Update LeafNode for ``client`` at ``leaf_index`` with a fresh key."""
    _, encryption_key = CS.generate_hpke_key_pair(client.rng)
    fields: dict[str, object] = {"encryption_key": encryption_key,
                                 "leaf_node_source": LeafNodeSource.UPDATE,
                                 "lifetime": None}
    fields.update(changes)
    return resign_leaf(client, client.leaf.replace(**fields), group_id, leaf_index)


class Group:
    """A tree of ``n`` members built from their KeyPackages, and its context."""

    def __init__(self, n: int, extensions: tuple[Extension, ...] = ()) -> None:
        self.clients = [make_client(b"member %d" % i) for i in range(n)]
        self.tree = RatchetTree.one_member(CS, self.clients[0].leaf)
        for client in self.clients[1:]:
            self.tree.add_leaf(client.leaf)
        self.context = GroupContext(ProtocolVersion.MLS10, CS.id, GROUP_ID, 5,
                                    self.tree.tree_hash(), b"", extensions)

    def validate(self, proposals: Sequence[SenderProposal], committer: int = 0,
                 **kwargs: object) -> None:
        validate_proposal_list(CS, proposals, committer=Sender.member(committer),
                               tree=self.tree, group_context=self.context, now=NOW,
                               **kwargs)  # type: ignore[arg-type]


def by_value(proposal: Proposal, committer: int = 0) -> SenderProposal:
    return SenderProposal(proposal, Sender.member(committer), None)


def by_ref(proposal: Proposal, sender: Sender) -> SenderProposal:
    return SenderProposal(proposal, sender, b"ref:" + codec.encode(sender))


def psk_id(name: bytes = b"psk", nonce_byte: int = 1, **kwargs: object) -> PreSharedKeyID:
    return PreSharedKeyID(PSKType.EXTERNAL, bytes([nonce_byte]) * CS.hash_len, psk_id=name,
                          **kwargs)  # type: ignore[arg-type]


def required_caps_ext(**kwargs: tuple[int, ...]) -> Extension:
    return Extension(ExtensionType.REQUIRED_CAPABILITIES,
                     codec.encode(RequiredCapabilities(**kwargs)))


# -- credentials (§5.3) ---------------------------------------------------------------


def test_basic_validator_accepts_basic_and_nonempty_x509() -> None:
    validator = BasicCredentialValidator()
    validator.validate(Credential.basic(b"alice"), b"key")
    validator.validate(Credential.x509((b"cert",)), b"key")


@pytest.mark.parametrize(("credential", "message"), [
    (Credential.x509(()), "empty certificate chain"),
    (Credential.x509((b"cert", b"")), "empty certificate"),
    (Credential(0x0F0F), "not supported"),
])
def test_basic_validator_rejects(credential: Credential, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BasicCredentialValidator().validate(credential, b"key")


def test_basic_validator_successor_keeps_identity() -> None:
    validator = BasicCredentialValidator()
    validator.validate_successor(Credential.basic(b"a"), Credential.basic(b"a"))
    with pytest.raises(ValidationError, match="different identity"):
        validator.validate_successor(Credential.basic(b"a"), Credential.basic(b"b"))


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
    group = Group(2)
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
    group = Group(1)
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
    context = Group(1).context
    required = replace(context, extensions=(
        required_caps_ext(extension_types=(PRIVATE_EXTENSION,)),))
    plain = make_client(b"plain").key_package
    with pytest.raises(ValidationError, match=f"required extension {PRIVATE_EXTENSION}"):
        validate_key_package(CS, plain, now=NOW, group_context=required)
    capable = make_client(b"capable", capabilities=Capabilities(
        (1,), (CS.id,), (PRIVATE_EXTENSION,), (), (1, 2))).key_package
    validate_key_package(CS, capable, now=NOW, group_context=required)


def test_key_package_must_support_group_context_extensions() -> None:
    context = replace(Group(1).context,
                      extensions=(Extension(PRIVATE_EXTENSION, b"on"),))
    with pytest.raises(ValidationError, match=f"required extension {PRIVATE_EXTENSION}"):
        validate_key_package(CS, make_client(b"x").key_package, now=NOW,
                             group_context=context)


def test_key_package_required_credential_type() -> None:
    context = replace(Group(1).context, extensions=(
        required_caps_ext(credential_types=(0x0F0F,)),))
    with pytest.raises(ValidationError, match="required credential"):
        validate_key_package(CS, make_client(b"x").key_package, now=NOW,
                             group_context=context)


# -- LeafNode validation in a group (§7.3) ---------------------------------------------------


def test_update_leaf_valid() -> None:
    group = Group(3)
    leaf = update_leaf(group.clients[1], 1)
    validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                       leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                       now=NOW, replacing=LeafIndex(1))


def test_leaf_signed_for_another_index_fails_signature() -> None:
    group = Group(3)
    leaf = update_leaf(group.clients[1], 2)
    with pytest.raises(SignatureError):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_signed_for_another_group_fails_signature() -> None:
    group = Group(3)
    leaf = update_leaf(group.clients[1], 1, group_id=b"other group")
    with pytest.raises(SignatureError):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_wrong_source() -> None:
    group = Group(2)
    leaf = update_leaf(group.clients[1], 1)
    with pytest.raises(ValidationError, match="expected commit"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.COMMIT,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_encryption_key_must_change() -> None:
    group = Group(2)
    leaf = update_leaf(group.clients[1], 1, encryption_key=group.clients[1].leaf.encryption_key)
    with pytest.raises(ValidationError, match="encryption_key already in use"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_encryption_key_of_another_member() -> None:
    group = Group(3)
    leaf = update_leaf(group.clients[1], 1, encryption_key=group.clients[2].leaf.encryption_key)
    with pytest.raises(ValidationError, match="encryption_key already in use"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_new_leaf_signature_key_of_a_member() -> None:
    group = Group(3)
    member = group.clients[2]
    leaf = resign_leaf(member, member.leaf.replace(
        encryption_key=CS.generate_hpke_key_pair(member.rng)[1],
        leaf_node_source=LeafNodeSource.COMMIT, lifetime=None), GROUP_ID, 3)
    with pytest.raises(ValidationError, match="signature_key already used by leaf 2"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(3), expected_source=LeafNodeSource.COMMIT,
                           now=NOW)


def test_leaf_credential_type_unsupported_by_a_member() -> None:
    group = Group(1)
    basic_only = make_client(b"basic only", capabilities=Capabilities(
        (1,), (CS.id,), (), (), (CredentialType.BASIC,)))
    group.tree.add_leaf(basic_only.leaf)
    x509 = make_client(b"x509", credential=Credential.x509((b"cert",)))
    with pytest.raises(ValidationError, match="credential type 2 is not supported by leaf 1"):
        validate_leaf_node(CS, x509.leaf, group_context=group.context, tree=group.tree,
                           leaf_index=None, expected_source=LeafNodeSource.KEY_PACKAGE,
                           now=NOW)


def test_leaf_must_support_credential_types_in_use() -> None:
    group = Group(1)
    group.tree.add_leaf(make_client(b"x509", credential=Credential.x509((b"c",))).leaf)
    newcomer = make_client(b"basic only", capabilities=Capabilities(
        (1,), (CS.id,), (), (), (CredentialType.BASIC,)))
    with pytest.raises(ValidationError, match="does not support credential type 2"):
        validate_leaf_node(CS, newcomer.leaf, group_context=group.context, tree=group.tree,
                           leaf_index=None, expected_source=LeafNodeSource.KEY_PACKAGE,
                           now=NOW)


def test_leaf_credential_successor_checked() -> None:
    group = Group(2)
    leaf = update_leaf(group.clients[1], 1, credential=Credential.basic(b"someone else"))
    with pytest.raises(ValidationError, match="may not replace"):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.UPDATE,
                           now=NOW, replacing=LeafIndex(1))


def test_leaf_error_class_is_selectable() -> None:
    group = Group(2)
    leaf = update_leaf(group.clients[1], 1)
    with pytest.raises(ProposalValidationError):
        validate_leaf_node(CS, leaf, group_context=group.context, tree=group.tree,
                           leaf_index=LeafIndex(1), expected_source=LeafNodeSource.COMMIT,
                           now=NOW, replacing=LeafIndex(1),
                           error_class=ProposalValidationError)


# -- proposal list validation: regular commits (§12.2) ---------------------------------------


def test_valid_mixed_proposal_list() -> None:
    group = Group(4)
    proposals = [
        by_value(Add(make_client(b"new").key_package)),
        by_ref(Update(update_leaf(group.clients[1], 1)), Sender.member(1)),
        by_ref(Remove(2), Sender.member(3)),
        by_value(PreSharedKey(psk_id())),
        by_value(PreSharedKey(psk_id(b"other"))),
    ]
    group.validate(proposals)
    group.validate([])  # an empty commit is valid too


def test_update_by_value_from_committer() -> None:
    group = Group(2)
    with pytest.raises(ProposalValidationError, match="Update generated by the committer"):
        group.validate([by_value(Update(update_leaf(group.clients[0], 0)))])


def test_update_by_reference_from_committer() -> None:
    group = Group(2)
    proposal = by_ref(Update(update_leaf(group.clients[0], 0)), Sender.member(0))
    with pytest.raises(ProposalValidationError, match="Update generated by the committer"):
        group.validate([proposal])


def test_by_value_proposal_must_come_from_committer() -> None:
    group = Group(2)
    proposal = SenderProposal(Remove(0), Sender.member(1), None)
    with pytest.raises(ProposalValidationError, match="by value but not from the committer"):
        group.validate([proposal])


def test_update_from_external_sender() -> None:
    group = Group(2)
    proposal = by_ref(Update(update_leaf(group.clients[1], 1)),
                      Sender(SenderType.EXTERNAL, sender_index=0))
    with pytest.raises(ProposalValidationError, match="not allowed from an external sender"):
        group.validate([proposal])


def test_update_with_invalid_leaf() -> None:
    group = Group(2)
    leaf = update_leaf(group.clients[1], 0)  # signed for the wrong leaf index
    with pytest.raises(SignatureError, match="proposal 0"):
        group.validate([by_ref(Update(leaf), Sender.member(1))])


def test_update_must_change_encryption_key() -> None:
    group = Group(2)
    leaf = update_leaf(group.clients[1], 1, encryption_key=group.clients[1].leaf.encryption_key)
    with pytest.raises(ProposalValidationError, match="encryption_key is not changed"):
        group.validate([by_ref(Update(leaf), Sender.member(1))])


def test_two_updates_for_same_leaf() -> None:
    group = Group(2)
    first = by_ref(Update(update_leaf(group.clients[1], 1)), Sender.member(1))
    second = by_ref(Update(update_leaf(group.clients[1], 1)), Sender.member(1))
    with pytest.raises(ProposalValidationError, match="several Update/Remove"):
        group.validate([first, second])


def test_update_and_remove_for_same_leaf() -> None:
    group = Group(3)
    proposals = [by_ref(Update(update_leaf(group.clients[1], 1)), Sender.member(1)),
                 by_value(Remove(1))]
    with pytest.raises(ProposalValidationError, match="several Update/Remove"):
        group.validate(proposals)


def test_remove_of_committer() -> None:
    group = Group(2)
    with pytest.raises(ProposalValidationError, match="committer removes itself"):
        group.validate([by_value(Remove(0))])


def test_duplicate_remove() -> None:
    group = Group(3)
    with pytest.raises(ProposalValidationError, match="removed twice"):
        group.validate([by_value(Remove(1)), by_ref(Remove(1), Sender.member(2))])


@pytest.mark.parametrize("removed", [2, 4, 1000])
def test_remove_of_blank_or_absent_leaf(removed: int) -> None:
    group = Group(4)
    group.tree.remove_leaf(LeafIndex(2))
    with pytest.raises(ProposalValidationError, match="blank or absent leaf"):
        group.validate([by_value(Remove(removed))])


def test_proposal_from_blank_leaf() -> None:
    group = Group(4)
    group.tree.remove_leaf(LeafIndex(2))
    with pytest.raises(ProposalValidationError, match="sender leaf 2 is not a member"):
        group.validate([by_ref(Remove(1), Sender.member(2))])


def test_add_of_existing_member_signature_key() -> None:
    group = Group(3)
    member = group.clients[1]
    again = create_key_package(CS, Credential.basic(member.name), member.signature_priv,
                               rng=member.rng, now=NOW).key_package
    with pytest.raises(ProposalValidationError, match="signature key already used by "
                                                      "member leaf 1"):
        group.validate([by_value(Add(again))])
    # ... unless the same commit removes that member.
    group.validate([by_value(Remove(1)), by_value(Add(again))])


def test_two_adds_of_same_client() -> None:
    group = Group(2)
    client = make_client(b"twice")
    again = create_key_package(CS, Credential.basic(b"twice"), client.signature_priv,
                               rng=client.rng, now=NOW).key_package
    with pytest.raises(ProposalValidationError, match="signature key duplicates"):
        group.validate([by_value(Add(client.key_package)), by_value(Add(again))])


def test_add_same_key_package_twice() -> None:
    group = Group(2)
    kp = make_client(b"twice").key_package
    with pytest.raises(ProposalValidationError, match="HPKE key duplicates"):
        group.validate([by_value(Add(kp)), by_value(Add(kp))])


def test_add_with_encryption_key_of_a_member() -> None:
    group = Group(2)
    client = make_client(b"copycat")
    kp = with_leaf(client, encryption_key=group.clients[1].leaf.encryption_key)
    with pytest.raises(ProposalValidationError, match="HPKE key already used"):
        group.validate([by_value(Add(kp))])


def test_add_with_init_key_of_a_member() -> None:
    group = Group(2)
    client = make_client(b"copycat")
    kp = resign_key_package(client, client.key_package.replace(
        init_key=group.clients[1].leaf.encryption_key))
    with pytest.raises(ProposalValidationError, match="HPKE key already used"):
        group.validate([by_value(Add(kp))])


def test_add_with_invalid_key_package() -> None:
    group = Group(2)
    client = make_client(b"bad")
    kp = resign_key_package(client, client.key_package.replace(
        init_key=client.leaf.encryption_key))
    with pytest.raises(ProposalValidationError, match=r"proposal 0 \(add\): KeyPackage init_key"):
        group.validate([by_value(Add(kp))])
    forged = client.key_package.replace(signature=bytes(64))
    with pytest.raises(SignatureError, match="proposal 0"):
        group.validate([by_value(Add(forged))])


def test_add_with_unsupported_credential_type() -> None:
    group = Group(1)
    group.tree.add_leaf(make_client(b"basic only", capabilities=Capabilities(
        (1,), (CS.id,), (), (), (CredentialType.BASIC,))).leaf)
    x509 = make_client(b"x509", credential=Credential.x509((b"cert",))).key_package
    with pytest.raises(ProposalValidationError, match=r"leaf 1 does not support credential "
                                                      r"types \[2\]"):
        group.validate([by_value(Add(x509))])
    # Removing the basic-only member in the same commit makes the list valid.
    group.validate([by_value(Remove(1)), by_value(Add(x509))])


def test_two_group_context_extensions() -> None:
    group = Group(2)
    with pytest.raises(ProposalValidationError, match="more than one GroupContextExtensions"):
        group.validate([by_value(GroupContextExtensions(())),
                        by_value(GroupContextExtensions(()))])


def test_reinit_alone_is_valid_but_not_with_others() -> None:
    group = Group(2)
    reinit = ReInit(b"new group", ProtocolVersion.MLS10, CS.id, ())
    group.validate([by_value(reinit)])
    with pytest.raises(ProposalValidationError, match="ReInit must be the only proposal"):
        group.validate([by_value(reinit), by_value(Remove(1))])


def test_reinit_to_older_version() -> None:
    group = Group(2)
    with pytest.raises(ProposalValidationError, match="older version"):
        group.validate([by_value(ReInit(b"g", 0, CS.id, ()))])


def test_external_init_in_regular_commit() -> None:
    group = Group(2)
    with pytest.raises(ProposalValidationError, match="ExternalInit in a regular commit"):
        group.validate([by_value(ExternalInit(b"kem output"))])


def test_duplicate_psk_id() -> None:
    group = Group(2)
    with pytest.raises(ProposalValidationError, match="PreSharedKeyID appears twice"):
        group.validate([by_value(PreSharedKey(psk_id())), by_value(PreSharedKey(psk_id()))])


def test_psk_nonce_length() -> None:
    group = Group(2)
    short = PreSharedKeyID(PSKType.EXTERNAL, b"\x01" * 16, psk_id=b"psk")
    with pytest.raises(ProposalValidationError, match="psk_nonce is 16 bytes"):
        group.validate([by_value(PreSharedKey(short))])


@pytest.mark.parametrize("usage", [ResumptionPSKUsage.REINIT, ResumptionPSKUsage.BRANCH])
def test_resumption_psk_usage_must_be_application(usage: ResumptionPSKUsage) -> None:
    group = Group(2)
    nonce = b"\x02" * CS.hash_len
    valid = PreSharedKeyID(PSKType.RESUMPTION, nonce, psk_group_id=GROUP_ID, psk_epoch=4)
    group.validate([by_value(PreSharedKey(valid))])
    with pytest.raises(ProposalValidationError, match=f"usage {usage.name.lower()}"):
        group.validate([by_value(PreSharedKey(replace(valid, usage=usage)))])


def test_group_context_extensions_require_member_support() -> None:
    group = Group(3)
    gce = GroupContextExtensions((required_caps_ext(extension_types=(PRIVATE_EXTENSION,)),))
    with pytest.raises(ProposalValidationError, match=f"leaf 0 does not support extension "
                                                      f"{PRIVATE_EXTENSION}"):
        group.validate([by_value(gce)])
    with pytest.raises(ProposalValidationError, match="does not support extension"):
        group.validate([by_value(GroupContextExtensions(
            (Extension(PRIVATE_EXTENSION, b"on"),)))])
    # Default extension types need no support announcement.
    group.validate([by_value(GroupContextExtensions(
        (Extension(ExtensionType.APPLICATION_ID, b"app"),)))])


def test_group_context_extensions_ignore_removed_members() -> None:
    capable_caps = Capabilities((1,), (CS.id,), (PRIVATE_EXTENSION,), (), (1, 2))
    members = [make_client(b"m%d" % i, capabilities=capable_caps) for i in range(2)]
    tree = RatchetTree.one_member(CS, members[0].leaf)
    tree.add_leaf(members[1].leaf)
    tree.add_leaf(make_client(b"incapable").leaf)
    context = GroupContext(1, CS.id, GROUP_ID, 1, tree.tree_hash(), b"", ())
    gce = by_value(GroupContextExtensions(
        (required_caps_ext(extension_types=(PRIVATE_EXTENSION,)),)))
    with pytest.raises(ProposalValidationError, match="leaf 2 does not support extension"):
        validate_proposal_list(CS, [gce], committer=Sender.member(0), tree=tree,
                               group_context=context, now=NOW)
    validate_proposal_list(CS, [gce, by_value(Remove(2))], committer=Sender.member(0),
                           tree=tree, group_context=context, now=NOW)


def test_group_context_extensions_apply_to_adds_in_same_commit() -> None:
    capable_caps = Capabilities((1,), (CS.id,), (PRIVATE_EXTENSION,), (), (1, 2))
    members = [make_client(b"m%d" % i, capabilities=capable_caps) for i in range(2)]
    tree = RatchetTree.one_member(CS, members[0].leaf)
    tree.add_leaf(members[1].leaf)
    context = GroupContext(1, CS.id, GROUP_ID, 1, tree.tree_hash(), b"", ())
    gce = by_value(GroupContextExtensions(
        (required_caps_ext(extension_types=(PRIVATE_EXTENSION,)),)))
    plain = by_value(Add(make_client(b"plain").key_package))
    capable = by_value(Add(make_client(b"cap", capabilities=capable_caps).key_package))
    validate_proposal_list(CS, [gce, capable], committer=Sender.member(0), tree=tree,
                           group_context=context, now=NOW)
    with pytest.raises(ProposalValidationError, match="required extension"):
        validate_proposal_list(CS, [gce, plain], committer=Sender.member(0), tree=tree,
                               group_context=context, now=NOW)


def test_group_context_extensions_malformed() -> None:
    group = Group(2)
    bad = Extension(ExtensionType.REQUIRED_CAPABILITIES, b"\xff")
    with pytest.raises(ProposalValidationError, match="malformed required_capabilities"):
        group.validate([by_value(GroupContextExtensions((bad,)))])
    twice = (Extension(ExtensionType.APPLICATION_ID, b"a"),
             Extension(ExtensionType.APPLICATION_ID, b"b"))
    with pytest.raises(ProposalValidationError, match="appears twice"):
        group.validate([by_value(GroupContextExtensions(twice))])


def test_group_context_extensions_external_senders_validated() -> None:
    group = Group(2)
    bad_sender = ExternalSender(b"key", Credential.x509(()))
    ext = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders([bad_sender]))
    with pytest.raises(ProposalValidationError, match="external sender 0: credential"):
        group.validate([by_value(GroupContextExtensions((ext,)))])


def test_external_and_new_member_proposal_senders() -> None:
    signer = make_client(b"service")
    senders_ext = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(
        [ExternalSender(signer.leaf.signature_key, Credential.basic(b"service"))]))
    group = Group(3, extensions=(senders_ext,))
    group.validate([by_ref(Remove(2), Sender(SenderType.EXTERNAL, sender_index=0))])
    with pytest.raises(ProposalValidationError, match="unknown external sender 1"):
        group.validate([by_ref(Remove(2), Sender(SenderType.EXTERNAL, sender_index=1))])
    joiner = make_client(b"joiner").key_package
    new_member = Sender(SenderType.NEW_MEMBER_PROPOSAL)
    group.validate([by_ref(Add(joiner), new_member)])
    with pytest.raises(ProposalValidationError, match="may only propose an Add"):
        group.validate([by_ref(Remove(2), new_member)])


# -- proposal list validation: external commits (§12.4.3.2) ---------------------------------

JOINER = Sender(SenderType.NEW_MEMBER_COMMIT)


def external(proposals: Sequence[Proposal]) -> list[SenderProposal]:
    return [SenderProposal(p, JOINER, None) for p in proposals]


def validate_external(group: Group, proposals: Sequence[SenderProposal]) -> None:
    validate_proposal_list(CS, proposals, committer=JOINER, tree=group.tree,
                           group_context=group.context, now=NOW, is_external_commit=True)


def test_external_commit_valid_lists() -> None:
    group = Group(3)
    validate_external(group, external([ExternalInit(b"kem")]))
    validate_external(group, external([PreSharedKey(psk_id()), ExternalInit(b"kem"),
                                       Remove(1)]))


@pytest.mark.parametrize(("proposals", "message"), [
    ([], "0 ExternalInit proposals"),
    ([PreSharedKey(psk_id())], "0 ExternalInit proposals"),
    ([ExternalInit(b"a"), ExternalInit(b"b")], "2 ExternalInit proposals"),
    ([ExternalInit(b"a"), Remove(1), Remove(2)], "more than one Remove"),
    ([ExternalInit(b"a"), Remove(3)], "blank or absent leaf 3"),
    ([ExternalInit(b"a"), GroupContextExtensions(())], "not allowed in an external commit"),
    ([ExternalInit(b"a"), ReInit(b"g", 1, 1, ())], "not allowed in an external commit"),
    ([ExternalInit(b"a"), PreSharedKey(psk_id()), PreSharedKey(psk_id())], "appears twice"),
])
def test_external_commit_invalid_lists(proposals: list[Proposal], message: str) -> None:
    group = Group(3)
    with pytest.raises(ProposalValidationError, match=message):
        validate_external(group, external(proposals))


def test_external_commit_add_and_reference_rejected() -> None:
    group = Group(3)
    add = Add(make_client(b"x").key_package)
    with pytest.raises(ProposalValidationError, match="not allowed in an external commit"):
        validate_external(group, external([ExternalInit(b"a"), add]))
    by_reference = SenderProposal(Remove(1), Sender.member(1), b"ref")
    with pytest.raises(ProposalValidationError, match="by reference"):
        validate_external(group, [*external([ExternalInit(b"a")]), by_reference])


def test_committer_sender_type_must_match_commit_kind() -> None:
    group = Group(2)
    with pytest.raises(UsageError):
        validate_proposal_list(CS, [], committer=Sender.member(0), tree=group.tree,
                               group_context=group.context, now=NOW, is_external_commit=True)
    with pytest.raises(UsageError):
        validate_proposal_list(CS, [], committer=JOINER, tree=group.tree,
                               group_context=group.context, now=NOW)


# -- applying proposals (§12.3) --------------------------------------------------------------


def test_apply_add_uses_leftmost_blank_and_extends() -> None:
    group = Group(4)
    group.tree.remove_leaf(LeafIndex(1))
    before = group.tree.copy()
    first, second = make_client(b"a").key_package, make_client(b"b").key_package
    outcome = apply_proposals(CS, [by_value(Add(first)), by_value(Add(second))],
                              tree=group.tree, group_context=group.context)
    assert outcome.added == (LeafIndex(1), LeafIndex(4))
    assert outcome.added_key_packages == (first, second)
    assert outcome.tree.n_leaves == 8
    assert outcome.tree.leaf(LeafIndex(1)) == first.leaf_node
    assert outcome.tree.leaf(LeafIndex(4)) == second.leaf_node
    assert group.tree == before  # the input tree is untouched


def test_apply_add_marks_unmerged_at_non_blank_ancestors() -> None:
    group = Group(3)
    # Give the root (node 3) and node 5 parent values, leave node 1 blank.
    group.tree.set_node(NodeIndex(3), ParentNode(b"root key"))
    group.tree.set_node(NodeIndex(5), ParentNode(b"right key"))
    kp = make_client(b"new").key_package
    outcome = apply_proposals(CS, [by_value(Add(kp))], tree=group.tree,
                              group_context=group.context)
    assert outcome.added == (LeafIndex(3),)
    for index in (3, 5):
        parent = outcome.tree.node(NodeIndex(index))
        assert isinstance(parent, ParentNode) and parent.unmerged_leaves == (3,)
    assert outcome.tree.node(NodeIndex(1)) is None


def test_apply_remove_blanks_path_and_truncates() -> None:
    group = Group(5)  # 8 leaves, members 0..4
    group.tree.set_node(NodeIndex(7), ParentNode(b"root key"))
    group.tree.set_node(NodeIndex(11), ParentNode(b"right key"))
    outcome = apply_proposals(CS, [by_value(Remove(4))], tree=group.tree,
                              group_context=group.context)
    assert outcome.removed == (LeafIndex(4),)
    assert outcome.tree.n_leaves == 4
    assert outcome.tree.node(NodeIndex(3)) is None  # the new root was on node 7's spot
    assert group.tree.n_leaves == 8


def test_apply_update_replaces_leaf_and_blanks_direct_path() -> None:
    group = Group(4)
    group.tree.set_node(NodeIndex(3), ParentNode(b"root key"))
    group.tree.set_node(NodeIndex(1), ParentNode(b"left key"))
    group.tree.set_node(NodeIndex(5), ParentNode(b"right key"))
    leaf = update_leaf(group.clients[1], 1)
    outcome = apply_proposals(CS, [by_ref(Update(leaf), Sender.member(1))],
                              tree=group.tree, group_context=group.context)
    assert outcome.tree.leaf(LeafIndex(1)) == leaf
    assert outcome.tree.node(NodeIndex(1)) is None
    assert outcome.tree.node(NodeIndex(3)) is None
    assert outcome.tree.node(NodeIndex(5)) == ParentNode(b"right key")


def test_apply_order_remove_before_add_and_everything_else() -> None:
    group = Group(4)
    kp = make_client(b"new").key_package
    gce = GroupContextExtensions((Extension(ExtensionType.APPLICATION_ID, b"app"),))
    psks = [psk_id(b"one"), psk_id(b"two")]
    proposals = [by_value(Add(kp)), by_value(PreSharedKey(psks[0])), by_value(Remove(2)),
                 by_value(gce), by_value(PreSharedKey(psks[1]))]
    outcome = apply_proposals(CS, proposals, tree=group.tree, group_context=group.context)
    assert outcome.added == (LeafIndex(2),)  # the Remove freed leaf 2 first
    assert outcome.tree.leaf(LeafIndex(2)) == kp.leaf_node
    assert outcome.extensions == gce.extensions
    assert outcome.psk_ids == tuple(psks)
    assert outcome.reinit is None and outcome.external_init is None


def test_apply_without_gce_keeps_extensions_and_notes_reinit_external_init() -> None:
    group = Group(2, extensions=(Extension(ExtensionType.APPLICATION_ID, b"app"),))
    reinit = ReInit(b"next", 1, CS.id, ())
    outcome = apply_proposals(CS, [by_value(reinit)], tree=group.tree,
                              group_context=group.context)
    assert outcome.extensions == group.context.extensions
    assert outcome.reinit == reinit
    outcome = apply_proposals(CS, external([ExternalInit(b"kem")]), tree=group.tree,
                              group_context=group.context)
    assert outcome.external_init == ExternalInit(b"kem")
    assert outcome.tree == group.tree


def test_apply_rejects_remove_of_blank_leaf() -> None:
    group = Group(4)
    group.tree.remove_leaf(LeafIndex(1))
    with pytest.raises(ProposalValidationError):
        apply_proposals(CS, [by_value(Remove(1))], tree=group.tree,
                        group_context=group.context)


# -- path_required (§12.4) -------------------------------------------------------------------


@pytest.mark.parametrize(("proposals", "required"), [
    ([], True),
    ([Add(KeyPackage(1, 1, b"", LeafNode(b"", b"", Credential.basic(b""), Capabilities(),
                                         LeafNodeSource.KEY_PACKAGE)))], False),
    ([PreSharedKey(psk_id())], False),
    ([ReInit(b"g", 1, 1, ())], False),
    ([PreSharedKey(psk_id()), Remove(1)], True),
    ([ExternalInit(b"")], True),
    ([GroupContextExtensions(())], True),
    ([Update(LeafNode(b"", b"", Credential.basic(b""), Capabilities(),
                      LeafNodeSource.UPDATE))], True),
])
def test_path_required(proposals: list[Proposal], required: bool) -> None:
    assert path_required([by_value(p) for p in proposals]) is required


# -- PSK resolution (§8.4) ---------------------------------------------------------------------


def test_psk_resolver_external_and_resumption_in_order() -> None:
    calls: list[tuple[bytes, int]] = []

    def resumption(group_id: bytes, epoch: int) -> bytes | None:
        calls.append((group_id, epoch))
        return b"resumption secret %d" % epoch if group_id == GROUP_ID else None

    resolver = PskResolver({b"ext": b"external secret"}, resumption)
    resumed = PreSharedKeyID(PSKType.RESUMPTION, b"\x00" * 32, psk_group_id=GROUP_ID,
                             psk_epoch=7)
    external_id = psk_id(b"ext")
    assert resolver.resolve([resumed, external_id]) == [
        (resumed, b"resumption secret 7"), (external_id, b"external secret")]
    assert calls == [(GROUP_ID, 7)]
    assert resolver.resolve([]) == []


def test_psk_resolver_missing_names_id_not_value() -> None:
    resolver = PskResolver({b"\x01\x02": b"the secret value"})
    with pytest.raises(ValidationError, match="0a0b") as info:
        resolver.resolve([psk_id(b"\x01\x02"), psk_id(b"\x0a\x0b")])
    assert "secret" not in str(info.value)
    unknown_group = PreSharedKeyID(PSKType.RESUMPTION, b"\x00" * 32, psk_group_id=b"\xab",
                                   psk_epoch=3)
    with pytest.raises(ValidationError, match="group ab epoch 3"):
        PskResolver().resolve([unknown_group])
    assert "secret" not in repr(resolver)


# -- external senders (§12.1.8) ------------------------------------------------------------------


def _senders_context(*senders: ExternalSender) -> GroupContext:
    ext = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(senders))
    return GroupContext(1, CS.id, GROUP_ID, 1, b"", b"", (ext,))


def test_external_sender_signature_key() -> None:
    context = _senders_context(ExternalSender(b"key 0", Credential.basic(b"a")),
                               ExternalSender(b"key 1", Credential.basic(b"b")))
    sender = Sender(SenderType.EXTERNAL, sender_index=1)
    for proposal in (Remove(0), PreSharedKey(psk_id()), ReInit(b"g", 1, 1, ()),
                     GroupContextExtensions(()), Add(make_client(b"x").key_package)):
        assert external_proposal_signature_key(sender, ContentType.PROPOSAL, proposal,
                                               group_context=context) == b"key 1"


@pytest.mark.parametrize(("sender_index", "content_type", "proposal", "message"), [
    (2, ContentType.PROPOSAL, Remove(0), "index 2 is not in"),
    (0, ContentType.COMMIT, None, "may only send proposals"),
    (0, ContentType.PROPOSAL, ExternalInit(b""), "may not send a external_init"),
])
def test_external_sender_rejections(sender_index: int, content_type: ContentType,
                                    proposal: Proposal | None, message: str) -> None:
    context = _senders_context(ExternalSender(b"key 0", Credential.basic(b"a")))
    with pytest.raises(ValidationError, match=message):
        external_proposal_signature_key(Sender(SenderType.EXTERNAL, sender_index=sender_index),
                                        content_type, proposal, group_context=context)


def test_external_sender_without_extension_or_malformed() -> None:
    sender = Sender(SenderType.EXTERNAL, sender_index=0)
    bare = GroupContext(1, CS.id, GROUP_ID, 1, b"", b"", ())
    with pytest.raises(ValidationError, match="no external_senders"):
        external_proposal_signature_key(sender, ContentType.PROPOSAL, Remove(0),
                                        group_context=bare)
    broken = replace(bare, extensions=(Extension(ExtensionType.EXTERNAL_SENDERS, b"\x05"),))
    with pytest.raises(ValidationError, match="malformed external_senders"):
        external_proposal_signature_key(sender, ContentType.PROPOSAL, Remove(0),
                                        group_context=broken)


def test_new_member_proposal_signer_is_key_package_leaf() -> None:
    context = GroupContext(1, CS.id, GROUP_ID, 1, b"", b"", ())
    sender = Sender(SenderType.NEW_MEMBER_PROPOSAL)
    kp = make_client(b"joiner").key_package
    assert external_proposal_signature_key(sender, ContentType.PROPOSAL, Add(kp),
                                           group_context=context) == kp.leaf_node.signature_key
    with pytest.raises(ValidationError, match="only send an add"):
        external_proposal_signature_key(sender, ContentType.PROPOSAL, Remove(0),
                                        group_context=context)
    with pytest.raises(ValidationError, match="may only send proposals"):
        external_proposal_signature_key(sender, ContentType.APPLICATION, None,
                                        group_context=context)
    with pytest.raises(UsageError):
        external_proposal_signature_key(Sender.member(0), ContentType.PROPOSAL, Remove(0),
                                        group_context=context)


def test_validate_external_senders_extension() -> None:
    good = _senders_context(ExternalSender(b"k", Credential.basic(b"a")))
    validate_external_senders(good.extensions)
    bad = _senders_context(ExternalSender(b"k", Credential.x509(())))
    with pytest.raises(ValidationError, match="external sender 0: credential rejected"):
        validate_external_senders(bad.extensions)
