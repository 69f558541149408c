"""The leaf rules of RFC 9420 §7.3 (with §7.2, §10.1, §11.1, §13.4, §13.5), pinned with
hand-made leaves on every path a leaf takes into a group: a KeyPackage checked before
use, an Add committed by value and received as a proposal, an Update received and
covered by reference, the UpdatePath of a Commit, an external Commit, a Welcome and
the validation of a ratchet tree.  One rule set: each rule gives the same verdict on
every path.

The group requires (``required_capabilities``) extension ``REQUIRED_EXTENSION``,
proposal ``REQUIRED_PROPOSAL`` and credential type x509, and has a GroupContext
extension of type ``CONTEXT_EXTENSION``; every valid leaf lists all of them.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from mls import codec
from mls.crypto.suite import CipherSuite, Rng, suite
from mls.enums import ContentType, CredentialType, ExtensionType, LeafNodeSource, WireFormat
from mls.errors import (
    ProposalValidationError,
    SignatureError,
    TreeValidationError,
    ValidationError,
)
from mls.framing.public import membership_tag, sign_content
from mls.framing.welcome import sign_group_info
from mls.group.commit import StagedCommit, create_proposal
from mls.group.events import CommitEvent, ProposalEvent
from mls.group.external import join_external
from mls.group.group import Group
from mls.group.join import validate_group_tree
from mls.group.key_package import KeyPackageBundle, create_key_package, validate_key_package
from mls.group.leaf_validation import group_requirements
from mls.group.proposal_list import SenderProposal, validate_proposal_list
from mls.messages.credentials import Credential
from mls.messages.extension_types import RequiredCapabilities
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import (
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
)
from mls.messages.leaf_node import Capabilities, LeafNode
from mls.messages.proposals import Add, Commit, Proposal, ProposalOrRef, Update
from mls.messages.welcome import GroupInfo
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import validate_tree
from tests.mls.fixtures import NOW

CS = suite(1)

DAY = 86400
GROUP_ID = b"leaf rules"
REQUIRED_EXTENSION = 0xFF10
CONTEXT_EXTENSION = 0xFF11
REQUIRED_PROPOSAL = 0xFF12
LEAF_EXTENSION = 0xFF13
GREASE = (0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A)  # RFC 9420 §13.5

GROUP_EXTENSIONS = (
    Extension(ExtensionType.REQUIRED_CAPABILITIES, codec.encode(RequiredCapabilities(
        extension_types=(REQUIRED_EXTENSION,), proposal_types=(REQUIRED_PROPOSAL,),
        credential_types=(CredentialType.X509,)))),
    Extension(CONTEXT_EXTENSION, b"in use"),
)


def valid_capabilities(cs: CipherSuite = CS) -> Capabilities:
    return Capabilities(versions=(1,), cipher_suites=(cs.id,),
                        extensions=(REQUIRED_EXTENSION, CONTEXT_EXTENSION),
                        proposals=(REQUIRED_PROPOSAL,),
                        credentials=(CredentialType.BASIC, CredentialType.X509))


@dataclass(frozen=True)
class Variant:
    """A hand-made leaf: the valid capabilities changed by ``capabilities``, carrying
    ``extensions``; ``rejected`` is the expected error message (None: accepted)."""

    name: str
    capabilities: Callable[[Capabilities], Capabilities]
    extensions: tuple[Extension, ...] = ()
    rejected: str | None = None

    def caps(self, cs: CipherSuite = CS) -> Capabilities:
        return self.capabilities(valid_capabilities(cs))


def _keep(caps: Capabilities) -> Capabilities:
    return caps


ACCEPTED = [
    Variant("valid", _keep),
    # §7.3 asks for the required capabilities only; other implementations omit the
    # suite in use and do not list versions they take for granted.
    Variant("omits the cipher suite in use", lambda c: replace(c, cipher_suites=())),
    Variant("lists only another cipher suite", lambda c: replace(c, cipher_suites=(2,))),
    Variant("omits the protocol version", lambda c: replace(c, versions=())),
    # §13.5: unknown values are ignored; a listed GREASE leaf extension is valid.
    Variant("GREASE values in every list", lambda c: Capabilities(
        c.versions, (*c.cipher_suites, GREASE[0]), (*c.extensions, GREASE[1]),
        (*c.proposals, GREASE[2]), (*c.credentials, GREASE[3]))),
    Variant("a GREASE leaf extension it lists",
            lambda c: replace(c, extensions=(*c.extensions, GREASE[4])),
            (Extension(GREASE[4], b"grease"),)),
]

REJECTED = [
    Variant("misses a required extension type",
            lambda c: replace(c, extensions=(CONTEXT_EXTENSION,)),
            rejected=f"does not support required extension {REQUIRED_EXTENSION}"),
    Variant("misses a required proposal type", lambda c: replace(c, proposals=()),
            rejected=f"does not support required proposal {REQUIRED_PROPOSAL}"),
    Variant("misses a required credential type",
            lambda c: replace(c, credentials=(CredentialType.BASIC,)),
            rejected="does not support required credential type 2"),
    Variant("misses a GroupContext extension type",
            lambda c: replace(c, extensions=(REQUIRED_EXTENSION,)),
            rejected=f"does not support required extension {CONTEXT_EXTENSION}"),
    Variant("carries a non-default extension it does not list", _keep,
            (Extension(LEAF_EXTENSION, b"x"),),
            rejected=f"extension {LEAF_EXTENSION} not in its capabilities"),
    Variant("carries a GREASE extension it does not list", _keep,
            (Extension(GREASE[5], b"grease"),),
            rejected=f"extension {GREASE[5]} not in its capabilities"),
    Variant("does not list its own credential type",
            lambda c: replace(c, credentials=(CredentialType.X509,)),
            rejected="credential type not in its capabilities"),
]


# -- helpers -----------------------------------------------------------------------------

def make_rng(seed: int) -> Rng:
    return random.Random(seed).randbytes


def bundle(name: bytes, rng: Rng, variant: Variant = ACCEPTED[0], *, cs: CipherSuite = CS,
           now: int = NOW, lifetime: int = 90 * DAY) -> KeyPackageBundle:
    signature_priv, _ = cs.generate_signature_key_pair(rng)
    return create_key_package(cs, Credential.basic(name), signature_priv, rng=rng, now=now,
                              lifetime=lifetime, capabilities=variant.caps(cs),
                              leaf_extensions=variant.extensions)


def with_variant(leaf: LeafNode, variant: Variant, cs: CipherSuite = CS) -> LeafNode:
    return leaf.replace(capabilities=variant.caps(cs), extensions=variant.extensions)


def resign(leaf: LeafNode, signature_priv: bytes, leaf_index: int | None = None,
           cs: CipherSuite = CS) -> LeafNode:
    unsigned = leaf.replace(signature=b"")
    tbs = unsigned.tbs_bytes(None if leaf_index is None else GROUP_ID,
                             None if leaf_index is None else LeafIndex(leaf_index))
    return unsigned.replace(signature=cs.sign_with_label(signature_priv, b"LeafNodeTBS",
                                                         tbs))


def same_epoch(*groups: Group) -> None:
    assert len({group.epoch_authenticator() for group in groups}) == 1


def refused(group: Group, message: MLSMessage, match: str) -> None:
    """``group`` rejects ``message`` for ``match`` (not as a bad signature) and is
    left byte-identical."""
    before = group.to_bytes()
    with pytest.raises(ValidationError, match=match) as info:
        group.process(message, now=NOW)
    assert not isinstance(info.value, SignatureError)
    assert group.to_bytes() == before


Members = tuple[Group, Group, Group]


@pytest.fixture(scope="module")
def members() -> Members:
    """Alice created the group with GROUP_EXTENSIONS and added Bob and Carol."""
    rng = make_rng(1)
    alice_b, bob_b, carol_b = (bundle(n, rng) for n in (b"alice", b"bob", b"carol"))
    alice = Group.create(alice_b, group_id=GROUP_ID, rng=rng, extensions=GROUP_EXTENSIONS)
    staged = alice.commit(rng=rng, add=[bob_b.key_package, carol_b.key_package], now=NOW)
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bob_b, now=NOW)
    carol = Group.join(staged.welcome, carol_b, now=NOW)
    return alice.merge(staged), bob, carol


def handmade_commit(group: Group, proposals: tuple[Proposal, ...]) -> MLSMessage:
    """A signed, MACed Commit by value without path: what a committer that skips its
    own validation would send (its confirmation tag is never reached)."""
    state = group.state
    content = FramedContent(state.group_id, state.epoch, Sender.member(state.own_leaf), b"",
                            ContentType.COMMIT,
                            Commit(tuple(ProposalOrRef(proposal=p) for p in proposals)))
    signature = sign_content(state.cs, state.signature_priv, WireFormat.PUBLIC_MESSAGE,
                             content, state.context_bytes())
    auth = FramedContentAuthData(signature, bytes(state.cs.hash_len))
    tag = membership_tag(state.cs, state.secrets.membership_key, content, auth,
                         state.context_bytes())
    return MLSMessage.wrap(PublicMessage(content, auth, tag))


def update_proposal(group: Group, variant: Variant, rng: Rng) -> tuple[Group, MLSMessage]:
    """``group``'s member proposes an Update whose leaf is ``variant``."""
    state = group.state
    private, public = CS.generate_hpke_key_pair(rng)
    leaf = with_variant(state.own_leaf_node(), variant).replace(
        encryption_key=public, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None)
    leaf = resign(leaf, state.signature_priv, state.own_leaf)
    new_state, message = create_proposal(state, Update(leaf), rng=rng,
                                         new_keys={public: private})
    return Group(new_state), message


def with_own_leaf(group: Group, leaf: LeafNode) -> Group:
    """``group`` as seen by a member whose client holds ``leaf`` as its own leaf: its
    next UpdatePath (or its tree in a Welcome) carries that leaf's fields."""
    tree = group.state.tree.copy()
    tree.set_leaf(group.own_leaf, leaf)
    return Group(group.state.replace(tree=tree))


def received_then_committed(members: Members, message: MLSMessage, variant: Variant,
                            rng: Rng) -> StagedCommit | None:
    """Bob's proposal ``message`` reaches Alice: refused if the variant is rejected,
    else stored by Alice and Carol and committed by reference by Alice (returned)."""
    alice, bob, carol = members
    if variant.rejected is not None:
        refused(alice, message, variant.rejected)
        return None
    alice, event = alice.process(message, now=NOW)
    assert isinstance(event, ProposalEvent)
    carol, _ = carol.process(message, now=NOW)
    staged = alice.commit(rng=rng, now=NOW)
    same_epoch(alice.merge(staged), bob.process(staged.message, now=NOW)[0],
               carol.process(staged.message, now=NOW)[0])
    return staged


# -- the paths ---------------------------------------------------------------------------

def path_key_package(members: Members, variant: Variant, rng: Rng) -> None:
    """§10.1: a KeyPackage checked against the group before it is used."""
    dave = bundle(b"dave", rng, variant)
    if variant.rejected is None:
        validate_key_package(CS, dave.key_package, now=NOW,
                             group_context=members[0].group_context)
        return
    with pytest.raises(ValidationError, match=variant.rejected):
        validate_key_package(CS, dave.key_package, now=NOW,
                             group_context=members[0].group_context)


def path_add_commit(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.1.1, §12.2: an Add by value; the committer and the receivers of the Commit
    judge it alike, and the joiner accepts its own leaf."""
    alice, bob, _ = members
    dave = bundle(b"dave", rng, variant)
    if variant.rejected is not None:
        before = alice.to_bytes()
        with pytest.raises(ProposalValidationError, match=variant.rejected):
            alice.commit(rng=rng, add=[dave.key_package], now=NOW)
        assert alice.to_bytes() == before
        refused(bob, handmade_commit(alice, (Add(dave.key_package),)), variant.rejected)
        return
    staged = alice.commit(rng=rng, add=[dave.key_package], now=NOW)
    bob, event = bob.process(staged.message, now=NOW)
    assert isinstance(event, CommitEvent) and event.added == (LeafIndex(3),)
    assert staged.welcome is not None
    same_epoch(alice.merge(staged), bob, Group.join(staged.welcome, dave, now=NOW))


def path_add_proposal(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.1, §12.1.1: an Add proposal received by itself, then committed by
    reference."""
    alice, bob, carol = members
    dave = bundle(b"dave", rng, variant)
    bob, message = bob.propose_add(dave.key_package, rng=rng)
    staged = received_then_committed((alice, bob, carol), message, variant, rng)
    assert staged is None or staged.event.added == (LeafIndex(3),)


def path_update_proposal(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.1.2: an Update received by itself, then committed by reference."""
    alice, bob, carol = members
    bob, message = update_proposal(bob, variant, rng)
    staged = received_then_committed((alice, bob, carol), message, variant, rng)
    assert staged is None or LeafIndex(1) in staged.event.updated


def path_update_in_commit(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.2: the proposal list of a Commit covering that Update by reference."""
    alice, bob, _ = members
    _, message = update_proposal(bob, variant, rng)
    public = message.body
    assert isinstance(public, PublicMessage)
    proposal = public.content.content
    assert isinstance(proposal, Update)
    covered = [SenderProposal(proposal, Sender.member(1), b"a proposal ref")]
    state = alice.state

    def validate() -> None:
        validate_proposal_list(CS, covered, committer=Sender.member(0), tree=state.tree,
                               group_context=state.context, now=None)

    if variant.rejected is None:
        validate()
        return
    with pytest.raises(ProposalValidationError, match=variant.rejected):
        validate()


def path_update_path(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.4.2: the leaf of a Commit's UpdatePath (source commit)."""
    alice, bob, carol = members
    bob = with_own_leaf(bob, with_variant(bob.state.own_leaf_node(), variant))
    staged = bob.commit(rng=rng, force_path=True)
    if variant.rejected is not None:
        refused(alice, staged.message, variant.rejected)
        return
    same_epoch(bob.merge(staged), alice.process(staged.message, now=NOW)[0],
               carol.process(staged.message, now=NOW)[0])


def path_external_commit(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.4.3.2: the UpdatePath leaf of an external Commit."""
    alice, bob, _ = members
    eve_priv, _ = CS.generate_signature_key_pair(rng)
    eve, message = join_external(alice.group_info(), credential=Credential.basic(b"eve"),
                                 signature_priv=eve_priv, rng=rng, now=NOW,
                                 capabilities=variant.caps(),
                                 leaf_extensions=variant.extensions)
    if variant.rejected is not None:
        refused(alice, message, variant.rejected)
        return
    same_epoch(Group(eve), alice.process(message, now=NOW)[0],
               bob.process(message, now=NOW)[0])


def path_welcome(members: Members, variant: Variant, rng: Rng) -> None:
    """§12.4.3.1: a joiner validates every leaf of the tree in the Welcome -- here
    the committer's own leaf, which no member checked before."""
    alice_b = bundle(b"alice", rng)
    alice = Group.create(alice_b, group_id=GROUP_ID, rng=rng, extensions=GROUP_EXTENSIONS)
    leaf = with_variant(alice_b.key_package.leaf_node, variant)
    alice = with_own_leaf(alice, resign(leaf, alice_b.signature_priv))
    bob = bundle(b"bob", rng)
    staged = alice.commit(rng=rng, add=[bob.key_package], now=NOW)
    assert staged.welcome is not None
    if variant.rejected is not None:
        with pytest.raises(TreeValidationError, match=variant.rejected):
            Group.join(staged.welcome, bob, now=NOW)
        return
    same_epoch(alice.merge(staged), Group.join(staged.welcome, bob, now=NOW))


def path_tree(members: Members, variant: Variant, rng: Rng) -> None:
    """§7.3, §12.4.3.1: validation of a ratchet tree holding the leaf."""
    tree = RatchetTree.one_member(CS, bundle(b"alice", rng).key_package.leaf_node)
    tree.add_leaf(bundle(b"dave", rng, variant).key_package.leaf_node)
    requirements = group_requirements(GROUP_EXTENSIONS)
    if variant.rejected is None:
        validate_tree(tree, GROUP_ID, requirements=requirements)
        return
    with pytest.raises(TreeValidationError, match=variant.rejected):
        validate_tree(tree, GROUP_ID, requirements=requirements)


PATHS = {
    "key package": path_key_package,
    "add by value": path_add_commit,
    "add proposal": path_add_proposal,
    "update proposal": path_update_proposal,
    "update in commit": path_update_in_commit,
    "update path": path_update_path,
    "external commit": path_external_commit,
    "welcome": path_welcome,
    "tree validation": path_tree,
}

# A leaf that does not list its own credential type does not support a credential
# type in use, so no committer of ours builds a Welcome around it: that case of the
# Welcome path is test_welcome_leaf_without_its_credential_type.
CASES = [pytest.param(path, variant, id=f"{name}: {variant.name}")
         for variant in (*ACCEPTED, *REJECTED) for name, path in PATHS.items()
         if not (name == "welcome" and variant.name == "does not list its own credential type")]


@pytest.mark.parametrize(("path", "variant"), CASES)
def test_leaf_rule_on_every_path(members: Members, path: Callable[..., None],
                                 variant: Variant) -> None:
    path(members, variant, make_rng(zlib.crc32(variant.name.encode())))


def test_welcome_leaf_without_its_credential_type() -> None:
    """The committer refuses to add a member next to such a leaf, and a joiner handed
    a tree holding one rejects it at the tree validation of §12.4.3.1."""
    rng = make_rng(2)
    variant = REJECTED[-1]
    alice_b, bob_b = bundle(b"alice", rng), bundle(b"bob", rng)
    alice = Group.create(alice_b, group_id=GROUP_ID, rng=rng, extensions=GROUP_EXTENSIONS)
    leaf = resign(with_variant(alice_b.key_package.leaf_node, variant), alice_b.signature_priv)
    with pytest.raises(ProposalValidationError, match="leaf 0 does not support credential"):
        with_own_leaf(alice, leaf).commit(rng=rng, add=[bob_b.key_package], now=NOW)
    tree = RatchetTree.one_member(CS, leaf)
    tree.add_leaf(bob_b.key_package.leaf_node)
    context = GroupContext(1, CS.id, GROUP_ID, 1, tree.tree_hash(), b"", GROUP_EXTENSIONS)
    group_info = sign_group_info(CS, alice_b.signature_priv,
                                 GroupInfo(context, (), bytes(CS.hash_len), 0))
    with pytest.raises(TreeValidationError, match=variant.rejected):
        validate_group_tree(CS, tree, group_info, credential_validator=None)


def test_welcome_leaf_credential_judged_by_the_authentication_service() -> None:
    """§5.3.1, §7.3: the joiner asks the (default) Authentication Service about every
    leaf of the tree, as the Add path does for a KeyPackage."""
    rng = make_rng(3)
    alice_b, bob_b = bundle(b"alice", rng), bundle(b"bob", rng)
    alice = Group.create(alice_b, group_id=GROUP_ID, rng=rng, extensions=GROUP_EXTENSIONS)
    empty_chain = Credential.x509(())
    leaf = resign(alice_b.key_package.leaf_node.replace(credential=empty_chain),
                  alice_b.signature_priv)
    staged = with_own_leaf(alice, leaf).commit(rng=rng, add=[bob_b.key_package], now=NOW)
    assert staged.welcome is not None
    with pytest.raises(ValidationError, match="empty certificate chain"):
        Group.join(staged.welcome, bob_b, now=NOW)
    dave = bundle(b"dave", rng)
    unsigned = dave.key_package.replace(
        leaf_node=resign(dave.key_package.leaf_node.replace(credential=empty_chain),
                         dave.signature_priv))
    rejected = unsigned.replace(signature=CS.sign_with_label(
        dave.signature_priv, b"KeyPackageTBS", unsigned.tbs_bytes()))
    with pytest.raises(ProposalValidationError, match="empty certificate chain"):
        alice.commit(rng=rng, add=[rejected], now=NOW)


# -- versions (§10.1, §12.4.3.1) ------------------------------------------------------------

def test_key_package_version_must_be_the_groups(members: Members) -> None:
    """The KeyPackage's own ``version`` field must match the group's, on every path
    that carries one; its leaf need not list the version (see ACCEPTED)."""
    alice, bob, _ = members
    rng = make_rng(4)
    dave = bundle(b"dave", rng)
    unsigned = dave.key_package.replace(version=2)
    other_version = unsigned.replace(signature=CS.sign_with_label(
        dave.signature_priv, b"KeyPackageTBS", unsigned.tbs_bytes()))
    with pytest.raises(ProposalValidationError, match="version 2 is not mls10"):
        alice.commit(rng=rng, add=[other_version], now=NOW)
    refused(bob, handmade_commit(alice, (Add(other_version),)), "version 2 is not mls10")
    _, message = bob.propose_add(other_version, rng=rng)
    refused(alice, message, "version 2 is not mls10")


# -- lifetimes (§7.2, §7.3) ---------------------------------------------------------------

def test_committer_judges_key_package_lifetime(members: Members) -> None:
    """A sender MUST check the lifetime of the leaves it sends (§7.3): the committer
    refuses a KeyPackage expired or not yet valid, and leaves such a pending Add out."""
    alice, bob, _ = members
    rng = make_rng(5)
    expired = bundle(b"expired", rng, now=NOW - 10 * DAY, lifetime=DAY)
    early = bundle(b"early", rng, now=NOW + 10 * DAY)
    for key_package in (expired.key_package, early.key_package):
        with pytest.raises(ProposalValidationError, match="outside its lifetime"):
            alice.commit(rng=rng, add=[key_package], now=NOW)
        with pytest.raises(ValidationError, match="outside its lifetime"):
            validate_key_package(CS, key_package, now=NOW)
    bob, message = bob.propose_add(expired.key_package, rng=rng)
    alice, event = alice.process(message, now=NOW)  # received: not judged
    assert isinstance(event, ProposalEvent)
    staged = alice.commit(rng=rng, now=NOW)
    assert staged.event.added == ()


def test_receivers_do_not_judge_lifetimes(members: Members) -> None:
    """On receipt the lifetime check is only RECOMMENDED (§7.3): a leaf may expire in
    transit, and other implementations accept it, so our receivers do too -- in a
    Commit, an Add proposal, a Welcome's tree and an external join."""
    alice, bob, carol = members
    rng = make_rng(6)
    dave = bundle(b"dave", rng, now=NOW - 10 * DAY, lifetime=DAY)
    staged = alice.commit(rng=rng, add=[dave.key_package], now=NOW - 10 * DAY)
    assert staged.welcome is not None
    later = NOW + 365 * DAY  # every KeyPackage leaf in the tree has expired by then
    same_epoch(alice.merge(staged), bob.process(staged.message, now=later)[0],
               Group.join(staged.welcome, dave, now=later))
    erin = bundle(b"erin", rng, now=later)
    staged = alice.commit(rng=rng, add=[erin.key_package], now=later)
    assert staged.welcome is not None
    alice, carol = alice.merge(staged), carol.process(staged.message, now=later)[0]
    same_epoch(alice, carol, Group.join(staged.welcome, erin, now=later))
    eve_priv, _ = CS.generate_signature_key_pair(rng)
    eve, message = join_external(alice.group_info(), credential=Credential.basic(b"eve"),
                                 signature_priv=eve_priv, rng=rng, now=later,
                                 capabilities=valid_capabilities())
    same_epoch(Group(eve), alice.process(message, now=later)[0],
               carol.process(message, now=later)[0])


def test_maximum_lifetime_set_by_the_application() -> None:
    """§7.2: a leaf whose total lifetime exceeds the application's maximum is
    rejected."""
    key_package = bundle(b"dave", make_rng(7), lifetime=400 * DAY).key_package
    validate_key_package(CS, key_package, now=NOW, max_lifetime=401 * DAY)
    with pytest.raises(ValidationError, match="lifetime longer"):
        validate_key_package(CS, key_package, now=NOW, max_lifetime=365 * DAY)


# -- GREASE (§13.5) -------------------------------------------------------------------------

def test_grease_key_package_extension_need_not_be_listed(members: Members) -> None:
    """Unknown extensions in KeyPackage.extensions are ignored (§13.4); only
    LeafNode.extensions must be reflected in the capabilities (§13.5)."""
    alice, bob, _ = members
    rng = make_rng(8)
    signature_priv, _ = CS.generate_signature_key_pair(rng)
    dave = create_key_package(CS, Credential.basic(b"dave"), signature_priv, rng=rng, now=NOW,
                              capabilities=valid_capabilities(),
                              extensions=(Extension(GREASE[0], b"\x07" * 9),))
    assert GREASE[0] not in dave.key_package.leaf_node.capabilities.extensions
    staged = alice.commit(rng=rng, add=[dave.key_package], now=NOW)
    assert staged.welcome is not None
    same_epoch(alice.merge(staged), bob.process(staged.message, now=NOW)[0],
               Group.join(staged.welcome, dave, now=NOW))


# -- issue 17: cipher suite 7 leaves that do not list the suite -----------------------------

def test_suite_7_group_whose_leaves_do_not_list_the_suite() -> None:
    """Every leaf lists only another suite (and GREASE): adds, Welcome, Update,
    UpdatePath and an external join all go through (they were rejected with "does not
    support cipher suite 0x0007")."""
    cs7 = suite(7)
    rng = make_rng(9)
    unlisted = Variant("other suites only", lambda c: replace(
        c, cipher_suites=(1, GREASE[0]), extensions=(), proposals=()))

    def member(name: bytes) -> KeyPackageBundle:
        return bundle(name, rng, unlisted, cs=cs7)

    alice_b, bob_b = member(b"alice"), member(b"bob")
    assert cs7.id not in bob_b.key_package.leaf_node.capabilities.cipher_suites
    alice = Group.create(alice_b, group_id=b"suite 7", rng=rng)
    staged = alice.commit(rng=rng, add=[bob_b.key_package], now=NOW)
    assert staged.welcome is not None
    alice, bob = alice.merge(staged), Group.join(staged.welcome, bob_b, now=NOW)
    staged = bob.commit(rng=rng, force_path=True)
    bob, alice = bob.merge(staged), alice.process(staged.message, now=NOW)[0]
    bob, message = bob.propose_update(rng=rng)
    alice, _ = alice.process(message, now=NOW)
    staged = alice.commit(rng=rng, now=NOW)
    alice, bob = alice.merge(staged), bob.process(staged.message, now=NOW)[0]
    eve_priv, _ = cs7.generate_signature_key_pair(rng)
    eve_state, message = join_external(alice.group_info(), credential=Credential.basic(b"eve"),
                                       signature_priv=eve_priv, rng=rng, now=NOW,
                                       capabilities=unlisted.caps(cs7))
    same_epoch(Group(eve_state), alice.process(message, now=NOW)[0],
               bob.process(message, now=NOW)[0])
