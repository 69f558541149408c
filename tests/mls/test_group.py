"""The group state machine (RFC 9420 §8, §11, §12): creation, state serialization,
application messages, and rejection of bad input without any change of state."""

from __future__ import annotations

import dataclasses

import pytest

from mls.codec import decode, encode
from mls.crypto import suite
from mls.crypto.suite import Rng
from mls.enums import (
    ContentType,
    ExtensionType,
    LeafNodeSource,
    PSKType,
    ResumptionPSKUsage,
    WireFormat,
)
from mls.errors import (
    ConfirmationTagError,
    CryptoError,
    DecodeError,
    EpochError,
    GenerationError,
    MembershipTagError,
    ProposalValidationError,
    SignatureError,
    UsageError,
)
from mls.framing.public import membership_tag, sign_content
from mls.group.config import GroupConfig
from mls.group.events import ApplicationEvent, OwnMessageEvent, ProposalEvent
from mls.group.external import external_sender_proposal
from mls.group.group import Group
from mls.group.state import MAX_SENT_REMEMBERED, GroupState
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender, encode_external_senders
from mls.messages.extensions import Extension
from mls.messages.framing import (
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
)
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
)
from mls.messages.psk import PreSharedKeyID
from tests.mls.fixtures import (
    CS,
    assert_rejected,
    deliver,
    make_member,
    make_rng,
    three_members,
)

# -- creation and state ------------------------------------------------------------------

def test_create_one_member_group() -> None:
    rng = make_rng(1)
    group = Group.create(make_member(b"alice", rng), group_id=b"g", rng=rng)
    assert group.epoch == 0
    assert [index for index, _ in group.members()] == [0]
    assert len(group.epoch_authenticator()) == CS.hash_len
    assert group.export_secret(b"label", b"ctx", 17) != group.export_secret(b"other", b"ctx", 17)


def test_lone_member_commit_with_path() -> None:
    rng = make_rng(14)
    group = Group.create(make_member(b"alice", rng), group_id=b"g", rng=rng)
    staged = group.commit(rng=rng)
    assert staged.welcome is None and staged.event.updated == (0,)
    merged = group.merge(staged)
    assert merged.epoch == 1 and group.epoch == 0
    assert merged.epoch_authenticator() != group.epoch_authenticator()
    leaf = next(leaf for _, leaf in merged.members())
    assert leaf.encryption_key != next(leaf for _, leaf in group.members()).encryption_key


def test_state_round_trip_is_exact_and_repr_hides_secrets() -> None:
    rng = make_rng(2)
    alice, bob, _ = three_members(rng)
    alice, message = alice.encrypt(b"hello", rng=rng)
    bob, _ = bob.process(message)
    for group in (alice, bob):
        data = group.to_bytes()
        restored = Group.from_bytes(data)
        assert restored.to_bytes() == data
        assert restored.epoch_authenticator() == group.epoch_authenticator()
        text = repr(group) + repr(group.state)
        for secret in (group.state.signature_priv, group.state.secrets.init_secret,
                       group.state.secrets.exporter_secret):
            assert secret.hex() not in text and repr(secret) not in text


def test_state_from_bytes_rejects_bad_version_and_trailing_bytes() -> None:
    rng = make_rng(3)
    data = Group.create(make_member(b"a", rng), group_id=b"g", rng=rng).to_bytes()
    with pytest.raises(DecodeError):
        GroupState.from_bytes(b"\x09" + data[1:])
    with pytest.raises(DecodeError):
        GroupState.from_bytes(data + b"\x00")


# -- application messages ----------------------------------------------------------------

def test_application_messages_out_of_order_and_replay() -> None:
    rng = make_rng(4)
    alice, bob, _ = three_members(rng)
    messages = []
    for text in (b"one", b"two", b"three"):
        alice, message = alice.encrypt(text, rng=rng, authenticated_data=b"ad")
        messages.append(message)
    received = []
    for index in (2, 0, 1):
        bob, event = bob.process(messages[index])
        assert isinstance(event, ApplicationEvent)
        assert event.sender == alice.own_leaf and event.authenticated_data == b"ad"
        received.append(event.data)
    assert received == [b"three", b"one", b"two"]
    assert_rejected(bob, messages[0], GenerationError)


def test_application_message_beyond_forward_distance() -> None:
    rng = make_rng(5)
    config = GroupConfig(max_forward_distance=2)
    alice, bob, _ = three_members(rng, config)
    message = None
    for _ in range(4):
        alice, message = alice.encrypt(b"x", rng=rng)
    assert message is not None
    assert_rejected(bob, message, GenerationError)


def test_late_application_message_from_retained_past_epoch() -> None:
    rng = make_rng(6)
    alice, bob, carol = three_members(rng, GroupConfig(max_past_epochs=1))
    alice, late = alice.encrypt(b"late", rng=rng)
    staged = carol.commit(rng=rng)
    carol, alice, bob = deliver(staged, carol, alice, bob)
    bob, event = bob.process(late)
    assert isinstance(event, ApplicationEvent) and event.data == b"late"
    assert event.epoch == bob.epoch - 1
    assert_rejected(bob, late, GenerationError)
    staged = carol.commit(rng=rng)
    carol, alice, bob = deliver(staged, carol, alice, bob)
    alice2, old = alice, late
    assert_rejected(bob, old, EpochError)
    assert alice2.epoch == bob.epoch


def test_padding_is_applied_and_removed() -> None:
    rng = make_rng(7)
    alice, bob, _ = three_members(rng, GroupConfig(padding_size=64))
    alice, message = alice.encrypt(b"abc", rng=rng)
    assert isinstance(message.body, PrivateMessage)
    assert len(message.body.ciphertext) % 64 == 16  # padded plaintext + AEAD tag
    bob, event = bob.process(message)
    assert isinstance(event, ApplicationEvent) and event.data == b"abc"


# -- bad input: a specific error and no change of state ----------------------------------

def _resign_membership(group: Group, message: PublicMessage,
                       auth: FramedContentAuthData) -> MLSMessage:
    """Re-MAC a modified PublicMessage with the sender's membership key so that only
    the modified part is wrong."""
    state = group.state
    tag = membership_tag(state.cs, state.secrets.membership_key, message.content, auth,
                         state.context_bytes())
    return MLSMessage.wrap(PublicMessage(message.content, auth, tag))


def test_tampered_signature_membership_and_confirmation_tags() -> None:
    rng = make_rng(8)
    alice, bob, carol = three_members(rng)
    staged = alice.commit(rng=rng)
    public = staged.message.body
    assert isinstance(public, PublicMessage) and public.membership_tag is not None
    bad_tag = bytes([public.membership_tag[0] ^ 1]) + public.membership_tag[1:]
    assert_rejected(bob, MLSMessage.wrap(dataclasses.replace(public, membership_tag=bad_tag)),
                    MembershipTagError)
    signature = bytearray(public.auth.signature)
    signature[0] ^= 1
    bad_signature = dataclasses.replace(public.auth, signature=bytes(signature))
    assert_rejected(bob, _resign_membership(alice, public, bad_signature), SignatureError)
    confirmation = public.auth.confirmation_tag
    assert confirmation is not None
    bad_confirmation = dataclasses.replace(
        public.auth, confirmation_tag=bytes([confirmation[0] ^ 1]) + confirmation[1:])
    assert_rejected(bob, _resign_membership(alice, public, bad_confirmation),
                    ConfirmationTagError)
    bob, _ = bob.process(staged.message)  # the genuine commit still applies
    assert bob.epoch_authenticator() == alice.merge(staged).epoch_authenticator()
    assert carol.epoch == bob.epoch - 1


def test_tampered_ciphertext_and_wrong_epoch() -> None:
    rng = make_rng(9)
    alice, bob, carol = three_members(rng)
    alice, message = alice.encrypt(b"secret", rng=rng)
    private = message.body
    assert isinstance(private, PrivateMessage)
    flipped = bytes([private.ciphertext[-1] ^ 1])
    tampered = dataclasses.replace(private, ciphertext=private.ciphertext[:-1] + flipped)
    assert_rejected(bob, MLSMessage.wrap(tampered), CryptoError)
    future = dataclasses.replace(private, epoch=private.epoch + 1)
    assert_rejected(bob, MLSMessage.wrap(future), EpochError)
    staged = carol.commit(rng=rng)
    public = staged.message.body
    assert isinstance(public, PublicMessage)
    stale = dataclasses.replace(public, content=dataclasses.replace(public.content, epoch=0))
    assert_rejected(bob, MLSMessage.wrap(stale), EpochError)
    bob, event = bob.process(message)
    assert isinstance(event, ApplicationEvent) and event.data == b"secret"


def test_invalid_proposal_list_is_rejected() -> None:
    rng = make_rng(10)
    alice, bob, _ = three_members(rng)
    before = alice.to_bytes()
    with pytest.raises(ProposalValidationError):
        alice.commit(rng=rng, remove=[7])
    with pytest.raises(ProposalValidationError):
        alice.commit(rng=rng, remove=[1, 1])
    assert alice.to_bytes() == before
    # A signed, MACed Commit in which the committer removes itself (RFC 9420 §12.2).
    state = alice.state
    commit = Commit((ProposalOrRef(proposal=Remove(state.own_leaf)),))
    content = FramedContent(state.group_id, state.epoch, Sender.member(state.own_leaf), b"",
                            ContentType.COMMIT, commit)
    signature = sign_content(state.cs, state.signature_priv, WireFormat.PUBLIC_MESSAGE,
                             content, state.context_bytes())
    auth = FramedContentAuthData(signature, bytes(state.cs.hash_len))
    tag = membership_tag(state.cs, state.secrets.membership_key, content, auth,
                         state.context_bytes())
    assert_rejected(bob, MLSMessage.wrap(PublicMessage(content, auth, tag)),
                    ProposalValidationError)


def test_own_commit_must_be_merged_not_processed() -> None:
    rng = make_rng(11)
    alice, bob, _ = three_members(rng)
    staged = alice.commit(rng=rng)
    assert_rejected(alice, staged.message, UsageError)
    other = bob.commit(rng=rng)
    with pytest.raises(UsageError):
        alice.merge(other)


def test_garbage_bytes_are_a_decode_error() -> None:
    rng = make_rng(12)
    alice, _, _ = three_members(rng)
    assert_rejected(alice, b"\x00\x01\x00\x01\xff", DecodeError)


def test_decode_of_commit_message_round_trips() -> None:
    rng = make_rng(13)
    alice, bob, _ = three_members(rng)
    staged = alice.commit(rng=rng)
    data = encode(staged.message)
    assert encode(decode(MLSMessage, data)) == data
    bob, _ = bob.process(data)
    assert bob.epoch_authenticator() == alice.merge(staged).epoch_authenticator()


# -- proposals validated on receipt (RFC 9420 §12.1) --------------------------------------

def _bad_proposals(bob: Group, rng: Rng) -> list[tuple[str, Proposal]]:
    """Proposals that are invalid by themselves, whatever Commit would cover them."""
    own_leaf = next(leaf for index, leaf in bob.members() if index == bob.own_leaf)
    same_key = own_leaf.replace(leaf_node_source=LeafNodeSource.UPDATE, lifetime=None,
                                parent_hash=b"", signature=b"")
    same_key = same_key.replace(signature=CS.sign_with_label(
        bob.state.signature_priv, b"LeafNodeTBS", same_key.tbs_bytes(bob.group_id,
                                                                     bob.own_leaf)))
    other_suite_kp = make_member(b"dave", rng, suite(3)).key_package
    dave_kp = make_member(b"dave", rng).key_package
    forged_kp = dave_kp.replace(signature=bytes(len(dave_kp.signature)))
    bad_caps = Extension(ExtensionType.REQUIRED_CAPABILITIES, b"\xff")
    duplicated = (Extension(0x0001, b"a"), Extension(0x0001, b"b"))
    return [
        ("remove blank", Remove(7)),
        ("add other suite", Add(other_suite_kp)),
        ("add forged signature", Add(forged_kp)),
        ("update with key_package leaf", Update(own_leaf)),
        ("update keeping the encryption key", Update(same_key)),
        ("psk short nonce", PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, b"\x01",
                                                       psk_id=b"p"))),
        ("psk reinit usage", PreSharedKey(PreSharedKeyID(
            PSKType.RESUMPTION, bytes(CS.hash_len), usage=ResumptionPSKUsage.REINIT,
            psk_group_id=bob.group_id, psk_epoch=bob.epoch))),
        ("reinit old version", ReInit(b"n", 0, CS.id)),
        ("reinit unknown suite", ReInit(b"n", 1, 0x7777)),
        ("reinit duplicate extensions", ReInit(b"n", 1, CS.id, duplicated)),
        ("gce malformed required_capabilities", GroupContextExtensions((bad_caps,))),
        ("gce duplicate extensions", GroupContextExtensions(duplicated)),
        ("external init by reference", ExternalInit(b"kem output")),
    ]


@pytest.mark.parametrize("wire_format", [WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE])
def test_invalid_proposals_rejected_on_receipt(wire_format: WireFormat) -> None:
    rng = make_rng(20 + wire_format)
    config = GroupConfig(handshake_wire_format=wire_format)
    alice, bob, _ = three_members(rng, config)
    for name, proposal in _bad_proposals(bob, rng):
        bob, message = bob.propose(proposal, rng=rng)
        before = alice.to_bytes()
        with pytest.raises(ProposalValidationError):
            alice.process(message)
        assert alice.to_bytes() == before, name
    assert alice.state.pending == ()
    # A valid proposal after the rejected ones is still accepted.
    bob, message = bob.propose_update(rng=rng)
    alice, event = alice.process(message)
    assert isinstance(event, ProposalEvent) and len(alice.state.pending) == 1


def test_update_signed_for_another_leaf_rejected_on_receipt() -> None:
    rng = make_rng(22)
    alice, bob, carol = three_members(rng)
    carol, message = carol.propose_update(rng=rng)
    _, update_event = alice.process(message)
    assert isinstance(update_event, ProposalEvent)
    assert isinstance(update_event.proposal, Update)
    # Bob re-sends Carol's Update leaf as his own: the leaf signature covers leaf 2.
    bob, replayed = bob.propose(update_event.proposal, rng=rng)
    assert_rejected(alice, replayed, ProposalValidationError)


def test_external_sender_disallowed_type_rejected() -> None:
    rng = make_rng(23)
    ds_priv, ds_pub = CS.generate_signature_key_pair(rng)
    senders = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(
        [ExternalSender(ds_pub, Credential.basic(b"ds"))]))
    alice = Group.create(make_member(b"alice", rng), group_id=b"g", rng=rng,
                         extensions=(senders,))
    leaf = next(leaf for _, leaf in alice.members())
    message = external_sender_proposal(CS, alice.group_id, alice.epoch, 0, ds_priv,
                                       Update(leaf))
    assert_rejected(alice, message, ProposalValidationError)


# -- our own messages echoed by the delivery service ---------------------------------------

def test_echo_of_own_application_messages_and_proposals() -> None:
    rng = make_rng(30)
    config = GroupConfig(handshake_wire_format=WireFormat.PRIVATE_MESSAGE)
    alice, bob, carol = three_members(rng, config)
    alice, message = alice.encrypt(b"hello", rng=rng)
    before = alice.to_bytes()
    same, event = alice.process(message)
    assert isinstance(event, OwnMessageEvent)
    assert event.content_type == ContentType.APPLICATION and event.epoch == alice.epoch
    assert same.to_bytes() == before
    bob, event = bob.process(message)
    assert isinstance(event, ApplicationEvent) and event.data == b"hello"

    alice, proposal = alice.propose_update(rng=rng)
    same, event = alice.process(encode(proposal))
    assert isinstance(event, OwnMessageEvent) and event.content_type == ContentType.PROPOSAL
    assert same.to_bytes() == alice.to_bytes()
    bob, _ = bob.process(proposal)
    carol, _ = carol.process(proposal)

    # After the epoch changed, the echo of the old application message is still ours.
    staged = bob.commit(rng=rng)
    bob, alice, carol = deliver(staged, bob, alice, carol)
    _, event = alice.process(message)
    assert isinstance(event, OwnMessageEvent) and event.epoch == alice.epoch - 1
    assert Group.from_bytes(alice.to_bytes()).state.sent_messages == alice.state.sent_messages


def test_echo_of_own_public_proposal_and_commits() -> None:
    rng = make_rng(31)
    for wire_format in (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE):
        alice, _, _ = three_members(rng, GroupConfig(handshake_wire_format=wire_format))
        alice, proposal = alice.propose_remove(2, rng=rng)
        before = alice.to_bytes()
        same, event = alice.process(proposal)
        assert isinstance(event, OwnMessageEvent) and same.to_bytes() == before
        public = wire_format == WireFormat.PUBLIC_MESSAGE
        assert event.ref == (alice.state.pending[0].ref if public else None)
        staged = alice.commit(rng=rng)
        assert_rejected(alice, staged.message, UsageError)  # staged: merge it
        alice = alice.merge(staged)
        assert_rejected(alice, staged.message, EpochError)  # merged: stale


def test_sent_message_memory_is_bounded() -> None:
    rng = make_rng(32)
    alice, _, _ = three_members(rng)
    alice, first = alice.encrypt(b"0", rng=rng)
    for number in range(MAX_SENT_REMEMBERED):
        alice, _ = alice.encrypt(str(number).encode(), rng=rng)
    assert len(alice.state.sent_messages) == MAX_SENT_REMEMBERED
    assert_rejected(alice, first, GenerationError)


def test_state_version_1_still_reads() -> None:
    rng = make_rng(33)
    alice, _, _ = three_members(rng)
    current = alice.to_bytes()
    assert current[0] == 2 and current.endswith(b"\x00\x00")  # no reinit, nothing sent
    legacy = b"\x01" + current[1:-2]
    assert Group.from_bytes(legacy).to_bytes() == current
