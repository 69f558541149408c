"""Wire structs of RFC 9420 §§5-12 (mls/messages/): round trips and robustness.

Every struct has a Hypothesis strategy; each gets an encode->decode->encode property.
Mutated encodings (truncated, extended, bit-flipped) must raise DecodeError or, for a
bit flip, decode to a value that re-encodes to exactly the mutated bytes.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mls import codec
from mls.codec import Reader, Writer
from mls.enums import (
    ContentType,
    CredentialType,
    LeafNodeSource,
    ProposalOrRefType,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
    SenderType,
    WireFormat,
)
from mls.errors import DecodeError, UsageError
from mls.messages.credentials import Credential
from mls.messages.extension_types import (
    ApplicationId,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    RequiredCapabilities,
    decode_external_senders,
    encode_external_senders,
)
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import (
    AuthenticatedContent,
    Content,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderData,
    confirmed_transcript_hash_input,
    decode_private_message_content,
    encode_private_content_aad,
    encode_private_message_content,
    encode_sender_data_aad,
    framed_content_tbs,
    interim_transcript_hash_input,
)
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import Capabilities, LeafNode, Lifetime
from mls.messages.proposals import (
    Add,
    Commit,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
    decode_proposal,
    encode_proposal,
)
from mls.messages.psk import PreSharedKeyID
from mls.messages.tree_nodes import (
    HPKECiphertext,
    Node,
    ParentNode,
    TreeNode,
    UpdatePath,
    UpdatePathNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
)
from mls.messages.welcome import EncryptedGroupSecrets, GroupInfo, GroupSecrets, Welcome
from mls.vectors import vectors_dir

# --------------------------------------------------------------------------- strategies

blobs = st.binary(max_size=6)
u8s = st.integers(0, 0xFF)
u16s = st.integers(0, 0xFFFF)
u32s = st.integers(0, 0xFFFF_FFFF)
u64s = st.integers(0, (1 << 64) - 1)


def tuples_of(strategy: st.SearchStrategy[Any], max_size: int = 2) -> st.SearchStrategy[Any]:
    return st.lists(strategy, max_size=max_size).map(tuple)


extensions = st.builds(Extension, u16s, blobs)
extension_lists = tuples_of(extensions)
credentials = st.one_of(
    st.builds(Credential, st.just(CredentialType.BASIC), identity=blobs),
    st.builds(Credential, st.just(CredentialType.X509), certificates=tuples_of(blobs)),
)
capabilities = st.builds(Capabilities, tuples_of(u16s), tuples_of(u16s), tuples_of(u16s),
                         tuples_of(u16s), tuples_of(u16s))
lifetimes = st.builds(Lifetime, u64s, u64s)


@st.composite
def leaf_nodes(draw: st.DrawFn) -> LeafNode:
    source = draw(st.sampled_from(LeafNodeSource))
    lifetime = draw(lifetimes) if source == LeafNodeSource.KEY_PACKAGE else None
    parent_hash = draw(blobs) if source == LeafNodeSource.COMMIT else b""
    return LeafNode(draw(blobs), draw(blobs), draw(credentials), draw(capabilities), source,
                    lifetime, parent_hash, draw(extension_lists), draw(blobs))


key_packages = st.builds(KeyPackage, u16s, u16s, blobs, leaf_nodes(), extension_lists, blobs)
parent_nodes = st.builds(ParentNode, blobs, blobs, tuples_of(u32s, 3))
nodes = st.builds(Node, st.one_of(leaf_nodes(), parent_nodes))


@st.composite
def ratchet_trees(draw: st.DrawFn) -> tuple[TreeNode, ...]:
    size = draw(st.integers(1, 7))
    tree: list[TreeNode] = []
    for index in range(size):
        node_strategy: st.SearchStrategy[TreeNode] = (
            leaf_nodes() if index % 2 == 0 else parent_nodes)
        blank = index < size - 1 and draw(st.booleans())
        tree.append(None if blank else draw(node_strategy))
    return tuple(tree)


hpke_ciphertexts = st.builds(HPKECiphertext, blobs, blobs)
update_path_nodes = st.builds(UpdatePathNode, blobs, tuples_of(hpke_ciphertexts))
update_paths = st.builds(UpdatePath, leaf_nodes(), tuples_of(update_path_nodes))
psk_ids = st.one_of(
    st.builds(PreSharedKeyID, st.just(PSKType.EXTERNAL), blobs, psk_id=blobs),
    st.builds(PreSharedKeyID, st.just(PSKType.RESUMPTION), blobs,
              usage=st.sampled_from(ResumptionPSKUsage), psk_group_id=blobs, psk_epoch=u64s),
)
group_contexts = st.builds(GroupContext, u16s, u16s, blobs, u64s, blobs, blobs, extension_lists)

adds = st.builds(Add, key_packages)
updates = st.builds(Update, leaf_nodes())
removes = st.builds(Remove, u32s)
pre_shared_keys = st.builds(PreSharedKey, psk_ids)
reinits = st.builds(ReInit, blobs, u16s, u16s, extension_lists)
external_inits = st.builds(ExternalInit, blobs)
gce_proposals = st.builds(GroupContextExtensions, extension_lists)
proposals: st.SearchStrategy[Proposal] = st.one_of(
    adds, updates, removes, pre_shared_keys, reinits, external_inits, gce_proposals)
proposal_or_refs = st.one_of(st.builds(ProposalOrRef, proposal=proposals),
                             st.builds(ProposalOrRef, reference=blobs))
commits = st.builds(Commit, tuples_of(proposal_or_refs), st.none() | update_paths)

senders = st.one_of(
    st.builds(Sender, st.just(SenderType.MEMBER), leaf_index=u32s),
    st.builds(Sender, st.just(SenderType.EXTERNAL), sender_index=u32s),
    st.builds(Sender, st.sampled_from([SenderType.NEW_MEMBER_PROPOSAL,
                                       SenderType.NEW_MEMBER_COMMIT])),
)


def contents_for(content_type: ContentType) -> st.SearchStrategy[Content]:
    if content_type == ContentType.APPLICATION:
        return blobs
    if content_type == ContentType.PROPOSAL:
        return proposals
    return commits


def auth_data_for(content_type: ContentType) -> st.SearchStrategy[FramedContentAuthData]:
    tag = blobs if content_type == ContentType.COMMIT else st.none()
    return st.builds(FramedContentAuthData, blobs, tag)


@st.composite
def framed_contents(draw: st.DrawFn) -> FramedContent:
    content_type = draw(st.sampled_from(ContentType))
    return FramedContent(draw(blobs), draw(u64s), draw(senders), draw(blobs), content_type,
                         draw(contents_for(content_type)))


@st.composite
def authenticated_contents(draw: st.DrawFn) -> AuthenticatedContent:
    content = draw(framed_contents())
    auth = draw(auth_data_for(content.content_type))
    wire_format = draw(st.sampled_from([WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE]))
    return AuthenticatedContent(wire_format, content, auth)


@st.composite
def public_messages(draw: st.DrawFn) -> PublicMessage:
    content = draw(framed_contents())
    auth = draw(auth_data_for(content.content_type))
    is_member = content.sender.sender_type == SenderType.MEMBER
    return PublicMessage(content, auth, draw(blobs) if is_member else None)


private_messages = st.builds(PrivateMessage, blobs, u64s, st.sampled_from(ContentType), blobs,
                             blobs, blobs)
sender_datas = st.builds(SenderData, u32s, u32s, st.binary(min_size=4, max_size=4))
encrypted_group_secrets = st.builds(EncryptedGroupSecrets, blobs, hpke_ciphertexts)
welcomes = st.builds(Welcome, u16s, tuples_of(encrypted_group_secrets), blobs)
group_secrets = st.builds(GroupSecrets, blobs, st.none() | blobs, tuples_of(psk_ids))
group_infos = st.builds(GroupInfo, group_contexts, extension_lists, blobs, u32s, blobs)
mls_messages = st.one_of(
    [st.builds(MLSMessage.wrap, body)
     for body in (public_messages(), private_messages, welcomes, group_infos, key_packages)])
external_pubs = st.builds(ExternalPub, blobs)
external_senders = st.builds(ExternalSender, blobs, credentials)
external_sender_lists = st.builds(ExternalSenders, tuples_of(external_senders))
required_capabilities = st.builds(RequiredCapabilities, tuples_of(u16s), tuples_of(u16s),
                                  tuples_of(u16s))
application_ids = st.builds(ApplicationId, blobs)

# ----------------------------------------------------------------- encode/decode pairs


@dataclass(frozen=True)
class Codec:
    """How to turn one kind of value into bytes and back (decode must be strict)."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def struct_codec(cls: Any) -> Codec:
    return Codec(codec.encode, lambda data: codec.decode(cls, data))


def encode_bare_proposal(proposal: Proposal) -> bytes:
    w = Writer()
    encode_proposal(w, proposal)
    return w.getvalue()


def decode_bare_proposal(data: bytes) -> Proposal:
    r = Reader(data)
    proposal = decode_proposal(r)
    r.finish()
    return proposal


def auth_codec(content_type: ContentType) -> Codec:
    def encode(auth: FramedContentAuthData) -> bytes:
        w = Writer()
        auth.encode_for(w, content_type)
        return w.getvalue()

    def decode(data: bytes) -> FramedContentAuthData:
        r = Reader(data)
        auth = FramedContentAuthData.decode_for(r, content_type)
        r.finish()
        return auth

    return Codec(encode, decode)


RATCHET_TREE = Codec(encode_ratchet_tree, decode_ratchet_tree)
EXTERNAL_SENDER_LIST = Codec(encode_external_senders, decode_external_senders)

ROUND_TRIPS: dict[str, tuple[st.SearchStrategy[Any], Codec]] = {
    "Extension": (extensions, struct_codec(Extension)),
    "Credential": (credentials, struct_codec(Credential)),
    "Capabilities": (capabilities, struct_codec(Capabilities)),
    "Lifetime": (lifetimes, struct_codec(Lifetime)),
    "LeafNode": (leaf_nodes(), struct_codec(LeafNode)),
    "KeyPackage": (key_packages, struct_codec(KeyPackage)),
    "ParentNode": (parent_nodes, struct_codec(ParentNode)),
    "Node": (nodes, struct_codec(Node)),
    "ratchet_tree": (ratchet_trees(), RATCHET_TREE),
    "HPKECiphertext": (hpke_ciphertexts, struct_codec(HPKECiphertext)),
    "UpdatePathNode": (update_path_nodes, struct_codec(UpdatePathNode)),
    "UpdatePath": (update_paths, struct_codec(UpdatePath)),
    "PreSharedKeyID": (psk_ids, struct_codec(PreSharedKeyID)),
    "GroupContext": (group_contexts, struct_codec(GroupContext)),
    "Add": (adds, struct_codec(Add)),
    "Update": (updates, struct_codec(Update)),
    "Remove": (removes, struct_codec(Remove)),
    "PreSharedKey": (pre_shared_keys, struct_codec(PreSharedKey)),
    "ReInit": (reinits, struct_codec(ReInit)),
    "ExternalInit": (external_inits, struct_codec(ExternalInit)),
    "GroupContextExtensions": (gce_proposals, struct_codec(GroupContextExtensions)),
    "Proposal": (proposals, Codec(encode_bare_proposal, decode_bare_proposal)),
    "ProposalOrRef": (proposal_or_refs, struct_codec(ProposalOrRef)),
    "Commit": (commits, struct_codec(Commit)),
    "Sender": (senders, struct_codec(Sender)),
    "FramedContent": (framed_contents(), struct_codec(FramedContent)),
    "FramedContentAuthData[application]": (auth_data_for(ContentType.APPLICATION),
                                           auth_codec(ContentType.APPLICATION)),
    "FramedContentAuthData[commit]": (auth_data_for(ContentType.COMMIT),
                                      auth_codec(ContentType.COMMIT)),
    "AuthenticatedContent": (authenticated_contents(), struct_codec(AuthenticatedContent)),
    "PublicMessage": (public_messages(), struct_codec(PublicMessage)),
    "PrivateMessage": (private_messages, struct_codec(PrivateMessage)),
    "SenderData": (sender_datas, struct_codec(SenderData)),
    "EncryptedGroupSecrets": (encrypted_group_secrets, struct_codec(EncryptedGroupSecrets)),
    "Welcome": (welcomes, struct_codec(Welcome)),
    "GroupSecrets": (group_secrets, struct_codec(GroupSecrets)),
    "GroupInfo": (group_infos, struct_codec(GroupInfo)),
    "MLSMessage": (mls_messages, struct_codec(MLSMessage)),
    "ExternalPub": (external_pubs, struct_codec(ExternalPub)),
    "ExternalSender": (external_senders, struct_codec(ExternalSender)),
    "ExternalSenders": (external_sender_lists, struct_codec(ExternalSenders)),
    "external_senders list": (tuples_of(external_senders), EXTERNAL_SENDER_LIST),
    "RequiredCapabilities": (required_capabilities, struct_codec(RequiredCapabilities)),
    "ApplicationId": (application_ids, struct_codec(ApplicationId)),
}

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
@FAST
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    strategy, pair = ROUND_TRIPS[name]
    value = data.draw(strategy, label=name)
    encoded = pair.encode(value)
    decoded = pair.decode(encoded)
    assert decoded == value
    assert pair.encode(decoded) == encoded


@FAST
@given(content=framed_contents(), data=st.data())
def test_private_message_content_round_trip(content: FramedContent, data: st.DataObject) -> None:
    auth = data.draw(auth_data_for(content.content_type))
    padding = data.draw(st.integers(0, 16))
    plaintext = encode_private_message_content(content.content_type, content.content, auth,
                                               padding)
    assert plaintext.endswith(bytes(padding))
    assert decode_private_message_content(content.content_type, plaintext) == (
        content.content, auth)


# ------------------------------------------------------------------------- robustness

FUZZED: dict[str, tuple[st.SearchStrategy[Any], Codec]] = {
    name: ROUND_TRIPS[name]
    for name in ("MLSMessage", "KeyPackage", "Welcome", "GroupInfo", "Commit", "ratchet_tree")
}


def assert_decode_error_or_canonical(pair: Codec, mutated: bytes) -> None:
    """Decoding either raises DecodeError or yields a value encoding to ``mutated``."""
    try:
        value = pair.decode(mutated)
    except DecodeError:
        return
    assert pair.encode(value) == mutated


@pytest.mark.parametrize("name", sorted(FUZZED))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_encodings_raise_only_decode_error(name: str, data: st.DataObject) -> None:
    strategy, pair = FUZZED[name]
    encoded = pair.encode(data.draw(strategy, label=name))
    cut = data.draw(st.integers(0, len(encoded) - 1), label="truncate at")
    with pytest.raises(DecodeError):
        pair.decode(encoded[:cut])
    extra = data.draw(u8s, label="extra byte")
    with pytest.raises(DecodeError):
        pair.decode(encoded + bytes([extra]))
    bit = data.draw(st.integers(0, 8 * len(encoded) - 1), label="flipped bit")
    flipped = bytearray(encoded)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert_decode_error_or_canonical(pair, bytes(flipped))


def first_messages_vector() -> dict[str, str]:
    with (vectors_dir() / "messages.json").open() as fh:
        case: dict[str, str] = json.load(fh)[0]
    return case


@pytest.mark.parametrize("field", ["mls_welcome", "mls_group_info", "mls_key_package",
                                   "public_message_commit", "private_message", "commit",
                                   "ratchet_tree"])
def test_every_truncation_and_byte_flip_of_an_official_vector(field: str) -> None:
    pair = RATCHET_TREE if field == "ratchet_tree" else (
        struct_codec(Commit) if field == "commit" else struct_codec(MLSMessage))
    encoded = bytes.fromhex(first_messages_vector()[field])
    assert pair.encode(pair.decode(encoded)) == encoded
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            pair.decode(encoded[:cut])
    for index in range(len(encoded)):
        flipped = bytearray(encoded)
        flipped[index] ^= 1 << (index % 8)
        assert_decode_error_or_canonical(pair, bytes(flipped))


# ---------------------------------------------------------------- specific rejections


def basic_leaf(source: LeafNodeSource = LeafNodeSource.UPDATE) -> LeafNode:
    lifetime = Lifetime(0, 1) if source == LeafNodeSource.KEY_PACKAGE else None
    parent_hash = b"ph" if source == LeafNodeSource.COMMIT else b""
    return LeafNode(b"enc", b"sig", Credential.basic(b"alice"), Capabilities(), source,
                    lifetime, parent_hash, (), b"signature")


def test_unknown_credential_type_is_a_decode_error_naming_the_type() -> None:
    with pytest.raises(DecodeError, match="4660"):
        codec.decode(Credential, b"\x12\x34\x00")
    with pytest.raises(UsageError):
        codec.encode(Credential(0x1234))


def test_unknown_proposal_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="proposal"):
        decode_bare_proposal(b"\x0a\x0a\x00")


def test_unknown_proposal_or_ref_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        codec.decode(ProposalOrRef, b"\x03\x00")


def test_proposal_or_ref_holds_exactly_one_alternative() -> None:
    assert ProposalOrRef(reference=b"r").type == ProposalOrRefType.REFERENCE
    assert ProposalOrRef(proposal=Remove(1)).type == ProposalOrRefType.PROPOSAL
    with pytest.raises(UsageError):
        ProposalOrRef()
    with pytest.raises(UsageError):
        ProposalOrRef(proposal=Remove(1), reference=b"r")


def test_unknown_leaf_node_source_is_a_decode_error() -> None:
    encoded = bytearray(codec.encode(basic_leaf(LeafNodeSource.UPDATE)))
    source_at = encoded.index(LeafNodeSource.UPDATE, len(b"\x03enc\x03sig"))
    encoded[source_at] = 9
    with pytest.raises(DecodeError):
        codec.decode(LeafNode, bytes(encoded))


def test_leaf_node_tbs_binds_group_and_index_for_update_and_commit() -> None:
    kp_leaf = basic_leaf(LeafNodeSource.KEY_PACKAGE)
    assert kp_leaf.tbs_bytes() == codec.encode(kp_leaf)[: -len(b"\x09signature")]
    for source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT):
        leaf = basic_leaf(source)
        prefix = codec.encode(leaf)[: -len(b"\x09signature")]
        assert leaf.tbs_bytes(b"group", 5) == prefix + b"\x05group" + b"\x00\x00\x00\x05"
        with pytest.raises(UsageError):
            leaf.tbs_bytes()
    assert kp_leaf.without_signature().signature == b""
    assert kp_leaf.replace(signature_key=b"k").signature_key == b"k"


def test_key_package_leaf_without_lifetime_cannot_be_encoded() -> None:
    leaf = basic_leaf(LeafNodeSource.KEY_PACKAGE).replace(lifetime=None)
    with pytest.raises(UsageError):
        codec.encode(leaf)


def test_key_package_and_group_info_tbs_drop_only_the_signature() -> None:
    kp = KeyPackage(1, 1, b"init", basic_leaf(LeafNodeSource.KEY_PACKAGE), (), b"kpsig")
    assert codec.encode(kp) == kp.tbs_bytes() + b"\x05kpsig"
    gi = GroupInfo(GroupContext(1, 1, b"g", 0, b"t", b"c"), (), b"tag", 3, b"gisig")
    assert codec.encode(gi) == gi.tbs_bytes() + b"\x05gisig"


def test_ratchet_tree_with_blank_last_node_is_rejected() -> None:
    leaf = basic_leaf(LeafNodeSource.KEY_PACKAGE)
    good = encode_ratchet_tree([leaf])
    assert decode_ratchet_tree(good) == (leaf,)
    with pytest.raises(DecodeError, match="blank"):
        decode_ratchet_tree(encode_ratchet_tree([leaf, None, None]))
    with pytest.raises(DecodeError):
        decode_ratchet_tree(encode_ratchet_tree([]))


def test_ratchet_tree_nodes_must_sit_at_matching_parity() -> None:
    leaf = basic_leaf(LeafNodeSource.KEY_PACKAGE)
    parent = ParentNode(b"pk")
    with pytest.raises(DecodeError, match="parent"):
        decode_ratchet_tree(encode_ratchet_tree([parent]))
    with pytest.raises(DecodeError, match="leaf"):
        decode_ratchet_tree(encode_ratchet_tree([leaf, leaf]))


def test_optional_node_presence_octet_2_is_rejected() -> None:
    encoded = bytearray(encode_ratchet_tree([basic_leaf(LeafNodeSource.KEY_PACKAGE)]))
    encoded[1] = 2  # the presence octet follows the one-byte length
    with pytest.raises(DecodeError):
        decode_ratchet_tree(bytes(encoded))


def sample_welcome_message() -> MLSMessage:
    return MLSMessage.wrap(Welcome(1, (), b"info"))


def test_mls_message_rejects_other_versions_and_unknown_wire_formats() -> None:
    encoded = codec.encode(sample_welcome_message())
    assert encoded[:4] == b"\x00\x01\x00\x03"
    for version in (0, 2):
        with pytest.raises(DecodeError, match="version"):
            codec.decode(MLSMessage, bytes([0, version]) + encoded[2:])
    for wire_format in (0, 6, 0x0A0A):
        with pytest.raises(DecodeError):
            codec.decode(MLSMessage, encoded[:2] + wire_format.to_bytes(2, "big") + encoded[4:])


def test_mls_message_body_must_match_wire_format() -> None:
    message = MLSMessage(ProtocolVersion.MLS10, WireFormat.GROUP_INFO, Welcome(1, (), b""))
    with pytest.raises(UsageError):
        codec.encode(message)


def framed(content_type: ContentType, content: Content,
           sender: Sender | None = None) -> FramedContent:
    return FramedContent(b"group", 7, sender or Sender.member(2), b"aad", content_type, content)


def test_framed_content_must_match_its_content_type() -> None:
    with pytest.raises(UsageError):
        codec.encode(framed(ContentType.COMMIT, b"app data"))
    with pytest.raises(UsageError):
        codec.encode(framed(ContentType.APPLICATION, Remove(1)))


def test_unknown_content_and_sender_types_are_decode_errors() -> None:
    encoded = bytearray(codec.encode(framed(ContentType.APPLICATION, b"x")))
    content_type_at = len(b"\x05group") + 8 + 5 + 4
    assert encoded[content_type_at] == ContentType.APPLICATION
    encoded[content_type_at] = 4
    with pytest.raises(DecodeError):
        codec.decode(FramedContent, bytes(encoded))
    with pytest.raises(DecodeError):
        codec.decode(Sender, b"\x05")


def test_confirmation_tag_presence_follows_content_type() -> None:
    with pytest.raises(UsageError):
        codec.encode(PublicMessage(framed(ContentType.COMMIT, Commit()),
                                   FramedContentAuthData(b"s"), b"m"))
    with pytest.raises(UsageError):
        codec.encode(PublicMessage(framed(ContentType.APPLICATION, b"x"),
                                   FramedContentAuthData(b"s", b"tag"), b"m"))


def test_membership_tag_presence_follows_sender_type() -> None:
    content = framed(ContentType.PROPOSAL, Remove(1), Sender(SenderType.EXTERNAL, sender_index=1))
    auth = FramedContentAuthData(b"s")
    assert codec.decode(PublicMessage, codec.encode(PublicMessage(content, auth))).membership_tag \
        is None
    with pytest.raises(UsageError):
        codec.encode(PublicMessage(content, auth, b"m"))
    with pytest.raises(UsageError):
        codec.encode(PublicMessage(framed(ContentType.APPLICATION, b"x"), auth))


def test_framed_content_tbs_appends_context_for_member_and_new_member_commit() -> None:
    context = codec.encode(GroupContext(1, 1, b"g", 0, b"t", b"c"))
    member = framed(ContentType.APPLICATION, b"x")
    prefix = b"\x00\x01\x00\x02" + codec.encode(member)
    assert framed_content_tbs(WireFormat.PRIVATE_MESSAGE, member, context) == prefix + context
    with pytest.raises(UsageError):
        framed_content_tbs(WireFormat.PRIVATE_MESSAGE, member, None)
    commit = framed(ContentType.COMMIT, Commit(), Sender(SenderType.NEW_MEMBER_COMMIT))
    assert framed_content_tbs(WireFormat.PUBLIC_MESSAGE, commit, context).endswith(context)
    external = framed(ContentType.PROPOSAL, Remove(0), Sender(SenderType.EXTERNAL))
    assert framed_content_tbs(WireFormat.PUBLIC_MESSAGE, external, context) == (
        b"\x00\x01\x00\x01" + codec.encode(external))


def test_transcript_hash_inputs() -> None:
    content = framed(ContentType.COMMIT, Commit())
    authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content,
                                         FramedContentAuthData(b"sig", b"tag"))
    assert confirmed_transcript_hash_input(authenticated) == (
        b"\x00\x01" + codec.encode(content) + b"\x03sig")
    assert interim_transcript_hash_input(b"tag") == b"\x03tag"


def test_aad_helpers_follow_field_order() -> None:
    assert encode_sender_data_aad(b"g", 1, ContentType.COMMIT) == (
        b"\x01g" + (1).to_bytes(8, "big") + b"\x03")
    assert encode_private_content_aad(b"g", 1, ContentType.PROPOSAL, b"ad") == (
        b"\x01g" + (1).to_bytes(8, "big") + b"\x02" + b"\x02ad")


def test_private_message_content_padding_must_be_zero() -> None:
    auth = FramedContentAuthData(b"sig")
    plaintext = encode_private_message_content(ContentType.APPLICATION, b"hi", auth, 3)
    assert decode_private_message_content(ContentType.APPLICATION, plaintext) == (b"hi", auth)
    with pytest.raises(DecodeError, match="padding"):
        decode_private_message_content(ContentType.APPLICATION, plaintext[:-1] + b"\x01")
    with pytest.raises(UsageError):
        encode_private_message_content(ContentType.APPLICATION, b"hi", auth, -1)


def test_reuse_guard_is_four_raw_bytes() -> None:
    assert codec.encode(SenderData(1, 2, b"abcd")) == (
        b"\x00\x00\x00\x01\x00\x00\x00\x02abcd")
    with pytest.raises(UsageError):
        codec.encode(SenderData(1, 2, b"abc"))
    with pytest.raises(DecodeError):
        codec.decode(SenderData, b"\x00\x00\x00\x01\x00\x00\x00\x02abc")


def test_group_secrets_keep_secrets_out_of_repr() -> None:
    secrets = GroupSecrets(b"JOINER-SECRET", b"PATH-SECRET", ())
    assert "JOINER" not in repr(secrets)
    assert "PATH" not in repr(secrets)
    assert codec.encode(secrets)[len(b"\x0dJOINER-SECRET"):][:2] == b"\x01\x0b"


def test_mls_messages_package_does_not_import_crypto() -> None:
    package = Path(__file__).resolve().parents[1] / "mls" / "messages"
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(name.startswith("mls.crypto") for name in names), source.name
