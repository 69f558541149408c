"""Multi-member scenarios of the group state machine (RFC 9420 §12): the life of a
three-member group, concurrent commits, external joins and resync, PSKs, private
handshakes, out-of-band ratchet trees."""

from __future__ import annotations

import pytest

from mls.crypto import suite
from mls.enums import ExtensionType, PSKType, ResumptionPSKUsage, SenderType, WireFormat
from mls.errors import EpochError, MLSError, SignatureError, UsageError, ValidationError
from mls.group.config import GroupConfig
from mls.group.events import ApplicationEvent, CommitEvent, ProposalEvent
from mls.group.external import external_sender_proposal, new_member_proposal
from mls.group.group import Group
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender, encode_external_senders
from mls.messages.extensions import Extension
from mls.messages.framing import PrivateMessage
from mls.messages.proposals import PreSharedKey, Remove
from mls.messages.psk import PreSharedKeyID
from tests.mls.fixtures import (
    NOW,
    assert_rejected,
    deliver,
    make_member,
    make_rng,
    three_members,
)


def _exchange(sender: Group, data: bytes, rng: object, *receivers: Group
              ) -> tuple[Group, list[Group]]:
    assert callable(rng)
    sender, message = sender.encrypt(data, rng=rng)
    out = []
    for receiver in receivers:
        receiver, event = receiver.process(message)
        assert isinstance(event, ApplicationEvent) and event.data == data
        assert event.sender == sender.own_leaf
        out.append(receiver)
    return sender, out


@pytest.mark.parametrize("suite_id", [1, 2, 3, 4, 5, 6, 7])
def test_three_member_lifecycle(suite_id: int) -> None:
    cs = suite(suite_id)
    rng = make_rng(100 + suite_id)
    alice_kp, bob_kp, carol_kp = (make_member(n, rng, cs) for n in (b"a", b"b", b"c"))
    alice = Group.create(alice_kp, group_id=b"lifecycle", rng=rng)
    staged = alice.commit(rng=rng, add=[bob_kp.key_package, carol_kp.key_package], now=NOW)
    assert staged.event.added == (1, 2) and staged.welcome is not None
    alice = alice.merge(staged)
    bob = Group.join(staged.welcome, bob_kp, now=NOW)
    carol = Group.join(staged.welcome, carol_kp, now=NOW)
    assert {g.epoch_authenticator() for g in (alice, bob, carol)} == {
        alice.epoch_authenticator()}
    alice, (bob, carol) = _exchange(alice, b"hello", rng, bob, carol)
    carol, (alice, bob) = _exchange(carol, b"hi all", rng, alice, bob)

    # Bob proposes an Update; Alice commits it by reference.
    bob, update = bob.propose_update(rng=rng)
    alice, event = alice.process(update)
    assert isinstance(event, ProposalEvent)
    carol, _ = carol.process(update)
    staged = alice.commit(rng=rng)
    assert staged.event.updated == (1, 0)
    alice, bob, carol = deliver(staged, alice, bob, carol)
    bob, (alice, carol) = _exchange(bob, b"updated", rng, alice, carol)

    # Carol removes Bob.
    staged = carol.commit(rng=rng, remove=[bob.own_leaf])
    carol, alice = deliver(staged, carol, alice)
    bob, event = bob.process(staged.message)
    assert isinstance(event, CommitEvent) and event.removed_self and not bob.active
    with pytest.raises(UsageError):
        bob.encrypt(b"still here?", rng=rng)
    assert [leaf for leaf, _ in alice.members()] == [0, 2]

    # An empty commit (always with a path) refreshes Alice's keys.
    staged = alice.commit(rng=rng)
    assert staged.event.updated == (0,)
    alice, carol = deliver(staged, alice, carol)
    alice, (carol,) = _exchange(alice, b"bye", rng, carol)


def test_concurrent_commits_loser_retries() -> None:
    rng = make_rng(200)
    alice, bob, carol = three_members(rng)
    alice_staged = alice.commit(rng=rng)
    bob_staged = bob.commit(rng=rng)
    # The delivery service accepts Alice's commit; Bob drops his and processes hers.
    alice, carol = deliver(alice_staged, alice, carol)
    bob, _ = bob.process(alice_staged.message)
    with pytest.raises(UsageError):
        bob.merge(bob_staged)
    assert_rejected(alice, bob_staged.message, EpochError)
    retry = bob.commit(rng=rng)
    bob, alice, carol = deliver(retry, bob, alice, carol)
    assert bob.epoch == alice.epoch == carol.epoch == 3


def test_external_join_and_resync() -> None:
    rng = make_rng(300)
    alice, bob, carol = three_members(rng)
    dave_signature_priv, _ = alice.state.cs.generate_signature_key_pair(rng)

    dave, commit = Group.join_external(alice.group_info(), credential=Credential.basic(b"d"),
                                       signature_priv=dave_signature_priv, rng=rng)
    assert commit.wire_format == WireFormat.PUBLIC_MESSAGE
    for member in (alice, bob, carol):
        processed, event = member.process(commit)
        assert isinstance(event, CommitEvent) and event.external
        assert event.added == (dave.own_leaf,)
        assert processed.epoch_authenticator() == dave.epoch_authenticator()
    alice, _ = alice.process(commit)
    bob, _ = bob.process(commit)
    carol, _ = carol.process(commit)
    dave, (alice, bob, carol) = _exchange(dave, b"new here", rng, alice, bob, carol)

    # Bob lost his state: he rejoins, removing his old leaf.
    group_info = alice.group_info(with_ratchet_tree=False)
    bob2, resync = Group.join_external(
        group_info, credential=Credential.basic(b"bob"), signature_priv=bob.state.signature_priv,
        rng=rng, ratchet_tree=alice.ratchet_tree(), resync_leaf=bob.own_leaf)
    for member in (alice, carol, dave):
        processed, event = member.process(resync)
        assert isinstance(event, CommitEvent) and event.removed == (bob.own_leaf,)
        assert processed.epoch_authenticator() == bob2.epoch_authenticator()
    _, event = bob.process(resync)
    assert isinstance(event, CommitEvent) and event.removed_self


def test_external_psk_and_resumption_psk_commits() -> None:
    rng = make_rng(400)
    psks = {b"psk-id": b"shared external secret"}
    alice, bob, carol = three_members(rng)
    alice, proposal = alice.propose_external_psk(b"psk-id", rng=rng)
    bob, _ = bob.process(proposal)
    carol, _ = carol.process(proposal)
    staged = alice.commit(rng=rng, external_psks=psks)
    assert len(staged.event.psks) == 1
    assert_rejected(bob, staged.message, ValidationError)  # bob lacks the PSK
    alice = alice.merge(staged)
    bob, event = bob.process(staged.message, external_psks=psks)
    carol, _ = carol.process(staged.message, external_psks=psks)
    assert isinstance(event, CommitEvent) and event.psks == staged.event.psks
    assert alice.epoch_authenticator() == bob.epoch_authenticator()

    resumption = PreSharedKeyID(PSKType.RESUMPTION, rng(32), usage=ResumptionPSKUsage.APPLICATION,
                                psk_group_id=alice.group_id, psk_epoch=alice.epoch - 1)
    staged = bob.commit(rng=rng, proposals=[PreSharedKey(resumption)])
    bob, alice, carol = deliver(staged, bob, alice, carol)


def test_private_handshake_messages() -> None:
    rng = make_rng(500)
    config = GroupConfig(handshake_wire_format=WireFormat.PRIVATE_MESSAGE)
    alice, bob, carol = three_members(rng, config)
    bob, proposal = bob.propose_update(rng=rng)
    assert isinstance(proposal.body, PrivateMessage)
    alice, _ = alice.process(proposal)
    carol, _ = carol.process(proposal)
    staged = carol.commit(rng=rng)
    assert isinstance(staged.message.body, PrivateMessage)
    carol, alice, bob = deliver(staged, carol, alice, bob)
    alice, (bob, carol) = _exchange(alice, b"private", rng, bob, carol)


def test_group_context_extensions_and_out_of_band_tree() -> None:
    rng = make_rng(600)
    config = GroupConfig(ratchet_tree_in_welcome=False)
    alice, bob, carol = three_members(rng)
    extension = Extension(0x0001, b"application id")
    alice, proposal = alice.propose_group_context_extensions((extension,), rng=rng)
    bob, _ = bob.process(proposal)
    carol, _ = carol.process(proposal)
    staged = alice.commit(rng=rng)
    alice, bob, carol = deliver(staged, alice, bob, carol)
    assert alice.group_context.extensions == (extension,)

    dave_kp = make_member(b"dave", rng)
    alice = Group(alice.state.replace(config=config))
    staged = alice.commit(rng=rng, add=[dave_kp.key_package], now=NOW)
    alice, bob, carol = deliver(staged, alice, bob, carol)
    assert staged.welcome is not None
    with pytest.raises(UsageError):
        Group.join(staged.welcome, dave_kp, now=NOW)
    dave = Group.join(staged.welcome, dave_kp, ratchet_tree=alice.ratchet_tree(), now=NOW)
    assert dave.epoch_authenticator() == alice.epoch_authenticator()


def test_committer_drops_invalid_pending_proposals() -> None:
    rng = make_rng(700)
    alice, bob, carol = three_members(rng)
    bob, bob_remove = bob.propose_remove(carol.own_leaf, rng=rng)
    alice, alice_remove = alice.propose_remove(carol.own_leaf, rng=rng)
    bob, _ = bob.process(alice_remove)
    alice, _ = alice.process(bob_remove)
    staged = bob.commit(rng=rng)
    assert staged.event.removed == (carol.own_leaf,)
    bob, alice = deliver(staged, bob, alice)
    carol, _ = carol.process(bob_remove)
    carol, _ = carol.process(alice_remove)
    carol, event = carol.process(staged.message)
    assert isinstance(event, CommitEvent) and event.removed_self


def test_new_member_and_external_sender_proposals() -> None:
    rng = make_rng(800)
    cs = suite(1)
    ds_priv, ds_pub = cs.generate_signature_key_pair(rng)
    senders = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(
        [ExternalSender(ds_pub, Credential.basic(b"delivery service"))]))
    alice_kp, bob_kp, eve_kp = (make_member(n, rng) for n in (b"alice", b"bob", b"eve"))
    alice = Group.create(alice_kp, group_id=b"with ds", rng=rng, extensions=(senders,))
    staged = alice.commit(rng=rng, add=[bob_kp.key_package], now=NOW)
    alice = alice.merge(staged)
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bob_kp, now=NOW)

    remove = external_sender_proposal(cs, alice.group_id, alice.epoch, 0, ds_priv,
                                      Remove(bob.own_leaf))
    alice, event = alice.process(remove)
    assert isinstance(event, ProposalEvent) and event.sender.sender_type == SenderType.EXTERNAL
    bob, _ = bob.process(remove)
    staged = alice.commit(rng=rng)
    alice = alice.merge(staged)
    bob, event = bob.process(staged.message)
    assert isinstance(event, CommitEvent) and event.removed_self

    join_request = new_member_proposal(alice.group_id, alice.epoch, eve_kp.key_package,
                                       eve_kp.signature_priv)
    alice, event = alice.process(join_request)
    assert isinstance(event, ProposalEvent)
    staged = alice.commit(rng=rng, now=NOW)
    alice = alice.merge(staged)
    assert staged.welcome is not None
    eve = Group.join(staged.welcome, eve_kp, now=NOW)
    assert eve.epoch_authenticator() == alice.epoch_authenticator()
    forged = external_sender_proposal(cs, alice.group_id, alice.epoch, 0, eve_kp.signature_priv,
                                      Remove(eve.own_leaf))
    assert_rejected(alice, forged, SignatureError)


def test_merge_keeps_keys_consumed_while_the_commit_was_in_flight() -> None:
    """A message of the old epoch decrypted between staging and merging used its key
    up; after the merge the old epoch (kept for late messages) must not decrypt it
    again (RFC 9420 §9.2), while a late message never seen still decrypts."""
    rng = make_rng(201)
    alice, bob, _carol = three_members(rng)
    staged = alice.commit(rng=rng)
    bob, seen = bob.encrypt(b"seen in flight", rng=rng)
    bob, late = bob.encrypt(b"late", rng=rng)
    alice, _ = alice.process(seen, now=NOW)
    alice = alice.merge(staged)
    assert alice.epoch == 2
    assert_rejected(alice, seen, MLSError)
    _, event = alice.process(late, now=NOW)
    assert isinstance(event, ApplicationEvent) and event.data == b"late"
