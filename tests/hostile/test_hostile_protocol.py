"""Hostile input at the protocol level: each attack is rejected with a specific error,
the target's group state is byte-identical afterwards, and the hub refuses (and relays
nothing of) what it can tell is invalid without group secrets.

What the hub cannot tell (it holds no secrets): an UpdatePath encrypted to the wrong
nodes, a forged PrivateMessage sender, a replay older than its replay window. Members
reject those; the tests say so where they apply.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from mls.codec import decode, encode
from mls.enums import ContentType, WireFormat
from mls.errors import (
    ConfirmationTagError,
    CryptoError,
    DecodeError,
    EpochError,
    GenerationError,
    MembershipTagError,
    MLSError,
    ProposalValidationError,
    SignatureError,
    TreeValidationError,
    ValidationError,
)
from mls.framing.private import protect_private
from mls.framing.public import membership_tag, sign_content
from mls.group.config import GroupConfig
from mls.group.group import Group
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
)
from mls.messages.proposals import Commit, Remove
from mls.messages.tree_nodes import HPKECiphertext
from tests.hostile.conftest import CS, NOW, Bench, bundle, identity
from transports.interface import Inbound, Op


def assert_rejected(group: Group, message: MLSMessage | bytes, error: type[MLSError],
                    **options: object) -> MLSError:
    """``error`` exactly (not a parent class) and no change of state."""
    before = group.to_bytes()
    with pytest.raises(MLSError) as info:
        group.process(message, **options)  # type: ignore[arg-type]
    assert type(info.value) is error, (type(info.value).__name__, str(info.value))
    assert group.to_bytes() == before
    return info.value


def remac(group: Group, content: FramedContent, auth: FramedContentAuthData) -> MLSMessage:
    """A PublicMessage with a valid membership tag computed by ``group``'s member."""
    state = group.state
    tag = membership_tag(state.cs, state.secrets.membership_key, content, auth,
                         state.context_bytes())
    return MLSMessage.wrap(PublicMessage(content, auth, tag))


def signed(group: Group, content: FramedContent, wire_format: WireFormat) -> bytes:
    state = group.state
    return sign_content(state.cs, state.signature_priv, wire_format, content,
                        state.context_bytes())


# -- forged sender -------------------------------------------------------------------------

async def test_member_claiming_another_leaf_public(bench: Bench) -> None:
    bob, carol = bench.groups["bob"], bench.groups["carol"]
    state = bob.state
    content = FramedContent(state.group_id, state.epoch, Sender.member(0), b"",
                            ContentType.PROPOSAL, Remove(2))
    forged = remac(bob, content, FramedContentAuthData(
        signed(bob, content, WireFormat.PUBLIC_MESSAGE)))
    assert_rejected(carol, forged, SignatureError)
    # The hub: the claimed leaf belongs to Alice, the network says Bob sent it.
    await bench.refused(bench.send_request(identity("bob"), forged), "not-member")
    # Sent as Alice (a stolen session): her key does not verify Bob's signature.
    await bench.refused(bench.send_request(identity("alice"), forged), "bad-signature")


async def test_member_claiming_another_leaf_private(bench: Bench) -> None:
    bob, carol = bench.groups["bob"], bench.groups["carol"]
    state = bob.state
    content = FramedContent(state.group_id, state.epoch, Sender.member(0), b"",
                            ContentType.APPLICATION, b"I am alice")
    authenticated = AuthenticatedContent(
        WireFormat.PRIVATE_MESSAGE, content,
        FramedContentAuthData(signed(bob, content, WireFormat.PRIVATE_MESSAGE)))
    # Every member can derive every leaf's keys (RFC 9420 §9): only the signature
    # tells who sent it.
    private = protect_private(state.cs, authenticated, secret_tree=state.secret_tree.copy(),
                              sender_data_secret=state.secrets.sender_data_secret,
                              reuse_guard=b"\x00\x01\x02\x03")
    assert_rejected(carol, MLSMessage.wrap(private), SignatureError)


# -- commits from outside the group ---------------------------------------------------------

async def test_non_member_commit(bench: Bench) -> None:
    bob = bench.groups["bob"]
    rng = random.Random(3)
    eve = bundle("eve", rng)
    state = bob.state
    commit = Commit((), None)
    for leaf in (1, 7):  # a member's leaf, and a leaf that does not exist
        content = FramedContent(state.group_id, state.epoch, Sender.member(leaf), b"",
                                ContentType.COMMIT, commit)
        signature = sign_content(CS, eve.signature_priv, WireFormat.PUBLIC_MESSAGE,
                                 content, state.context_bytes())
        auth = FramedContentAuthData(signature, bytes(CS.hash_len))
        forged = MLSMessage.wrap(PublicMessage(content, auth, bytes(CS.hash_len)))
        error = MembershipTagError if leaf == 1 else ValidationError
        assert_rejected(bob, forged, error)
        staged_like = bench.commit_request(identity("eve"), bob.commit(rng=bench.draw),
                                           payload=encode(forged))
        await bench.refused(staged_like, "not-member")


async def test_member_commit_submitted_by_a_non_member(bench: Bench) -> None:
    staged = bench.groups["alice"].commit(rng=bench.draw, force_path=True)
    await bench.refused(bench.commit_request(identity("mallory"), staged), "not-member")


# -- replays and removed members ------------------------------------------------------------

async def test_replayed_application_message(bench: Bench) -> None:
    alice, bob = bench.groups["alice"], bench.groups["bob"]
    alice, message = alice.encrypt(b"once", rng=bench.draw)
    bob, _ = bob.process(message)
    assert_rejected(bob, message, GenerationError)
    # The hub cannot open PrivateMessages; an identical replay within its window is
    # answered with the first seq and not logged twice (bridge.hub.messages.REPLAY_WINDOW), an
    # older one is relayed and members drop it as above.


async def test_removed_member_after_removal(bench: Bench) -> None:
    carol_before = bench.groups["carol"]
    staged = bench.groups["alice"].commit(rng=bench.draw, remove=[2])
    await bench.commit("alice", staged, "bob")
    bob = bench.groups["bob"]
    carol_after, _ = carol_before.process(staged.message)
    assert not carol_after.active
    # An application message encrypted with her last keys, sent after her removal.
    _, late = carol_before.encrypt(b"still here", rng=bench.draw)
    await bench.refused(bench.send_request(identity("carol"), late), "not-member")
    # Her old leaf in the new epoch: blank, so nothing she signs is a member's.
    state = carol_before.state
    content = FramedContent(state.group_id, bob.epoch, Sender.member(2), b"",
                            ContentType.PROPOSAL, Remove(0))
    forged = MLSMessage.wrap(PublicMessage(content, FramedContentAuthData(
        signed(carol_before, content, WireFormat.PUBLIC_MESSAGE)), bytes(CS.hash_len)))
    assert_rejected(bob, forged, ValidationError)
    await bench.refused(bench.send_request(identity("carol"), forged), "not-member")
    # A member who keeps no past epochs rejects the late message by its epoch.
    strict = Group(dataclasses.replace(bob.state, past_epochs=(),
                                       config=GroupConfig(max_past_epochs=0)))
    assert_rejected(strict, late, EpochError)


# -- an UpdatePath encrypted to the wrong nodes ----------------------------------------------

def _rewrap_commit(group: Group, message: MLSMessage, commit: Commit) -> MLSMessage:
    """The commit with a new body, re-signed and re-MACed by its real sender."""
    body = message.body
    assert isinstance(body, PublicMessage)
    content = dataclasses.replace(body.content, content=commit)
    auth = dataclasses.replace(body.auth,
                               signature=signed(group, content, WireFormat.PUBLIC_MESSAGE))
    return remac(group, content, auth)


async def test_update_path_encrypted_to_the_wrong_nodes(bench: Bench) -> None:
    alice, bob, carol = (bench.groups[n] for n in ("alice", "bob", "carol"))
    staged = alice.commit(rng=bench.draw, force_path=True)
    body = staged.message.body
    assert isinstance(body, PublicMessage)
    commit = body.content.content
    assert isinstance(commit, Commit) and commit.path is not None
    # Alice at leaf 0: her path is node 1 (copath Bob) then the root (copath Carol).
    bob_leaf = next(leaf for index, leaf in alice.members() if index == 1)
    group_context = encode(staged.state.context)
    kem_output, ciphertext = CS.encrypt_with_label(
        bob_leaf.encryption_key, b"UpdatePathNode", group_context, bench.draw(CS.hash_len))
    nodes = list(commit.path.nodes)
    nodes[1] = dataclasses.replace(nodes[1], encrypted_path_secret=(
        HPKECiphertext(kem_output, ciphertext),))  # Carol's share, sealed to Bob's key
    wrong = dataclasses.replace(commit, path=dataclasses.replace(commit.path,
                                                                 nodes=tuple(nodes)))
    message = _rewrap_commit(alice, staged.message, wrong)
    assert_rejected(carol, message, CryptoError)
    # Bob's own share is intact, but the commit he signs off no longer matches the
    # confirmation tag Alice computed.
    assert_rejected(bob, message, ConfirmationTagError)
    # One ciphertext too many for the copath's resolution.
    extra = list(commit.path.nodes)
    extra[0] = dataclasses.replace(extra[0], encrypted_path_secret=(
        *extra[0].encrypted_path_secret, HPKECiphertext(kem_output, ciphertext)))
    too_many = _rewrap_commit(alice, staged.message, dataclasses.replace(
        commit, path=dataclasses.replace(commit.path, nodes=tuple(extra))))
    assert_rejected(carol, too_many, ValidationError)


# -- GroupInfo: bad signature, tree that does not match ---------------------------------------

async def test_group_info_bad_signature_and_wrong_tree(bench: Bench) -> None:
    alice, bob = bench.groups["alice"], bench.groups["bob"]
    rng = random.Random(5)
    dave = bundle("dave", rng)
    info = alice.group_info(with_ratchet_tree=False)
    bad = info.replace(signature=bytes(len(info.signature)))
    with pytest.raises(SignatureError):
        Group.join_external(MLSMessage.wrap(bad), credential=dave.key_package.leaf_node
                            .credential, signature_priv=dave.signature_priv, rng=bench.draw,
                            ratchet_tree=alice.ratchet_tree())
    # The next epoch's tree (Alice's signing leaf unchanged) under this epoch's GroupInfo.
    later = alice.commit(rng=bench.draw, add=[bundle("zed", rng).key_package], now=NOW)
    with pytest.raises(TreeValidationError, match="tree hash"):
        Group.join_external(MLSMessage.wrap(info), credential=dave.key_package.leaf_node
                            .credential, signature_priv=dave.signature_priv, rng=bench.draw,
                            ratchet_tree=later.state.tree.to_bytes())
    # The hub: a commit bundle whose GroupInfo is forged or whose tree is another's.
    staged = bob.commit(rng=bench.draw, force_path=True)
    forged_info = staged.group_info.replace(signature=bytes(len(staged.group_info.signature)))
    await bench.refused(bench.commit_request(
        identity("bob"), staged, group_info=encode(MLSMessage.wrap(forged_info))),
        "bad-signature")
    await bench.refused(bench.commit_request(
        identity("bob"), staged, ratchet_tree=alice.ratchet_tree()), "invalid-commit")
    # A new group registered with a forged GroupInfo.
    lone = Group.create(bundle("frank", rng), group_id=b"lone", rng=bench.draw)
    lone_info = lone.group_info()
    request_info = encode(MLSMessage.wrap(lone_info.replace(
        signature=bytes(len(lone_info.signature)))))
    reply = await bench.ask(Inbound(Op.CREATE_GROUP, identity("frank"),
                                           group_info=request_info))
    assert not reply.ok and reply.code == "bad-signature"


# -- a Welcome for someone else ----------------------------------------------------------------

async def test_welcome_for_someone_else(bench: Bench) -> None:
    rng = random.Random(6)
    dave, erin = bundle("dave", rng), bundle("erin", rng)
    staged = bench.groups["alice"].commit(rng=bench.draw, add=[dave.key_package], now=NOW)
    assert staged.welcome is not None
    with pytest.raises(ValidationError, match="no entry for this KeyPackage") as info:
        Group.join(staged.welcome, erin, now=NOW)
    assert type(info.value) is ValidationError
    # Dave's KeyPackage but someone else's private keys.
    stolen = dataclasses.replace(erin, key_package=dave.key_package)
    with pytest.raises(CryptoError):
        Group.join(staged.welcome, stolen, now=NOW)


# -- oversize and deeply nested input ------------------------------------------------------------

def _huge_prefix_inputs() -> list[bytes]:
    header = b"\x00\x01\x00\x01"  # mls10, PublicMessage
    return [
        header + b"\xbf\xff\xff\xff" + b"ab",         # group_id of 2^30-1 bytes, 2 present
        header + b"\x80\x10\x00\x00" + b"\x00" * 64,  # 1 MiB claimed
        header + b"\x40\x05" + b"g" * 5,              # non-minimal varint
        header + b"\xc0\x00\x00\x00\x00\x00\x00\x00",  # the reserved 0b11 prefix
        b"\x00\x01\x00\x03" + b"\x00\x01" + b"\xbf\xff\xff\xff",  # Welcome, huge secrets
    ]


def _nested(depth: int) -> bytes:
    data = b""
    for _ in range(depth):
        data = (bytes([len(data)]) if len(data) < 0x40 else
                (0x4000 | len(data)).to_bytes(2, "big") if len(data) < 0x4000 else
                (0x80000000 | len(data)).to_bytes(4, "big")) + data
    return data


async def test_oversize_and_nested_inputs(bench: Bench) -> None:
    bob = bench.groups["bob"]
    inputs = _huge_prefix_inputs()
    inputs.append(b"\x00\x01\x00\x01" + _nested(20_000))  # 20,000 nested vectors
    inputs.append(b"\x00\x01\x00\x05" + b"\x01" * 100_000)  # KeyPackage of 'present' flags
    for data in inputs:
        with pytest.raises(DecodeError):
            decode(MLSMessage, data)
        assert_rejected(bob, data, DecodeError)
        await bench.refused(bench.send_request(identity("bob"), data), "malformed")
        await bench.refused(bench.commit_request(identity("bob"), bob.commit(rng=bench.draw),
                                                 payload=data), "malformed")
    oversized = bench.send_request(identity("bob"), b"\x00" * (bench.hub.config.max_payload + 1))
    await bench.refused(oversized, "too-large")


# -- KeyPackages: expired lifetimes and mismatched suites ------------------------------------

async def test_expired_and_mismatched_key_packages(bench: Bench) -> None:
    alice, bob = bench.groups["alice"], bench.groups["bob"]
    rng = random.Random(8)
    expired = bundle("dave", rng, now=NOW - 10 * 86400, lifetime=86400)
    p256 = bundle("erin", rng, cs_id=2)
    for key_package, reason in ((expired.key_package, "lifetime"),
                                (p256.key_package, "cipher suite")):
        before = alice.to_bytes()
        with pytest.raises(ProposalValidationError, match=reason):
            alice.commit(rng=bench.draw, add=[key_package], now=NOW)
        assert alice.to_bytes() == before
    # A commit that adds the KeyPackage before it expired is accepted by a receiver whose
    # clock says it has expired since: RFC 9420 §7.3 only recommends the check on
    # receipt (the leaf may expire in transit), and other implementations skip it.
    staged = alice.commit(rng=bench.draw, add=[expired.key_package], now=NOW - 10 * 86400)
    bob_after, _ = bob.process(staged.message, now=NOW)
    assert bob_after.epoch_authenticator() == alice.merge(staged).epoch_authenticator()
    # The hub's directory refuses to publish it.
    publish = Inbound(Op.PUBLISH_KEY_PACKAGE, identity("dave"),
                      payload=encode(MLSMessage.wrap(expired.key_package)))
    reply = await bench.ask(publish)
    assert not reply.ok and reply.code == "malformed" and "lifetime" in reply.reason.lower()
