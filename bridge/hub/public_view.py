"""What the hub checks without group secrets (RFC 9750 §5.2, RFC 9420 §6, §12.4.3).

The hub never holds group secrets and never decrypts. Per group it keeps a public view
of the current epoch: the GroupContext, the ratchet tree, the confirmation tag (hence
the interim transcript hash) and the member identities by leaf (from the leaves'
credentials). With that it checks:

* every MLSMessage parses strictly (one codec, all bytes consumed);
* group id and epoch against the current ones;
* for PublicMessage commits and proposals from members: the sender leaf is a member,
  its credential names the network-authenticated sender, and the FramedContent
  signature verifies with the current GroupContext (§6.1); the membership tag cannot
  be checked (it needs the membership key);
* for a commit bundle: the GroupInfo is for epoch + 1 of the same group and suite; the
  ratchet tree's hash equals ``group_context.tree_hash``; the GroupInfo signature
  verifies with the signer leaf of that tree; the signer is the committer (for an
  external commit: the new member); the GroupInfo's confirmed transcript hash is
  ``Hash(interim_transcript_hash || ConfirmedTranscriptHashInput(commit))`` and its
  confirmation tag is the commit's (§8.2), so GroupInfo and commit belong together;
  the hub is still an external sender of the new epoch; the Welcome (if any) has one
  entry per added leaf.

Not checked (they need secrets or a full replay of the commit): the membership tag,
the confirmation tag's MAC, and that the submitted tree is the old tree with the
commit applied. Members check all of that when they process the commit.

The hub's state bytes (``hub_state`` in the store) hold the GroupContext and the
confirmation tag; the tree is the store's ``ratchet_tree`` and the member list its
member table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.errors import (
    BadSignature,
    Forbidden,
    InvalidCommit,
    Malformed,
    NotMember,
    Unsupported,
    WrongEpochRejection,
)
from bridge.hub.store import Member
from bridge.identities import IdentityVerifier, identity_of
from mls.codec import Reader, Writer, decode, encode
from mls.crypto.suite import CipherSuite, suite
from mls.enums import (
    ContentType,
    ExtensionType,
    LeafNodeSource,
    SenderType,
    WireFormat,
)
from mls.errors import CryptoError, DecodeError, MLSError, SignatureError
from mls.framing.public import verify_content_signature
from mls.framing.refs import proposal_ref
from mls.framing.welcome import verify_group_info
from mls.messages.extension_types import decode_external_senders
from mls.messages.extensions import GroupContext, find_extension
from mls.messages.framing import (
    AuthenticatedContent,
    MLSMessage,
    PublicMessage,
    confirmed_transcript_hash_input,
    interim_transcript_hash_input,
)
from mls.messages.proposals import Commit, ExternalInit, Remove
from mls.messages.welcome import GroupInfo, Welcome
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree

HUB_STATE_VERSION = 1


def parse_message(data: bytes, what: str) -> MLSMessage:
    """Strictly parse an MLSMessage; :class:`Malformed` if the bytes are not one."""
    if not data:
        raise Malformed(f"{what}: no bytes")
    try:
        return decode(MLSMessage, data)
    except DecodeError as exc:
        raise Malformed(f"{what} does not parse as an MLSMessage: {exc}") from exc


def cipher_suite(suite_id: int) -> CipherSuite:
    """The suite object; :class:`Unsupported` for an unknown suite."""
    try:
        return suite(suite_id)
    except (MLSError, KeyError, ValueError) as exc:
        raise Unsupported(f"cipher suite {suite_id} is not supported") from exc


@dataclass(frozen=True, slots=True)
class HubState:
    """The ``hub_state`` bytes: the current GroupContext and confirmation tag."""

    context: GroupContext
    confirmation_tag: bytes

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u8(HUB_STATE_VERSION)
        self.context.encode(w)
        w.opaque(self.confirmation_tag)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> HubState:
        r = Reader(data)
        if r.u8() != HUB_STATE_VERSION:
            raise DecodeError("unknown hub state version")
        state = cls(GroupContext.decode(r), r.opaque())
        r.finish("hub state")
        return state


class PublicGroup:
    """The hub's public view of one group in one epoch (see the module docstring)."""

    __slots__ = ("confirmation_tag", "context", "context_bytes", "cs", "identities",
                 "members", "tree", "verifier")

    def __init__(self, context: GroupContext, tree: RatchetTree, confirmation_tag: bytes,
                 verifier: IdentityVerifier | None = None) -> None:
        self.cs = cipher_suite(context.cipher_suite)
        self.context = context
        self.context_bytes = encode(context)
        self.tree = tree
        self.confirmation_tag = confirmation_tag
        self.verifier = verifier  # the hub's CA: identities of X.509 credentials
        self.members: dict[int, str] = {
            int(leaf): identity_of(node.credential, verifier)
            for leaf, node in tree.member_leaves()}
        self.identities = frozenset(self.members.values())

    @classmethod
    def load(cls, hub_state: bytes, ratchet_tree: bytes,
             verifier: IdentityVerifier | None = None) -> PublicGroup:
        state = HubState.from_bytes(hub_state)
        cs = cipher_suite(state.context.cipher_suite)
        return cls(state.context, RatchetTree.from_bytes(cs, ratchet_tree),
                   state.confirmation_tag, verifier)

    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    @property
    def epoch(self) -> int:
        return self.context.epoch

    def hub_state(self) -> bytes:
        return HubState(self.context, self.confirmation_tag).to_bytes()

    def interim_transcript_hash(self) -> bytes:
        """RFC 9420 §8.2, from the epoch's confirmed hash and confirmation tag."""
        return self.cs.hash(self.context.confirmed_transcript_hash
                            + interim_transcript_hash_input(self.confirmation_tag))

    def member_list(self) -> list[Member]:
        return [Member(leaf, identity) for leaf, identity in sorted(self.members.items())]

    def leaves_of(self, identity: str) -> list[int]:
        return sorted(leaf for leaf, who in self.members.items() if who == identity)

    def external_sender_index(self, signature_key: bytes) -> int | None:
        """Our position in the epoch's external_senders extension (RFC 9420 §12.1.8.1)."""
        return external_sender_index(self.context, signature_key)


def external_sender_index(context: GroupContext, signature_key: bytes) -> int | None:
    extension = find_extension(context.extensions, ExtensionType.EXTERNAL_SENDERS)
    if extension is None:
        return None
    try:
        senders = decode_external_senders(extension.extension_data)
    except DecodeError:
        return None
    for index, sender in enumerate(senders):
        if sender.signature_key == signature_key:
            return index
    return None


# -- GroupInfo and tree --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckedGroupInfo:
    """A GroupInfo whose signature and tree hash verified, with its tree."""

    group_info: GroupInfo
    tree: RatchetTree
    tree_bytes: bytes = field(repr=False)


def check_group_info(group_info_bytes: bytes, tree_bytes: bytes) -> CheckedGroupInfo:
    """Parse a GroupInfo MLSMessage and the ratchet tree (given, or from the GroupInfo's
    ratchet_tree extension), check the tree hash and the signer's signature."""
    body = parse_message(group_info_bytes, "GroupInfo").body
    if not isinstance(body, GroupInfo):
        raise Malformed("the group_info field is not a GroupInfo")
    cs = cipher_suite(body.group_context.cipher_suite)
    if not tree_bytes:
        extension = find_extension(body.extensions, ExtensionType.RATCHET_TREE)
        if extension is None:
            raise InvalidCommit("no ratchet tree: neither given nor in the GroupInfo")
        tree_bytes = extension.extension_data
    try:
        tree = RatchetTree.from_bytes(cs, tree_bytes)
    except MLSError as exc:
        raise Malformed(f"ratchet tree does not parse: {exc}") from exc
    if tree.tree_hash() != body.group_context.tree_hash:
        raise InvalidCommit("ratchet tree hash differs from the GroupInfo's tree_hash")
    signer = tree.leaf(LeafIndex(body.signer)) if body.signer < tree.n_leaves else None
    if signer is None:
        raise InvalidCommit(f"GroupInfo signer {body.signer} is not a leaf of the tree")
    try:
        verify_group_info(cs, body, signer.signature_key)
    except (SignatureError, CryptoError) as exc:
        raise BadSignature("GroupInfo signature does not verify") from exc
    return CheckedGroupInfo(body, tree, tree_bytes)


def check_new_group(group_info_bytes: bytes, tree_bytes: bytes, sender: str,
                    hub_signature_key: bytes | None,
                    verifier: IdentityVerifier | None = None
                    ) -> tuple[PublicGroup, CheckedGroupInfo]:
    """A group being registered: epoch 0, signed by the sender's leaf, hub listed as
    an external sender (so it can propose Removes)."""
    checked = check_group_info(group_info_bytes, tree_bytes)
    info = checked.group_info
    if info.group_context.epoch != 0:
        raise InvalidCommit("a new group must be at epoch 0")
    view = PublicGroup(info.group_context, checked.tree, info.confirmation_tag, verifier)
    if view.members.get(info.signer) != sender:
        raise Forbidden("the GroupInfo signer is not the requesting user")
    if hub_signature_key is None or view.external_sender_index(hub_signature_key) is None:
        raise InvalidCommit("the group does not list the hub in external_senders")
    return view, checked


# -- handshake messages from members -------------------------------------------------

def check_member_signature(view: PublicGroup, message: PublicMessage, sender: str) -> int:
    """The sender leaf is a member named ``sender`` and the signature verifies (§6.1)."""
    leaf = message.content.sender.leaf_index
    identity = view.members.get(leaf)
    if identity is None:
        raise NotMember(f"sender leaf {leaf} is not a member of the group")
    if identity != sender:
        raise NotMember(f"sender leaf {leaf} belongs to another user than the sender")
    node = view.tree.leaf(LeafIndex(leaf))
    assert node is not None
    authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, message.content,
                                         message.auth)
    try:
        verify_content_signature(view.cs, node.signature_key, authenticated,
                                 view.context_bytes)
    except (SignatureError, CryptoError) as exc:
        raise BadSignature("message signature does not verify") from exc
    return leaf


def check_public_proposal(view: PublicGroup, message: PublicMessage, sender: str) -> bytes:
    """A member's PublicMessage proposal of the current epoch; returns its ProposalRef."""
    content = message.content
    if content.sender.sender_type != SenderType.MEMBER:
        raise Forbidden("only members may send proposals through the hub")
    if content.epoch != view.epoch:
        raise WrongEpochRejection(view.epoch, f"proposal for epoch {content.epoch}, "
                                              f"current {view.epoch}")
    check_member_signature(view, message, sender)
    return proposal_ref(view.cs, AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content,
                                                      message.auth))


# -- commit bundles -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckedCommit:
    """A commit bundle that passed every public check."""

    new_view: PublicGroup
    covered: tuple[bytes, ...]
    welcome_recipients: tuple[str, ...]
    tree_bytes: bytes = field(repr=False)
    external: bool = False


def commit_message(message: MLSMessage) -> PublicMessage:
    """The PublicMessage Commit inside ``message`` (the hub must see commits)."""
    body = message.body
    if not isinstance(body, PublicMessage):
        raise Malformed("a commit must be a PublicMessage (the hub orders what it can see)")
    if body.content.content_type != ContentType.COMMIT:
        raise Malformed("the submitted message is not a commit")
    return body


def check_commit(view: PublicGroup, message: PublicMessage, group_info_bytes: bytes,
                 tree_bytes: bytes, welcome_bytes: bytes, sender: str,
                 hub_signature_key: bytes) -> CheckedCommit:
    """Every public check of a commit bundle (see the module docstring)."""
    content = message.content
    commit = content.content
    assert isinstance(commit, Commit)
    if content.group_id != view.group_id:
        raise Malformed("commit is for another group")
    if content.epoch != view.epoch:
        raise WrongEpochRejection(view.epoch)
    external = content.sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if external:
        committer_key = _check_external_commit(view, message, commit, sender)
    elif content.sender.sender_type == SenderType.MEMBER:
        check_member_signature(view, message, sender)
        committer_key = None
    else:
        raise Forbidden("only members and new members may commit")
    checked = check_group_info(group_info_bytes, tree_bytes)
    info = checked.group_info
    context = info.group_context
    if (context.group_id, context.epoch) != (view.group_id, view.epoch + 1):
        raise InvalidCommit("GroupInfo is not for the next epoch of this group")
    if context.cipher_suite != view.context.cipher_suite:
        raise InvalidCommit("GroupInfo changes the cipher suite")
    _check_committer(info, checked.tree, content.sender.leaf_index, committer_key)
    _check_transcript(view, message, info)
    new_view = PublicGroup(context, checked.tree, info.confirmation_tag, view.verifier)
    if new_view.external_sender_index(hub_signature_key) is None:
        raise InvalidCommit("the commit removes the hub from external_senders")
    recipients = _check_welcome(view.tree, checked.tree, new_view, welcome_bytes)
    covered = tuple(entry.reference for entry in commit.proposals
                    if entry.reference is not None)
    return CheckedCommit(new_view, covered, recipients, checked.tree_bytes, external)


def _check_external_commit(view: PublicGroup, message: PublicMessage, commit: Commit,
                           sender: str) -> bytes:
    """RFC 9420 §12.4.3.2 seen from outside: a path whose leaf names the sender, every
    proposal by value, one ExternalInit, Removes only of the sender's own old leaves."""
    if commit.path is None:
        raise InvalidCommit("an external commit needs an UpdatePath")
    leaf = commit.path.leaf_node
    if identity_of(leaf.credential, view.verifier) != sender:
        raise Forbidden("the external commit's leaf names another user than the sender")
    proposals = [entry.proposal for entry in commit.proposals]
    if any(proposal is None for proposal in proposals):
        raise InvalidCommit("an external commit carries its proposals by value")
    if sum(isinstance(proposal, ExternalInit) for proposal in proposals) != 1:
        raise InvalidCommit("an external commit needs exactly one ExternalInit")
    for proposal in proposals:
        if isinstance(proposal, Remove) and view.members.get(proposal.removed) != sender:
            raise Forbidden("an external commit may only remove the sender's own leaf")
    authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, message.content,
                                         message.auth)
    try:
        verify_content_signature(view.cs, leaf.signature_key, authenticated,
                                 view.context_bytes)
    except (SignatureError, CryptoError) as exc:
        raise BadSignature("external commit signature does not verify") from exc
    return leaf.signature_key


def _check_committer(info: GroupInfo, tree: RatchetTree, sender_leaf: int,
                     external_key: bytes | None) -> None:
    if external_key is None:
        if info.signer != sender_leaf:
            raise InvalidCommit("the GroupInfo is not signed by the committer")
        return
    signer = tree.leaf(LeafIndex(info.signer))
    if signer is None or signer.signature_key != external_key:
        raise InvalidCommit("the GroupInfo is not signed by the new member")


def _check_transcript(view: PublicGroup, message: PublicMessage, info: GroupInfo) -> None:
    """The GroupInfo's transcript hash and confirmation tag come from this commit."""
    authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, message.content,
                                         message.auth)
    confirmed = view.cs.hash(view.interim_transcript_hash()
                             + confirmed_transcript_hash_input(authenticated))
    if confirmed != info.group_context.confirmed_transcript_hash:
        raise InvalidCommit("the GroupInfo's transcript hash does not follow this commit")
    if message.auth.confirmation_tag != info.confirmation_tag:
        raise InvalidCommit("the GroupInfo's confirmation tag is not the commit's")


def added_leaves(old: RatchetTree, new: RatchetTree) -> list[int]:
    """Leaves of ``new`` filled by an Add: a KeyPackage-sourced leaf node that was not
    at that position in ``old`` (Adds copy the KeyPackage's leaf node, RFC 9420 §12.1.1;
    updated and committing leaves have other sources)."""
    added = []
    for leaf, node in new.member_leaves():
        if node.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
            continue
        before = old.leaf(leaf) if leaf < old.n_leaves else None
        if before != node:
            added.append(int(leaf))
    return added


def _check_welcome(old: RatchetTree, new: RatchetTree, new_view: PublicGroup,
                   welcome_bytes: bytes) -> tuple[str, ...]:
    added = added_leaves(old, new)
    if not added:
        if welcome_bytes:
            raise InvalidCommit("a Welcome but the commit adds nobody")
        return ()
    if not welcome_bytes:
        raise InvalidCommit("the commit adds members but carries no Welcome")
    body = parse_message(welcome_bytes, "Welcome").body
    if not isinstance(body, Welcome):
        raise Malformed("the welcome field is not a Welcome")
    if len(body.secrets) != len(added):
        raise InvalidCommit(f"the Welcome has {len(body.secrets)} entries for "
                            f"{len(added)} added members")
    return tuple(sorted({new_view.members[leaf] for leaf in added}))

