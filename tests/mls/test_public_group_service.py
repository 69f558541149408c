"""What a delivery service reads of a PublicGroup beyond its verification steps
(RFC 9420 §6, §6.1, §8.2, §12.4.3.1): the state rebuilt from stored parts, the
epoch's proposals with their authenticated data, a Welcome checked against its
Commit, and the cleartext header it routes messages by."""

from __future__ import annotations

import dataclasses

import pytest

from mls.codec import encode
from mls.crypto import suite
from mls.enums import ContentType, SenderType, WireFormat
from mls.errors import DecodeError, PathSecretError, UsageError, ValidationError
from mls.group.events import ProposalEvent
from mls.group.external import external_sender_proposal
from mls.group.group import Group
from mls.group.public import PublicCommit, PublicGroup, message_header
from mls.messages.framing import MLSMessage, Sender
from mls.messages.proposals import Commit, Remove
from mls.messages.tree_nodes import HPKECiphertext
from mls.messages.welcome import Welcome
from tests.mls.fixtures import NOW, make_member, make_rng, three_members
from tests.mls.test_public_group import assert_in_step, commit_of, forge, observe, with_hub


def welcome_of(message: MLSMessage | None) -> Welcome:
    assert message is not None and isinstance(message.body, Welcome)
    return message.body


def test_from_parts_is_the_epoch_a_member_is_in() -> None:
    rng = make_rng(3000)
    alice, bob, _ = three_members(rng)
    state = alice.state
    public = PublicGroup.from_parts(state.context, alice.ratchet_tree(), state.confirmation_tag)
    assert public.to_bytes() == observe(alice).to_bytes()
    staged = bob.commit(rng=rng, force_path=True)
    public, commit = public.process(staged.message, now=NOW)
    assert isinstance(commit, PublicCommit)
    assert_in_step(public, bob.merge(staged), alice.process(staged.message)[0])

    with pytest.raises(ValidationError, match="tree_hash"):
        PublicGroup.from_parts(state.context, bob.merge(staged).ratchet_tree(),
                               state.confirmation_tag)
    with pytest.raises(ValidationError, match="length"):
        PublicGroup.from_parts(state.context, alice.ratchet_tree(), b"short")
    with pytest.raises(ValidationError, match="version"):
        PublicGroup.from_parts(dataclasses.replace(state.context, version=2),
                               alice.ratchet_tree(), state.confirmation_tag)
    with pytest.raises(DecodeError):
        PublicGroup.from_parts(state.context, b"\x01", state.confirmation_tag)


def test_proposals_carry_their_authenticated_data() -> None:
    rng = make_rng(3100)
    hub_priv, hub = with_hub(rng)
    alice_kp, bob_kp = make_member(b"alice", rng), make_member(b"bob", rng)
    alice = Group.create(alice_kp, group_id=b"reasons", rng=rng, extensions=(hub,))
    staged = alice.commit(rng=rng, add=[bob_kp.key_package], now=NOW)
    alice = alice.merge(staged)
    public = observe(alice)
    reason = b"\xa1freason\x64kick"
    remove = external_sender_proposal(suite(1), alice.group_id, alice.epoch, 0, hub_priv,
                                      Remove(1), authenticated_data=reason)
    public, event = public.process(remove, now=NOW)
    alice, member_event = alice.process(remove, now=NOW)
    assert staged.welcome is not None
    _, update = Group.join(staged.welcome, bob_kp, now=NOW).propose_update(rng=rng)
    public, _ = public.process(update, now=NOW)
    assert isinstance(event, ProposalEvent) and event == member_event
    assert event.authenticated_data == reason
    assert event.sender == Sender(SenderType.EXTERNAL, sender_index=0)
    listed = public.proposals()
    assert listed[0] == event and listed[0].proposal == Remove(1)
    assert listed[1].authenticated_data == b"" and listed[1].sender == Sender.member(1)
    assert [item.ref for item in listed] == [item.ref for item in public.pending]
    assert PublicGroup.from_bytes(public.to_bytes()).proposals() == listed


def test_welcome_must_name_exactly_the_added_key_packages() -> None:
    rng = make_rng(3200)
    alice, _, _ = three_members(rng)
    public = observe(alice)
    dave, erin = make_member(b"dave", rng), make_member(b"erin", rng)
    staged = alice.commit(rng=rng, add=[dave.key_package, erin.key_package], now=NOW)
    _, commit = public.process(staged.message, now=NOW)
    assert isinstance(commit, PublicCommit)
    welcome = welcome_of(staged.welcome)
    welcomed = commit.check_welcome(staged.welcome)
    assert welcomed == commit.added and commit.check_welcome(encode(staged.welcome)) == welcomed
    first, second = welcome.secrets
    wrong = {
        "missing": (None, "without a Welcome"),
        "one entry short": (dataclasses.replace(welcome, secrets=(first,)), "entries"),
        "an extra entry": (dataclasses.replace(welcome, secrets=(
            first, second, dataclasses.replace(first, new_member=bytes(32)))), "entries"),
        "a duplicate": (dataclasses.replace(welcome, secrets=(first, first)), "entries"),
        "a stranger": (dataclasses.replace(welcome, secrets=(
            first, dataclasses.replace(second, new_member=bytes(32)))), "entries"),
        "another suite": (dataclasses.replace(welcome, cipher_suite=2), "cipher suite"),
    }
    for case, (value, match) in wrong.items():
        with pytest.raises(ValidationError, match=match):
            commit.check_welcome(value)
            pytest.fail(case)
    with pytest.raises(UsageError):
        commit.check_welcome(MLSMessage.wrap(staged.group_info))

    plain = alice.commit(rng=rng, force_path=True)
    _, empty = public.process(plain.message, now=NOW)
    assert isinstance(empty, PublicCommit) and empty.check_welcome(None) == ()
    with pytest.raises(ValidationError, match="adds no KeyPackage"):
        empty.check_welcome(welcome)


def test_message_header_is_the_cleartext_routing_data() -> None:
    rng = make_rng(3300)
    alice, _, _ = three_members(rng)
    staged = alice.commit(rng=rng)
    header = message_header(encode(staged.message))
    assert (header.wire_format, header.group_id, header.epoch, header.content_type,
            header.sender) == (WireFormat.PUBLIC_MESSAGE, b"test group", 1,
                               ContentType.COMMIT, Sender.member(0))
    _, application = alice.encrypt(b"hi", rng=rng)
    header = message_header(application)
    assert (header.wire_format, header.content_type, header.sender) == (
        WireFormat.PRIVATE_MESSAGE, ContentType.APPLICATION, None)
    with pytest.raises(UsageError):
        message_header(MLSMessage.wrap(alice.group_info()))
    with pytest.raises(DecodeError):
        message_header(b"\x00\x01\x00")


def test_a_wrong_path_secret_is_for_its_receiver_to_find() -> None:
    """Alice's path secret for Bob replaced by another one sealed to Bob's key: the
    public checks pass, Bob finds the derived key is not the announced one."""
    rng = make_rng(3400)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    staged = alice.commit(rng=rng, force_path=True)
    path = commit_of(staged).path
    assert path is not None
    bob_key = bob.state.own_leaf_node().encryption_key
    provisional = dataclasses.replace(  # RFC 9420 §12.4.1: the old transcript hash
        staged.state.context,
        confirmed_transcript_hash=alice.state.context.confirmed_transcript_hash)
    kem_output, ciphertext = alice.state.cs.encrypt_with_label(
        bob_key, b"UpdatePathNode", encode(provisional), rng(32))
    first = dataclasses.replace(path.nodes[0], encrypted_path_secret=(
        HPKECiphertext(kem_output, ciphertext),))
    forged = forge(alice, Commit(path=dataclasses.replace(path, nodes=(first, *path.nodes[1:]))))
    _, commit = public.process(forged, now=NOW)
    assert isinstance(commit, PublicCommit)
    with pytest.raises(PathSecretError, match="derived key"):
        bob.process(forged, now=NOW)
