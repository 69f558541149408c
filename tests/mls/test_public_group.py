"""PublicGroup: a group followed without secrets (RFC 9420 §6.1, §8.2, §12.4.2,
§12.4.3) stays in step with the members who process the same messages, and rejects
hostile messages and GroupInfos without changing its state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from mls.codec import decode, encode
from mls.crypto import suite
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
    DecodeError,
    EpochError,
    ProposalValidationError,
    SignatureError,
    TreeValidationError,
    UsageError,
    ValidationError,
)
from mls.framing.public import membership_tag, sign_content
from mls.framing.refs import key_package_ref
from mls.framing.welcome import sign_group_info
from mls.group.commit import StagedCommit
from mls.group.config import GroupConfig
from mls.group.events import CommitEvent, ProposalEvent
from mls.group.external import external_sender_proposal, new_member_proposal
from mls.group.group import Group
from mls.group.key_package import create_key_package
from mls.group.public import PublicCommit, PublicGroup
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender, encode_external_senders
from mls.messages.extensions import Extension
from mls.messages.framing import (
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
)
from mls.messages.proposals import (
    Add,
    Commit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    Remove,
    Update,
)
from mls.messages.psk import PreSharedKeyID
from mls.messages.tree_nodes import UpdatePath
from mls.vectors import LabelledCase, load_cases, passive_client, vectors_dir
from tests.mls.fixtures import NOW, Rng, make_member, make_rng, three_members

# -- helpers --------------------------------------------------------------------------


def assert_in_step(public: PublicGroup, *groups: Group) -> None:
    """The public group's context, tree, members and transcript are each member's."""
    for group in groups:
        state = group.state
        assert public.context.to_bytes() == state.context.to_bytes()
        assert public.tree.tree_hash() == state.tree.tree_hash() == public.context.tree_hash
        assert list(public.members()) == list(group.members())
        assert public.interim_transcript_hash == state.interim_transcript_hash
        assert public.confirmation_tag == state.confirmation_tag
    assert PublicGroup.from_bytes(public.to_bytes()).to_bytes() == public.to_bytes()


def observe(group: Group) -> PublicGroup:
    """A public group started from a member's signed GroupInfo with the tree."""
    public = PublicGroup.from_group_info(group.group_info(with_ratchet_tree=True), now=NOW)
    assert_in_step(public, group)
    return public


def deliver(public: PublicGroup, staged: StagedCommit, committer: Group, *others: Group
            ) -> tuple[PublicGroup, PublicCommit, list[Group]]:
    """The public group and the members take the commit; all end in step, and the
    committer's GroupInfo matches what the public group computed."""
    public, commit = public.process(staged.message, now=NOW)
    assert isinstance(commit, PublicCommit) and not commit.external
    groups = [committer.merge(staged)]
    for other in others:
        processed, _ = other.process(staged.message, now=NOW)
        groups.append(processed)
    assert_in_step(public, *groups)
    assert commit.committer == committer.own_leaf
    public.check_group_info(staged.group_info, signer=commit.committer)
    return public, commit, groups


def share(public: PublicGroup, message: MLSMessage, *groups: Group
          ) -> tuple[PublicGroup, list[Group]]:
    """A proposal goes to the public group and to the members."""
    public, event = public.process(message, now=NOW)
    assert isinstance(event, ProposalEvent)
    return public, [group.process(message, now=NOW)[0] for group in groups]


def assert_rejected(public: PublicGroup, message: MLSMessage | bytes,
                    error: type[Exception], match: str | None = None) -> None:
    before = public.to_bytes()
    with pytest.raises(error, match=match):
        public.process(message, now=NOW)
    assert public.to_bytes() == before


def forge(group: Group, body: Commit | Proposal) -> MLSMessage:
    """A PublicMessage the member ``group`` signs (and MACs) itself, whatever it holds;
    a commit gets a zero confirmation tag (the public group cannot check it)."""
    state = group.state
    is_commit = isinstance(body, Commit)
    content = FramedContent(state.group_id, state.epoch, Sender.member(state.own_leaf), b"",
                            ContentType.COMMIT if is_commit else ContentType.PROPOSAL, body)
    context = state.context_bytes()
    signature = sign_content(state.cs, state.signature_priv, WireFormat.PUBLIC_MESSAGE,
                             content, context)
    auth = FramedContentAuthData(signature, bytes(state.cs.hash_len) if is_commit else None)
    tag = membership_tag(state.cs, state.secrets.membership_key, content, auth, context)
    return MLSMessage.wrap(PublicMessage(content, auth, tag))


def commit_of(staged: StagedCommit) -> Commit:
    body = staged.message.body
    assert isinstance(body, PublicMessage) and isinstance(body.content.content, Commit)
    return body.content.content


def public_ref(staged: StagedCommit) -> bytes:
    """The one ProposalRef a commit covers by reference."""
    refs = [entry.reference for entry in commit_of(staged).proposals]
    assert len(refs) == 1 and refs[0] is not None
    return refs[0]


def with_hub(rng: Rng) -> tuple[bytes, Extension]:
    """A delivery service's signing key and the external_senders extension naming it."""
    hub_priv, hub_pub = suite(1).generate_signature_key_pair(rng)
    extension = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(
        [ExternalSender(hub_pub, Credential.basic(b"hub"))]))
    return hub_priv, extension


# -- members and the public group in step ---------------------------------------------

@pytest.mark.parametrize("suite_id", [1, 2, 3, 4, 5, 6, 7])
def test_adds_updates_removes_in_step(suite_id: int) -> None:
    cs = suite(suite_id)
    rng = make_rng(1000 + suite_id)
    alice_kp, bob_kp, carol_kp = (make_member(n, rng, cs) for n in (b"a", b"b", b"c"))
    alice = Group.create(alice_kp, group_id=b"public", rng=rng)
    public = observe(alice)
    staged = alice.commit(rng=rng, add=[bob_kp.key_package, carol_kp.key_package], now=NOW)
    public, commit, (alice,) = deliver(public, staged, alice)
    assert [(m.leaf_index, m.key_package_ref, m.credential) for m in commit.added] == [
        (1, key_package_ref(cs, bob_kp.key_package), Credential.basic(b"b")),
        (2, key_package_ref(cs, carol_kp.key_package), Credential.basic(b"c"))]
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bob_kp, now=NOW)
    carol = Group.join(staged.welcome, carol_kp, now=NOW)

    bob, update = bob.propose_update(rng=rng)
    public, (alice, carol) = share(public, update, alice, carol)
    assert len(public.pending) == 1
    staged = alice.commit(rng=rng)
    public, commit, (alice, bob, carol) = deliver(public, staged, alice, bob, carol)
    assert [m.leaf_index for m in commit.updated] == [1, 0]
    assert commit.covered == (public_ref(staged),) and public.pending == ()
    assert commit.updated[0].signature_key == bob_kp.key_package.leaf_node.signature_key

    staged = carol.commit(rng=rng, remove=[bob.own_leaf])
    public, commit, (carol, alice) = deliver(public, staged, carol, alice)
    assert [(m.leaf_index, m.credential) for m in commit.removed] == [
        (1, Credential.basic(b"b"))]
    assert [leaf for leaf, _ in public.members()] == [0, 2]

    staged = alice.commit(rng=rng)  # empty: a path only
    public, commit, _ = deliver(public, staged, alice, carol)
    assert public.epoch == 4 and commit.epoch == 4 and commit.added == commit.removed == ()


def test_group_context_extensions_change_external_senders() -> None:
    rng = make_rng(1100)
    _, hub = with_hub(rng)
    alice, bob, carol = three_members(rng)
    public = observe(alice)
    assert public.external_senders() == ()
    staged = alice.commit(rng=rng, proposals=[GroupContextExtensions((hub,))])
    public, _, (alice, bob, carol) = deliver(public, staged, alice, bob, carol)
    assert [s.credential for s in public.external_senders()] == [Credential.basic(b"hub")]
    bob, proposal = bob.propose_group_context_extensions((), rng=rng)
    public, (alice, carol) = share(public, proposal, alice, carol)
    staged = carol.commit(rng=rng)
    public, _, _ = deliver(public, staged, carol, alice, bob)
    assert public.external_senders() == () and public.context.extensions == ()


def test_external_join_and_resync() -> None:
    rng = make_rng(1200)
    alice, bob, carol = three_members(rng)
    public = observe(alice)
    dave_priv, _ = alice.state.cs.generate_signature_key_pair(rng)
    dave, join = Group.join_external(alice.group_info(), credential=Credential.basic(b"d"),
                                     signature_priv=dave_priv, rng=rng)
    public, commit = public.process(join, now=NOW)
    assert isinstance(commit, PublicCommit) and commit.external
    assert commit.committer == dave.own_leaf == 3
    assert [(m.leaf_index, m.key_package_ref, m.credential) for m in commit.added] == [
        (3, None, Credential.basic(b"d"))]
    alice, bob, carol = (g.process(join, now=NOW)[0] for g in (alice, bob, carol))
    assert_in_step(public, alice, bob, carol, dave)
    public.check_group_info(dave.group_info(), signer=commit.committer)

    bob2, resync = Group.join_external(
        alice.group_info(with_ratchet_tree=False), credential=Credential.basic(b"bob"),
        signature_priv=bob.state.signature_priv, rng=rng, ratchet_tree=alice.ratchet_tree(),
        resync_leaf=bob.own_leaf)
    public, commit = public.process(resync, now=NOW)
    assert isinstance(commit, PublicCommit) and commit.external
    assert [m.leaf_index for m in commit.removed] == [bob.own_leaf]
    assert [m.leaf_index for m in commit.added] == [commit.committer] == [bob2.own_leaf]
    alice, carol, dave = (g.process(resync, now=NOW)[0] for g in (alice, carol, dave))
    assert_in_step(public, alice, carol, dave, bob2)


def test_psk_proposals_by_reference_and_by_value() -> None:
    rng = make_rng(1300)
    psks = {b"psk-id": b"shared external secret"}
    alice, bob, carol = three_members(rng)
    public = observe(alice)
    alice, proposal = alice.propose_external_psk(b"psk-id", rng=rng)
    public, (bob, carol) = share(public, proposal, bob, carol)
    staged = alice.commit(rng=rng, external_psks=psks)
    public, commit = public.process(staged.message)  # no PSK value needed
    assert isinstance(commit, PublicCommit)
    assert commit.psks == staged.event.psks and commit.covered == (public_ref(staged),)
    alice = alice.merge(staged)
    bob, carol = (g.process(staged.message, external_psks=psks)[0] for g in (bob, carol))
    assert_in_step(public, alice, bob, carol)

    resumption = PreSharedKeyID(PSKType.RESUMPTION, rng(32), usage=ResumptionPSKUsage.APPLICATION,
                                psk_group_id=alice.group_id, psk_epoch=alice.epoch - 1)
    staged = bob.commit(rng=rng, proposals=[PreSharedKey(resumption)])
    public, commit, _ = deliver(public, staged, bob, alice, carol)
    assert commit.psks == (resumption,) and commit.covered == ()


def test_external_sender_and_new_member_proposals() -> None:
    rng = make_rng(1400)
    cs = suite(1)
    hub_priv, hub = with_hub(rng)
    alice_kp, bob_kp, eve_kp = (make_member(n, rng) for n in (b"alice", b"bob", b"eve"))
    alice = Group.create(alice_kp, group_id=b"with hub", rng=rng, extensions=(hub,))
    public = observe(alice)
    staged = alice.commit(rng=rng, add=[bob_kp.key_package], now=NOW)
    public, _, (alice,) = deliver(public, staged, alice)
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bob_kp, now=NOW)

    remove = external_sender_proposal(cs, alice.group_id, alice.epoch, 0, hub_priv,
                                      Remove(bob.own_leaf))
    forged = external_sender_proposal(cs, alice.group_id, alice.epoch, 0, eve_kp.signature_priv,
                                      Remove(bob.own_leaf))
    assert_rejected(public, forged, SignatureError)
    public, (alice, bob) = share(public, remove, alice, bob)
    staged = alice.commit(rng=rng)
    public, commit, (alice,) = deliver(public, staged, alice)
    assert [m.leaf_index for m in commit.removed] == [1]

    join_request = new_member_proposal(alice.group_id, alice.epoch, eve_kp.key_package,
                                       eve_kp.signature_priv)
    public, (alice,) = share(public, join_request, alice)
    staged = alice.commit(rng=rng, now=NOW)
    public, commit, _ = deliver(public, staged, alice)
    assert [m.key_package_ref for m in commit.added] == [key_package_ref(cs, eve_kp.key_package)]


def test_reinit_retires_the_public_group() -> None:
    rng = make_rng(1500)
    alice, bob, carol = three_members(rng)
    public = observe(alice)
    bob, proposal = bob.propose_reinit(group_id=b"next", cipher_suite=1, rng=rng)
    public, (alice, carol) = share(public, proposal, alice, carol)
    staged = alice.commit(rng=rng)
    public, commit, (alice, bob, carol) = deliver(public, staged, alice, bob, carol)
    assert public.retired and commit.reinit is not None and commit.reinit.group_id == b"next"
    assert PublicGroup.from_bytes(public.to_bytes()).retired
    assert carol.retired
    assert_rejected(public, forge(carol, Commit()), UsageError)


# -- hostile GroupInfos ----------------------------------------------------------------

def test_group_info_resigned_to_keep_the_hub_is_detected() -> None:
    """A committer drops the hub from external_senders but hands the hub a GroupInfo
    re-signed to still list it (tree hash, transcript hash, confirmation tag and
    signature all valid): the hub's own computation of the context catches it."""
    rng = make_rng(1600)
    _, hub = with_hub(rng)
    alice_kp, bob_kp = make_member(b"alice", rng), make_member(b"bob", rng)
    alice = Group.create(alice_kp, group_id=b"hub group", rng=rng, extensions=(hub,))
    staged = alice.commit(rng=rng, add=[bob_kp.key_package], now=NOW)
    alice = alice.merge(staged)
    public = observe(alice)
    staged = alice.commit(rng=rng, proposals=[GroupContextExtensions(())])
    new, commit = public.process(staged.message)
    assert isinstance(commit, PublicCommit) and new.external_senders() == ()
    honest = staged.group_info
    lying = sign_group_info(alice.state.cs, alice.state.signature_priv, honest.replace(
        group_context=dataclasses.replace(honest.group_context, extensions=(hub,)),
        signature=b""))
    with pytest.raises(ValidationError, match="GroupContext"):
        new.check_group_info(lying, signer=commit.committer)
    assert new.check_group_info(encode(MLSMessage.wrap(honest)),
                                signer=commit.committer) == honest


def test_group_info_mismatches_are_rejected() -> None:
    rng = make_rng(1700)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    staged = bob.commit(rng=rng)
    public, commit = public.process(staged.message)
    assert isinstance(commit, PublicCommit)
    info = staged.group_info
    with pytest.raises(ValidationError, match="signed by leaf"):
        public.check_group_info(info, signer=alice.own_leaf)
    wrong_tag = sign_group_info(bob.state.cs, bob.state.signature_priv,
                                info.replace(confirmation_tag=bytes(32), signature=b""))
    with pytest.raises(ValidationError, match="confirmation tag"):
        public.check_group_info(wrong_tag)
    with pytest.raises(SignatureError):
        public.check_group_info(info.replace(signature=bytes(64)))
    old_tree = Extension(ExtensionType.RATCHET_TREE, alice.ratchet_tree())
    stale = sign_group_info(bob.state.cs, bob.state.signature_priv,
                            info.replace(extensions=(old_tree,), signature=b""))
    with pytest.raises(ValidationError, match="ratchet_tree"):
        public.check_group_info(stale)


def test_from_group_info_checks_signature_and_tree() -> None:
    rng = make_rng(1800)
    alice, bob, _ = three_members(rng)
    info = alice.group_info(with_ratchet_tree=False)
    with pytest.raises(SignatureError):
        PublicGroup.from_group_info(info.replace(signature=bytes(64)),
                                    ratchet_tree=alice.ratchet_tree())
    with pytest.raises(UsageError):
        PublicGroup.from_group_info(info)  # no tree anywhere
    bob, _ = bob.propose_update(rng=rng)
    staged = bob.commit(rng=rng)
    other_tree = bob.merge(staged).ratchet_tree()
    with pytest.raises(TreeValidationError):
        PublicGroup.from_group_info(info, ratchet_tree=other_tree)
    public = PublicGroup.from_group_info(encode(MLSMessage.wrap(info)),
                                         ratchet_tree=alice.ratchet_tree())
    assert_in_step(public, alice)


# -- hostile messages ------------------------------------------------------------------

def test_bad_signature_wrong_epoch_and_unreadable_messages() -> None:
    rng = make_rng(1900)
    alice, bob, carol = three_members(rng)
    public = observe(alice)
    staged = bob.commit(rng=rng)
    body = staged.message.body
    assert isinstance(body, PublicMessage)
    bad = bytearray(body.auth.signature)
    bad[0] ^= 1
    tampered = dataclasses.replace(body, auth=dataclasses.replace(body.auth,
                                                                   signature=bytes(bad)))
    assert_rejected(public, MLSMessage.wrap(tampered), SignatureError)
    alice = alice.merge(alice.commit(rng=rng))
    assert_rejected(public, forge(alice, Commit()), EpochError)
    other = dataclasses.replace(body, content=dataclasses.replace(body.content,
                                                                   group_id=b"other"))
    assert_rejected(public, MLSMessage.wrap(other), ValidationError)
    private = Group(carol.state.replace(config=GroupConfig(
        handshake_wire_format=WireFormat.PRIVATE_MESSAGE)))
    _, hidden = private.propose_update(rng=rng)
    assert_rejected(public, hidden, UsageError)
    _, application = carol.encrypt(b"hello", rng=rng)
    assert_rejected(public, application, UsageError)
    assert_rejected(public, b"\x00\x01", DecodeError)


def test_unknown_proposal_reference_is_rejected() -> None:
    rng = make_rng(2000)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    bob, update = bob.propose_update(rng=rng)
    alice, _ = alice.process(update)  # the public group never saw it
    staged = alice.commit(rng=rng)
    assert_rejected(public, staged.message, ProposalValidationError, "unknown proposal")


@pytest.mark.parametrize("case", ["remove committer", "two gce", "add twice", "no path"])
def test_invalid_proposal_lists_are_rejected(case: str) -> None:
    rng = make_rng(2100)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    dave = make_member(b"dave", rng).key_package
    proposals: dict[str, tuple[Proposal, ...]] = {
        "remove committer": (Remove(alice.own_leaf),),
        "two gce": (GroupContextExtensions(()), GroupContextExtensions(())),
        "add twice": (Add(dave), Add(dave)),
        "no path": (Remove(bob.own_leaf),),  # a Remove requires a path
    }
    commit = Commit(tuple(ProposalOrRef(proposal=p) for p in proposals[case]))
    assert_rejected(public, forge(alice, commit), ProposalValidationError)


def test_leaf_claiming_another_members_signature_key_is_rejected() -> None:
    rng = make_rng(2200)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    mallory = create_key_package(suite(1), Credential.basic(b"mallory"),
                                 bob.state.signature_priv, rng=rng, now=NOW).key_package
    commit = Commit((ProposalOrRef(proposal=Add(mallory)),))
    assert_rejected(public, forge(alice, commit), ProposalValidationError,
                    "signature key already used")
    # By reference: the Add is pending (whether it clashes depends on the Commit that
    # covers it: one that also removes Bob is valid, RFC 9420 §12.2), the Commit fails.
    alice, proposal = alice.propose_add(mallory, rng=rng)
    public, _ = public.process(proposal, now=NOW)
    assert len(public.pending) == 1
    ref = alice.state.pending[0].ref
    commit = Commit((ProposalOrRef(reference=ref),))
    assert_rejected(public, forge(alice, commit), ProposalValidationError,
                    "signature key already used")
    staged = alice.commit(rng=rng, remove=[bob.own_leaf], now=NOW)
    public, commit, _ = deliver(public, staged, alice)
    assert [m.credential for m in commit.added] == [Credential.basic(b"mallory")]
    assert commit.covered == (ref,)


def test_path_with_bad_parent_hash_or_foreign_leaf_is_rejected() -> None:
    rng = make_rng(2300)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    staged = alice.commit(rng=rng)
    path = commit_of(staged).path
    assert path is not None and path.nodes
    _, fresh_key = alice.state.cs.generate_hpke_key_pair(rng)
    nodes = (dataclasses.replace(path.nodes[0], encryption_key=fresh_key), *path.nodes[1:])
    swapped = Commit(path=UpdatePath(path.leaf_node, nodes))
    assert_rejected(public, forge(alice, swapped), ValidationError, "parent hash")
    bobs_leaf = bob.state.own_leaf_node()
    foreign = Commit(path=UpdatePath(bobs_leaf, path.nodes))
    assert_rejected(public, forge(alice, foreign), ValidationError, "leaf_node_source")


def test_update_claiming_another_members_signature_key_is_rejected() -> None:
    rng = make_rng(2350)
    alice, bob, carol = three_members(rng)
    public = observe(alice)
    cs = bob.state.cs
    _, encryption_key = cs.generate_hpke_key_pair(rng)
    unsigned = bob.state.own_leaf_node().replace(
        encryption_key=encryption_key, signature_key=carol.state.own_leaf_node().signature_key,
        leaf_node_source=LeafNodeSource.UPDATE, lifetime=None, parent_hash=b"", signature=b"")
    signature = cs.sign_with_label(carol.state.signature_priv, b"LeafNodeTBS",
                                   unsigned.tbs_bytes(bob.group_id, bob.own_leaf))
    update = Update(unsigned.replace(signature=signature))
    assert_rejected(public, forge(bob, update), ProposalValidationError,
                    "signature_key already used by leaf 2")


def test_hostile_external_commits() -> None:
    rng = make_rng(2380)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    dave_priv, _ = alice.state.cs.generate_signature_key_pair(rng)
    _, takeover = Group.join_external(alice.group_info(), credential=Credential.basic(b"d"),
                                      signature_priv=dave_priv, rng=rng,
                                      resync_leaf=bob.own_leaf)
    assert_rejected(public, takeover, ValidationError, "may not replace")
    _, join = Group.join_external(alice.group_info(), credential=Credential.basic(b"d"),
                                  signature_priv=dave_priv, rng=rng)
    body = join.body
    assert isinstance(body, PublicMessage)
    signed_by_other = sign_content(alice.state.cs, alice.state.signature_priv,
                                   WireFormat.PUBLIC_MESSAGE, body.content,
                                   alice.state.context_bytes())
    forged = dataclasses.replace(body, auth=dataclasses.replace(body.auth,
                                                                 signature=signed_by_other))
    assert_rejected(public, MLSMessage.wrap(forged), SignatureError)


def test_secrets_are_what_a_public_group_cannot_check() -> None:
    """Documented limit: a well-formed commit with a wrong confirmation tag passes the
    public checks; the members reject it."""
    rng = make_rng(2400)
    alice, bob, _ = three_members(rng)
    public = observe(alice)
    forged = forge(alice, commit_of(alice.commit(rng=rng)))
    new, commit = public.process(forged)
    assert isinstance(commit, PublicCommit) and new.epoch == public.epoch + 1
    with pytest.raises(ConfirmationTagError):
        bob.process(forged)


def test_state_bytes_are_strict() -> None:
    rng = make_rng(2500)
    alice, _, _ = three_members(rng)
    public = observe(alice)
    data = public.to_bytes()
    with pytest.raises(DecodeError):
        PublicGroup.from_bytes(data + b"\x00")
    with pytest.raises(DecodeError):
        PublicGroup.from_bytes(b"\x09" + data[1:])
    assert repr(public).startswith("PublicGroup(group_id=")


# -- the official passive-client vectors ----------------------------------------------

def passive_cases() -> Iterator[LabelledCase]:
    for kind in ("passive-client-handling-commit", "passive-client-random"):
        yield from load_cases(vectors_dir() / f"{kind}.json", kind)


@pytest.mark.parametrize("labelled", list(passive_cases()), ids=lambda c: c.ident)
def test_passive_client_vectors(labelled: LabelledCase) -> None:
    """The vectors' messages through a PublicGroup beside the passive client's Group:
    after every epoch both hold the same context and tree, and the Group's epoch
    authenticator is the vector's."""
    case = labelled.case
    psks = passive_client.external_psks(case)
    group = Group(passive_client.join(case))
    public = PublicGroup.from_group_info(group.group_info(with_ratchet_tree=True))
    assert_in_step(public, group)
    for epoch in case["epochs"]:
        for proposal in epoch["proposals"]:
            message = decode(MLSMessage, bytes.fromhex(proposal))
            group, _ = group.process(message, external_psks=psks)
            public, event = public.process(message)
            assert isinstance(event, ProposalEvent)
        message = decode(MLSMessage, bytes.fromhex(epoch["commit"]))
        group, group_event = group.process(message, external_psks=psks)
        public, commit = public.process(message)
        assert isinstance(group_event, CommitEvent) and isinstance(commit, PublicCommit)
        assert [m.leaf_index for m in commit.added] == list(group_event.added)
        assert [m.leaf_index for m in commit.removed] == list(group_event.removed)
        assert group.epoch_authenticator() == bytes.fromhex(epoch["epoch_authenticator"])
        assert_in_step(public, group)
