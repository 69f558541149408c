"""Wire-level interop with ts-mls (RFC 9420): everything ts-mls produces must parse,
re-encode byte-exactly and verify with our code, and a Welcome ts-mls makes for a
KeyPackage built here must open with our key schedule.

Every assertion compares our computation with ts-mls's output; nothing is hard-coded.
These checks need only the committed layers (messages, framing, tree, schedule,
crypto), not the group API.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from mls.codec import decode, encode
from mls.crypto import CipherSuite, suite
from mls.enums import (
    ContentType,
    CredentialType,
    ExtensionType,
    LeafNodeSource,
    ProposalType,
    ProtocolVersion,
    SenderType,
    WireFormat,
)
from mls.errors import CryptoError
from mls.framing.private import protect_private, unprotect_private
from mls.framing.public import authenticate, verify_content_signature
from mls.framing.refs import key_package_ref
from mls.framing.welcome import decrypt_group_info, open_group_secrets, verify_group_info
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalPub, ExternalSenders
from mls.messages.extensions import GroupContext, find_extension
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    confirmed_transcript_hash_input,
    interim_transcript_hash_input,
)
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import Capabilities, LeafNode, Lifetime
from mls.messages.proposals import Commit
from mls.messages.welcome import GroupInfo, Welcome
from mls.schedule.key_schedule import (
    derive_welcome_secret,
    epoch_from_joiner,
    export_secret,
    external_key_pair,
)
from mls.schedule.secret_tree import SecretTree
from mls.schedule.transcript import (
    confirmed_transcript_hash,
    interim_transcript_hash,
    verify_confirmation_tag,
)
from mls.tree.math import LeafIndex, NodeIndex, common_ancestor, leaf_to_node
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import private_keys_from_path_secret
from mls.tree.validation import validate_tree, verify_leaf_signature
from tests.interop.peer import TsMlsError, TsMlsPeer

#: Every suite both implementations support (ts-mls 1.6.4 runs 1-7 with the pinned
#: optional dependencies).
SUITES = (1, 2, 3, 4, 5, 6, 7)

GROUP_ID = b"interop-wire-group"

_Body = TypeVar("_Body", PublicMessage, PrivateMessage, Welcome, GroupInfo, KeyPackage)


def _message(data: bytes) -> MLSMessage:
    """Decode with our codec and insist on a byte-exact re-encoding."""
    message = decode(MLSMessage, data)
    assert encode(message) == data
    return message


def _body(data: bytes, cls: type[_Body]) -> _Body:
    """The decoded (and byte-exactly re-encoded) message body, of the expected type."""
    body = _message(data).body
    assert isinstance(body, cls)
    return body


@dataclass(frozen=True)
class Epoch:
    """What ts-mls reports about one member's state in one epoch."""

    group_context: bytes
    confirmed_transcript_hash: bytes
    confirmation_tag: bytes
    ratchet_tree: bytes

    @classmethod
    def of(cls, state: dict[str, Any]) -> Epoch:
        return cls(state["group_context"], state["confirmed_transcript_hash"],
                   state["confirmation_tag"], state["ratchet_tree"])


@dataclass(frozen=True)
class Run:
    """A short ts-mls-only session, recorded once per suite (module scope)."""

    suite: int
    key_packages: tuple[bytes, ...]
    # (commit, epoch before, epoch after, group_info after, ratchet tree after)
    commits: tuple[tuple[bytes, Epoch, Epoch, bytes, bytes], ...]
    welcome: bytes
    application: bytes
    private_commit: bytes
    proposal: bytes
    group_info_with_tree: bytes
    tree_for_group_info_with_tree: bytes
    tree_after_remove: bytes

    def all_messages(self) -> list[bytes]:
        return [*self.key_packages, *(c[0] for c in self.commits),
                *(c[3] for c in self.commits), self.welcome, self.application,
                self.private_commit, self.proposal, self.group_info_with_tree]


@pytest.fixture(scope="module", params=SUITES, ids=lambda s: f"suite{s}")
def run(request: pytest.FixtureRequest, ts_mls: TsMlsPeer) -> Run:
    suite_id: int = request.param
    alice = ts_mls.create_group(suite_id, b"alice", GROUP_ID)
    bob_kp = ts_mls.generate_key_package(suite_id, b"bob")
    carol_kp = ts_mls.generate_key_package(suite_id, b"carol")

    before_add = Epoch.of(ts_mls.state(alice))
    add = ts_mls.add(alice, [bob_kp.key_package, carol_kp.key_package])
    assert add.welcome is not None
    after_add = Epoch.of(ts_mls.state(alice))
    bob = ts_mls.join(bob_kp.handle, add.welcome, add.ratchet_tree)
    application = ts_mls.encrypt(alice, b"hello from ts-mls")
    assert ts_mls.decrypt(bob, application) == b"hello from ts-mls"

    update = ts_mls.update(bob)  # empty commit: carries an UpdatePath
    assert update.has_path
    ts_mls.process(alice, update.commit)
    after_update = Epoch.of(ts_mls.state(alice))

    private_commit = ts_mls.remove(alice, [2], public=False)
    ts_mls.process(bob, private_commit.commit)
    proposal = ts_mls.propose_remove(bob, 0)
    group_info_with_tree, tree = ts_mls.group_info(bob, ratchet_tree_extension=True)
    for handle in (alice, bob, carol_kp.handle):
        ts_mls.free(handle)
    return Run(
        suite=suite_id,
        key_packages=(bob_kp.key_package, carol_kp.key_package),
        commits=(
            (add.commit, before_add, after_add, add.group_info, add.ratchet_tree),
            (update.commit, after_add, after_update, update.group_info, update.ratchet_tree),
        ),
        welcome=add.welcome,
        application=application,
        private_commit=private_commit.commit,
        proposal=proposal,
        group_info_with_tree=group_info_with_tree,
        tree_for_group_info_with_tree=tree,
        tree_after_remove=private_commit.ratchet_tree,
    )


# -- (a) decoding and byte-exact re-encoding -------------------------------------------


def test_every_ts_mls_message_round_trips(run: Run) -> None:
    wire_formats = [_message(data).wire_format for data in run.all_messages()]
    assert set(wire_formats) == set(WireFormat)


def test_message_contents_are_what_ts_mls_said(run: Run) -> None:
    assert _body(run.application, PrivateMessage).content_type == ContentType.APPLICATION
    assert _body(run.private_commit, PrivateMessage).content_type == ContentType.COMMIT
    assert _body(run.proposal, PublicMessage).content.content_type == ContentType.PROPOSAL
    for commit, *_ in run.commits:
        body = _message(commit).body
        assert isinstance(body, PublicMessage)
        assert body.content.content_type == ContentType.COMMIT
        assert body.membership_tag is not None


def test_ratchet_trees_round_trip(run: Run) -> None:
    """Including the tree after removing the last leaf: no trailing blank nodes
    (RFC 9420 §12.4.3.3)."""
    cs = suite(run.suite)
    for tree_bytes in (*(c[4] for c in run.commits), run.tree_after_remove):
        tree = RatchetTree.from_bytes(cs, tree_bytes)
        assert tree.to_bytes() == tree_bytes
        validate_tree(tree, GROUP_ID)
    assert RatchetTree.from_bytes(cs, run.tree_after_remove).n_leaves == 2


# -- (b) KeyPackage signatures ---------------------------------------------------------


def test_key_packages_verify(run: Run) -> None:
    cs = suite(run.suite)
    for data in run.key_packages:
        kp = _message(data).body
        assert isinstance(kp, KeyPackage)
        assert kp.cipher_suite == run.suite
        leaf = kp.leaf_node
        assert cs.verify_with_label(leaf.signature_key, b"KeyPackageTBS", kp.tbs_bytes(),
                                    kp.signature)
        assert verify_leaf_signature(cs, leaf, None, None)
        tampered = kp.replace(init_key=bytes(len(kp.init_key)))
        assert not cs.verify_with_label(leaf.signature_key, b"KeyPackageTBS",
                                        tampered.tbs_bytes(), kp.signature)


def test_welcome_names_our_key_package_refs(run: Run) -> None:
    """The Welcome's new_member values are ts-mls's KeyPackageRefs (RFC 9420 §5.2)."""
    cs = suite(run.suite)
    welcome = _message(run.welcome).body
    assert isinstance(welcome, Welcome)
    assert [s.new_member for s in welcome.secrets] == [
        key_package_ref(cs, _body(kp, KeyPackage)) for kp in run.key_packages]


# -- (c) GroupInfo signatures, ratchet trees, tree hashes, transcript ----------------


def _check_group_info(cs: CipherSuite, group_info_bytes: bytes, tree_bytes: bytes) -> GroupInfo:
    group_info = _message(group_info_bytes).body
    assert isinstance(group_info, GroupInfo)
    tree = RatchetTree.from_bytes(cs, tree_bytes)
    signer = tree.leaf(LeafIndex(group_info.signer))
    assert signer is not None
    verify_group_info(cs, group_info, signer.signature_key)
    validate_tree(tree, group_info.group_context.group_id)
    assert tree.tree_hash() == group_info.group_context.tree_hash
    return group_info


def test_group_infos_verify_and_trees_validate(run: Run) -> None:
    cs = suite(run.suite)
    for _, _, after, group_info_bytes, tree_bytes in run.commits:
        group_info = _check_group_info(cs, group_info_bytes, tree_bytes)
        assert encode(group_info.group_context) == after.group_context
        assert group_info.confirmation_tag == after.confirmation_tag


def test_ratchet_tree_extension_matches_tree(run: Run) -> None:
    cs = suite(run.suite)
    group_info = _check_group_info(cs, run.group_info_with_tree,
                                   run.tree_for_group_info_with_tree)
    extension = find_extension(group_info.extensions, ExtensionType.RATCHET_TREE)
    assert extension is not None
    assert extension.extension_data == run.tree_for_group_info_with_tree


def test_commit_signatures_and_transcript_hashes(run: Run) -> None:
    """FramedContentTBS signatures (§6.1) and the transcript hash chain (§8.2)."""
    cs = suite(run.suite)
    for commit_bytes, before, after, _, _ in run.commits:
        message = _message(commit_bytes).body
        assert isinstance(message, PublicMessage)
        content = message.content
        assert content.sender.sender_type == SenderType.MEMBER
        tree_before = RatchetTree.from_bytes(cs, before.ratchet_tree)
        sender_leaf = tree_before.leaf(LeafIndex(content.sender.leaf_index))
        assert sender_leaf is not None
        authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, message.auth)
        verify_content_signature(cs, sender_leaf.signature_key, authenticated,
                                 before.group_context)
        interim = interim_transcript_hash(
            cs, before.confirmed_transcript_hash,
            interim_transcript_hash_input(before.confirmation_tag))
        confirmed = confirmed_transcript_hash(
            cs, interim, confirmed_transcript_hash_input(authenticated))
        assert confirmed == after.confirmed_transcript_hash
        assert message.auth.confirmation_tag == after.confirmation_tag


# -- (d) a Welcome for a KeyPackage built here ------------------------------------------


@dataclass(frozen=True)
class OurKeyPackage:
    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes


def _our_key_package(cs: CipherSuite, identity: bytes) -> OurKeyPackage:
    """A KeyPackage built from our structs (RFC 9420 §10), signed with our suite."""
    signature_priv, signature_pub = cs.generate_signature_key_pair(os.urandom)
    encryption_priv, encryption_pub = cs.generate_hpke_key_pair(os.urandom)
    init_priv, init_pub = cs.generate_hpke_key_pair(os.urandom)
    leaf = LeafNode(
        encryption_key=encryption_pub,
        signature_key=signature_pub,
        credential=Credential.basic(identity),
        capabilities=Capabilities(versions=(ProtocolVersion.MLS10,),
                                  cipher_suites=(cs.id,),
                                  credentials=(CredentialType.BASIC,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(0, 2**63 - 1),
    )
    leaf = leaf.replace(signature=cs.sign_with_label(signature_priv, b"LeafNodeTBS",
                                                     leaf.tbs_bytes()))
    unsigned = KeyPackage(ProtocolVersion.MLS10, cs.id, init_pub, leaf)
    key_package = unsigned.replace(signature=cs.sign_with_label(
        signature_priv, b"KeyPackageTBS", unsigned.tbs_bytes()))
    return OurKeyPackage(key_package, init_priv, encryption_priv, signature_priv)


def _group_key_package(cs: CipherSuite, identity: bytes) -> OurKeyPackage:
    """The same through mls.group.key_package.create_key_package (RFC 9420 §10)."""
    from mls.group.key_package import create_key_package

    signature_priv, _ = cs.generate_signature_key_pair(os.urandom)
    bundle = create_key_package(cs, Credential.basic(identity), signature_priv,
                                rng=os.urandom, now=int(time.time()))
    return OurKeyPackage(bundle.key_package, bundle.init_priv, bundle.encryption_priv,
                         bundle.signature_priv)


BUILDERS = {"by_hand": _our_key_package, "create_key_package": _group_key_package}


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("suite_id", SUITES, ids=lambda s: f"suite{s}")
def test_welcome_for_our_key_package(ts_mls: TsMlsPeer, suite_id: int, builder: str) -> None:
    """ts-mls adds a KeyPackage of ours in a commit that also removes a member, so the
    Welcome carries a path secret; we open it with our key schedule, check every
    secret ts-mls can show us, and exchange application messages both ways."""
    cs = suite(suite_id)
    ours = BUILDERS[builder](cs, b"python")
    kp_bytes = encode(MLSMessage.wrap(ours.key_package))
    alice = ts_mls.create_group(suite_id, b"alice", GROUP_ID)
    bob_kp = ts_mls.generate_key_package(suite_id, b"bob")
    ts_mls.add(alice, [bob_kp.key_package])
    result = ts_mls.commit(alice, adds=(kp_bytes,), removes=(1,))
    assert result.welcome is not None and result.has_path

    welcome = _message(result.welcome).body
    assert isinstance(welcome, Welcome)
    group_secrets = open_group_secrets(cs, welcome, ours.key_package,
                                       key_package_ref(cs, ours.key_package), ours.init_priv)
    assert group_secrets.psks == ()
    assert group_secrets.path_secret is not None
    welcome_secret = derive_welcome_secret(cs, group_secrets.joiner_secret, b"")
    group_info = decrypt_group_info(cs, welcome_secret, welcome.encrypted_group_info)
    context_bytes = encode(group_info.group_context)
    state = ts_mls.state(alice)
    assert context_bytes == state["group_context"]

    tree = RatchetTree.from_bytes(cs, result.ratchet_tree)
    _, secrets = epoch_from_joiner(cs, group_secrets.joiner_secret, b"", context_bytes)
    verify_confirmation_tag(cs, secrets.confirmation_key,
                            group_info.group_context.confirmed_transcript_hash,
                            group_info.confirmation_tag)
    signer = tree.leaf(LeafIndex(group_info.signer))
    assert signer is not None
    verify_group_info(cs, group_info, signer.signature_key)
    validate_tree(tree, GROUP_ID)
    assert tree.tree_hash() == group_info.group_context.tree_hash

    our_leaf = tree.find_leaf_by_signature_key(ours.key_package.leaf_node.signature_key)
    assert our_leaf is not None
    assert tree.leaf(our_leaf) == ours.key_package.leaf_node
    start = common_ancestor(leaf_to_node(our_leaf), leaf_to_node(LeafIndex(group_info.signer)))
    private_keys_from_path_secret(cs, tree, our_leaf, NodeIndex(start),
                                  group_secrets.path_secret)

    assert secrets.epoch_authenticator == ts_mls.epoch_authenticator(alice)
    label, context = b"interop exporter", b"some context"
    assert export_secret(cs, secrets.exporter_secret, label, context, 42) == ts_mls.export(
        alice, label, context, 42)
    external_pub = find_extension(_body(result.group_info, GroupInfo).extensions,
                                  ExtensionType.EXTERNAL_PUB)
    assert external_pub is not None
    assert decode(ExternalPub, external_pub.extension_data).external_pub == external_key_pair(
        cs, secrets.external_secret)[1]

    _exchange_application_messages(ts_mls, alice, cs, tree, our_leaf, secrets, context_bytes,
                                   ours.signature_priv)
    ts_mls.free(alice)


def _exchange_application_messages(ts_mls: TsMlsPeer, alice: str, cs: CipherSuite,
                                   tree: RatchetTree, our_leaf: LeafIndex, secrets: Any,
                                   context_bytes: bytes, signature_priv: bytes) -> None:
    """PrivateMessage protection (RFC 9420 §6.3) in both directions."""
    secret_tree = SecretTree(cs, secrets.encryption_secret, tree.n_leaves)

    def signature_key_for(leaf: int) -> bytes | None:
        node = tree.leaf(LeafIndex(leaf))
        return None if node is None else node.signature_key

    from_ts = ts_mls.encrypt(alice, b"to python", authenticated_data=b"aad")
    message = _message(from_ts).body
    assert isinstance(message, PrivateMessage)
    authenticated = unprotect_private(cs, message, secret_tree=secret_tree,
                                      sender_data_secret=secrets.sender_data_secret,
                                      group_context=context_bytes,
                                      signature_key_for=signature_key_for)
    assert authenticated.content.content == b"to python"
    assert authenticated.content.authenticated_data == b"aad"

    group_context = decode(GroupContext, context_bytes)
    content = FramedContent(group_context.group_id, group_context.epoch,
                            Sender.member(our_leaf), b"py-aad", ContentType.APPLICATION,
                            b"to ts-mls")
    ours = authenticate(cs, signature_priv, WireFormat.PRIVATE_MESSAGE, content, context_bytes)
    protected = protect_private(cs, ours, secret_tree=secret_tree,
                                sender_data_secret=secrets.sender_data_secret,
                                reuse_guard=os.urandom(4), padding=7)
    assert ts_mls.decrypt(alice, encode(MLSMessage.wrap(protected))) == b"to ts-mls"


# -- known deviations of ts-mls 1.6.4 from RFC 9420 ---------------------------------------
# The driver works around the first two by default; these tests pin the raw behaviour so
# that a ts-mls upgrade that fixes it shows up here (then drop the workaround).


@pytest.mark.parametrize("suite_id", (2, 5, 7), ids=lambda s: f"suite{s}")
def test_deviation_ts_mls_ecdsa_signature_keys_are_compressed(ts_mls: TsMlsPeer,
                                                              suite_id: int) -> None:
    """RFC 9420 §5.1.1: ECDSA SignaturePublicKey is an UncompressedPointRepresentation.
    ts-mls's own keygen emits compressed SEC1 points, which we (correctly) reject."""
    cs = suite(suite_id)
    native = _message(ts_mls.generate_key_package(
        suite_id, b"native", signature_keys="native").key_package).body
    rfc = _message(ts_mls.generate_key_package(suite_id, b"rfc").key_package).body
    assert isinstance(native, KeyPackage) and isinstance(rfc, KeyPackage)
    native_key = native.leaf_node.signature_key
    rfc_key = rfc.leaf_node.signature_key
    assert native_key[0] in (2, 3) and rfc_key[0] == 4
    assert len(rfc_key) == 2 * len(native_key) - 1  # 0x04 || x || y versus 0x0? || x
    with pytest.raises(CryptoError):
        cs.verify_with_label(native_key, b"KeyPackageTBS", native.tbs_bytes(), native.signature)


@pytest.mark.parametrize("suite_id", (1, 2), ids=lambda s: f"suite{s}")
def test_deviation_ts_mls_external_pub_is_a_bare_key(ts_mls: TsMlsPeer, suite_id: int) -> None:
    """RFC 9420 §12.4.3.2: the external_pub extension holds ``struct { HPKEPublicKey
    external_pub; }`` (opaque<V>).  ts-mls writes the bare key and its external join
    reads only that form, so it cannot join from an RFC-encoded GroupInfo."""
    alice = ts_mls.create_group(suite_id, b"alice", GROUP_ID)
    rfc_info, tree = ts_mls.group_info(alice)
    native_info, _ = ts_mls.group_info(alice, external_pub="native")
    rfc_ext = find_extension(_body(rfc_info, GroupInfo).extensions, ExtensionType.EXTERNAL_PUB)
    native_ext = find_extension(_body(native_info, GroupInfo).extensions,
                                ExtensionType.EXTERNAL_PUB)
    assert rfc_ext is not None and native_ext is not None
    assert native_ext.extension_data == decode(ExternalPub, rfc_ext.extension_data).external_pub
    assert encode(ExternalPub(native_ext.extension_data)) == rfc_ext.extension_data
    with pytest.raises(TsMlsError, match="external_join failed"):
        ts_mls.external_join(suite_id, b"eve", rfc_info, tree)
    handle, commit = ts_mls.external_join(suite_id, b"eve", native_info, tree)
    assert _body(commit, PublicMessage).content.sender.sender_type == (
        SenderType.NEW_MEMBER_COMMIT)
    ts_mls.free(handle)
    ts_mls.free(alice)


def test_deviation_ts_mls_group_context_extensions_commit_has_no_path(
        ts_mls: TsMlsPeer) -> None:
    """RFC 9420 §12.4: a commit covering a GroupContextExtensions proposal MUST carry a
    path ("path_required" column).  ts-mls 1.6.4 omits it, so a conforming receiver
    rejects ts-mls's GroupContextExtensions commits."""
    alice = ts_mls.create_group(1, b"alice", GROUP_ID)
    bob = ts_mls.generate_key_package(1, b"bob")
    ts_mls.add(alice, [bob.key_package])
    empty_external_senders = encode(ExternalSenders(()))
    result = ts_mls.commit(alice, group_context_extensions=(
        (ExtensionType.EXTERNAL_SENDERS, empty_external_senders),))
    message = _message(result.commit).body
    assert isinstance(message, PublicMessage)
    commit = message.content.content
    assert isinstance(commit, Commit)
    assert [p.proposal.proposal_type for p in commit.proposals if p.proposal is not None
            ] == [ProposalType.GROUP_CONTEXT_EXTENSIONS]
    assert len(commit.proposals) == 1
    assert commit.path is None
    ts_mls.free(alice)
    ts_mls.free(bob.handle)
