"""A group seen from outside, without its secrets: what a delivery service (RFC 9750
§5.2) can verify of every handshake message (RFC 9420 §6.1, §8.2, §12.4.2, §12.4.3).

A :class:`PublicGroup` is the public state of one epoch: the GroupContext, the
ratchet tree, the confirmation tag of the Commit that started the epoch (hence the
interim transcript hash, §8.2), the proposals received in the epoch and, once a
ReInit was committed, that ReInit.  Like :class:`~mls.group.group.Group` it is
immutable: every operation returns a new PublicGroup, and a rejected message raises
and leaves the old one as it was, byte for byte (:meth:`PublicGroup.to_bytes`).

* :meth:`PublicGroup.from_group_info` makes the checks of a joiner that need no
  secret (§12.4.3.1): the GroupInfo signature by its signer leaf (§12.4.3), the tree
  hash against the GroupContext, and the full tree validation (leaves §7.3, parent
  hashes §7.9.2, unmerged leaves, unique keys).
* :meth:`PublicGroup.process` takes a PublicMessage.  A proposal: group, epoch, the
  signature by its sender (§6.1: a member's leaf, an ``external_senders`` entry,
  §12.1.8.1, or a new member's KeyPackage), the proposal's own checks (§12.1); it
  is then pending for the epoch under its ProposalRef.  A Commit: its signature (a
  member, or the new member of an external Commit with the rules of §12.4.3.2), its
  proposals by value and by reference, the proposal-list rules (§12.2), their
  application (§12.3), the UpdatePath's leaf node (§7.3) and the path merged into
  the tree with its parent hashes (§7.5, §7.9.2), then the new tree hash, the new
  GroupContext (epoch + 1, the extensions after GroupContextExtensions, the
  confirmed transcript hash of this Commit, §8.2) and the next interim transcript
  hash from the Commit's confirmation tag.  A member runs the same code for these
  steps (:mod:`mls.group.epoch`, :mod:`mls.group.proposal_checks`).
* :meth:`PublicGroup.check_group_info` compares a GroupInfo with the state: the same
  GroupContext and confirmation tag, signed by the expected leaf;
  :meth:`PublicCommit.check_welcome` compares a Welcome with the Commit: one entry
  per KeyPackage the Commit added, no other (§12.4.3.1).
* :meth:`PublicGroup.from_parts` rebuilds the state of an epoch from a GroupContext,
  tree and confirmation tag that the caller verified itself before and stored;
  :func:`message_header` reads what a delivery service routes a message by (§6).

Not checked, because it needs the group's secrets: the membership tag of a member's
PublicMessage (§6.2), the MAC of the confirmation tag (§6.1, §8.1), the encrypted
path secrets of an UpdatePath and that they match its public keys (§7.5; only their
number per copath node is checked, §7.6), the ExternalInit's ``kem_output`` (§8.3),
and whether the PSKs a Commit names exist and what they hold (§8.4).  The members
check those when they process the same Commit.  PrivateMessages are not readable.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from mls.codec import Reader, Writer, decode
from mls.crypto.suite import CipherSuite, suite
from mls.enums import ContentType, ExtensionType, ProtocolVersion, WireFormat
from mls.errors import DecodeError, UsageError, ValidationError
from mls.framing.public import verify_content_signature
from mls.framing.refs import key_package_ref, proposal_ref
from mls.framing.welcome import verify_group_info
from mls.group.credentials import CredentialValidator
from mls.group.epoch import (
    commit_event,
    confirmed_context,
    merge_received_path,
    receive_commit,
)
from mls.group.events import CommitEvent, ProposalEvent
from mls.group.external_senders import external_senders
from mls.group.join import group_info_of, group_tree, validate_group_tree
from mls.group.proposal_checks import receive_proposal
from mls.group.proposal_list import ProposalOutcome, SenderProposal
from mls.group.senders import public_message_signer
from mls.group.state import (
    PendingProposal,
    read_pending,
    read_tree,
    write_pending,
    write_tree,
)
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender
from mls.messages.extensions import GroupContext, find_extension
from mls.messages.framing import (
    AuthenticatedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    interim_transcript_hash_input,
)
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import Commit, Proposal, ReInit
from mls.messages.psk import PreSharedKeyID
from mls.messages.welcome import GroupInfo, Welcome
from mls.schedule.transcript import interim_transcript_hash
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree

PUBLIC_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class MemberLeaf:
    """A leaf that a Commit added, removed or updated: its index, credential and
    signature key.  For a leaf filled by an Add, ``key_package_ref`` is the
    KeyPackageRef of its KeyPackage (RFC 9420 §5.2), which the Welcome names."""

    leaf_index: LeafIndex
    credential: Credential
    signature_key: bytes
    key_package_ref: bytes | None = None


@dataclass(frozen=True, slots=True)
class PublicCommit:
    """What a Commit changed, as a :class:`PublicGroup` saw it (RFC 9420 §12.4.2).

    ``context`` is the new epoch's GroupContext.  ``committer`` is the leaf whose
    key signs the new epoch's GroupInfo: the sender's, or for an external Commit
    the joiner's new leaf (also in ``added``, without KeyPackageRef).  ``removed``
    holds the leaves as they were before the Commit, ``added`` and ``updated`` as
    they are after it (``updated``: the senders of Updates and a committer that sent
    a path).  ``covered`` are the ProposalRefs the Commit covers by reference.
    """

    context: GroupContext
    sender: Sender
    committer: LeafIndex
    external: bool
    added: tuple[MemberLeaf, ...]
    removed: tuple[MemberLeaf, ...]
    updated: tuple[MemberLeaf, ...]
    covered: tuple[bytes, ...]
    psks: tuple[PreSharedKeyID, ...]
    reinit: ReInit | None
    confirmation_tag: bytes

    @property
    def epoch(self) -> int:
        return self.context.epoch

    def check_welcome(self, welcome: MLSMessage | Welcome | bytes | None
                      ) -> tuple[MemberLeaf, ...]:
        """Check that ``welcome`` is the Welcome of this Commit (RFC 9420 §12.4.3.1):
        none if the Commit adds no KeyPackage, else one of this group's cipher suite
        with exactly one ``EncryptedGroupSecrets`` per added KeyPackage, named by its
        KeyPackageRef, and no other.  Returns the leaves it welcomes; raises
        :class:`ValidationError` (:class:`UsageError` for another kind of message).
        Whether each entry decrypts is for its recipient to find out."""
        invited = {leaf.key_package_ref: leaf for leaf in self.added
                   if leaf.key_package_ref is not None}
        if welcome is None or welcome == b"":
            if invited:
                raise ValidationError(f"the Commit adds {len(invited)} KeyPackage(s) "
                                      f"but comes without a Welcome")
            return ()
        body = welcome if isinstance(welcome, Welcome) else (
            decode(MLSMessage, welcome) if isinstance(welcome, bytes) else welcome).body
        if not isinstance(body, Welcome):
            raise UsageError(f"expected a Welcome, not {type(body).__name__}")
        if not invited:
            raise ValidationError("a Welcome for a Commit that adds no KeyPackage")
        if body.cipher_suite != self.context.cipher_suite:
            raise ValidationError(f"the Welcome is for cipher suite {body.cipher_suite}")
        entries = [secrets.new_member for secrets in body.secrets]
        if len(entries) != len(set(entries)) or set(entries) != set(invited):
            raise ValidationError(f"the Welcome's {len(entries)} entries are not the "
                                  f"{len(invited)} KeyPackage(s) the Commit adds")
        return tuple(invited[ref] for ref in entries)


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """What a delivery service routes an MLS message by (RFC 9420 §6): its wire
    format, group, epoch and content type, all in the clear in both framings, and
    for a PublicMessage its sender (a PrivateMessage encrypts it, §6.3.2)."""

    wire_format: WireFormat
    group_id: bytes
    epoch: int
    content_type: ContentType
    sender: Sender | None


def message_header(message: MLSMessage | bytes) -> MessageHeader:
    """The :class:`MessageHeader` of a PublicMessage or PrivateMessage (RFC 9420 §6.2,
    §6.3); :class:`~mls.errors.DecodeError` for bytes that are not an MLSMessage,
    :class:`UsageError` for a Welcome, GroupInfo or KeyPackage."""
    body = (decode(MLSMessage, message) if isinstance(message, bytes) else message).body
    if isinstance(body, PublicMessage):
        content = body.content
        return MessageHeader(WireFormat.PUBLIC_MESSAGE, content.group_id, content.epoch,
                             content.content_type, content.sender)
    if isinstance(body, PrivateMessage):
        return MessageHeader(WireFormat.PRIVATE_MESSAGE, body.group_id, body.epoch,
                             body.content_type, None)
    raise UsageError(f"a {type(body).__name__} is not a framed message")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class PublicGroup:
    """The public state of a group in one epoch (see the module docstring).

    Build it with :meth:`from_group_info` or :meth:`from_bytes`; never change its
    ``tree`` (operations copy it).
    """

    cs: CipherSuite
    context: GroupContext
    tree: RatchetTree
    confirmation_tag: bytes
    pending: tuple[PendingProposal, ...] = ()
    reinit: ReInit | None = None
    interim_transcript_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        """The interim transcript hash from the confirmed one and the confirmation
        tag (RFC 9420 §8.2)."""
        interim = interim_transcript_hash(
            self.cs, self.context.confirmed_transcript_hash,
            interim_transcript_hash_input(self.confirmation_tag))
        object.__setattr__(self, "interim_transcript_hash", interim)

    def __repr__(self) -> str:
        return (f"PublicGroup(group_id={self.group_id.hex()}, epoch={self.epoch}, "
                f"members={self.tree.member_count()}, pending={len(self.pending)}, "
                f"retired={self.retired})")

    # -- creation and serialization ---------------------------------------------------

    @classmethod
    def from_group_info(cls, group_info: MLSMessage | GroupInfo | bytes, *,
                        ratchet_tree: RatchetTree | bytes | None = None,
                        now: int | None = None,
                        credential_validator: CredentialValidator | None = None
                        ) -> PublicGroup:
        """The group of a GroupInfo and its ratchet tree (from the ``ratchet_tree``
        extension, else ``ratchet_tree``), after the joiner's checks that need no
        secret (RFC 9420 §12.4.3, §12.4.3.1): GroupInfo signature, tree hash, full
        tree validation; ``credential_validator`` is asked about every member."""
        info = group_info_of(group_info)
        context = info.group_context
        if context.version != ProtocolVersion.MLS10:
            raise ValidationError(f"GroupInfo of protocol version {context.version}")
        cs = suite(context.cipher_suite)
        tree = group_tree(cs, info, ratchet_tree)
        validate_group_tree(cs, tree, info, credential_validator=credential_validator)
        return cls(cs, context, tree, info.confirmation_tag)

    @classmethod
    def from_parts(cls, context: GroupContext, ratchet_tree: RatchetTree | bytes,
                   confirmation_tag: bytes) -> PublicGroup:
        """The group of an epoch from its GroupContext, ratchet tree and the
        confirmation tag of the Commit that started it (RFC 9420 §8.2), with no
        pending proposals: for state the caller verified before and kept itself
        (a delivery service upgrading a record of an older format), *not* for
        anything received -- that is :meth:`from_group_info`'s job.  Only their
        consistency is checked (cipher suite and version, tag length, the tree's
        hash against ``context.tree_hash``); the tree is not validated again.
        Received proposals of the epoch are then added with :meth:`process`."""
        if context.version != ProtocolVersion.MLS10:
            raise ValidationError(f"GroupContext of protocol version {context.version}")
        cs = suite(context.cipher_suite)
        tree = ratchet_tree if isinstance(ratchet_tree, RatchetTree) else \
            RatchetTree.from_bytes(cs, ratchet_tree)
        if len(confirmation_tag) != cs.hash_len:
            raise ValidationError("the confirmation tag is of the wrong length")
        if tree.tree_hash() != context.tree_hash:
            raise ValidationError("the ratchet tree's hash is not the GroupContext's "
                                  "tree_hash")
        return cls(cs, context, tree.copy(), confirmation_tag)

    def to_bytes(self) -> bytes:
        """The whole public state, versioned (no secrets in it)."""
        w = Writer()
        w.u8(PUBLIC_STATE_VERSION)
        w.u16(self.cs.id)
        self.context.encode(w)
        write_tree(w, self.tree)
        w.opaque(self.confirmation_tag)
        w.vector(self.pending, write_pending)
        w.optional(self.reinit)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicGroup:
        """Inverse of :meth:`to_bytes`; malformed state raises DecodeError."""
        r = Reader(data)
        version = r.u8()
        if version != PUBLIC_STATE_VERSION:
            raise DecodeError(f"unsupported public group state version {version}")
        cs = suite(r.u16())
        context = GroupContext.decode(r)
        tree = read_tree(r, cs)
        tag = r.opaque()
        pending = r.vector(read_pending)
        reinit = r.optional(ReInit)
        r.finish("PublicGroup")
        if context.cipher_suite != cs.id:
            raise DecodeError("public group state: cipher suite differs from the context's")
        return cls(cs, context, tree, tag, pending, reinit)

    # -- inspection -------------------------------------------------------------------

    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    @property
    def epoch(self) -> int:
        return self.context.epoch

    @property
    def retired(self) -> bool:
        """Whether a ReInit was committed: the group takes no more proposals or
        Commits (RFC 9420 §11.2)."""
        return self.reinit is not None

    def members(self) -> Iterator[tuple[LeafIndex, LeafNode]]:
        """Every member's leaf index and leaf node (credential, signature key, ...),
        left to right."""
        return self.tree.member_leaves()

    def member(self, leaf_index: int) -> LeafNode | None:
        """The leaf node at ``leaf_index``, ``None`` if blank or outside the tree."""
        if not 0 <= leaf_index < self.tree.n_leaves:
            return None
        return self.tree.leaf(LeafIndex(leaf_index))

    def external_senders(self) -> tuple[ExternalSender, ...]:
        """The ``external_senders`` extension of the GroupContext (RFC 9420
        §12.1.8.1), empty if absent."""
        return external_senders(self.context.extensions)

    def ratchet_tree(self) -> bytes:
        """The ratchet tree, as the ``ratchet_tree`` extension holds it (§12.4.3.3)."""
        return self.tree.to_bytes()

    def proposals(self) -> tuple[ProposalEvent, ...]:
        """The proposals received in this epoch (pending until a Commit covers them,
        RFC 9420 §12.4), in the order received, each with its ProposalRef, sender and
        ``authenticated_data`` (§6.1)."""
        return tuple(ProposalEvent(item.ref, _proposal_of(item), item.authenticated.content.sender,
                                   item.authenticated.content.authenticated_data)
                     for item in self.pending)

    # -- messages -----------------------------------------------------------------------

    def process(self, message: MLSMessage | bytes, *, now: int | None = None,
                credential_validator: CredentialValidator | None = None
                ) -> tuple[PublicGroup, ProposalEvent | PublicCommit]:
        """Verify a PublicMessage proposal or Commit of this epoch and apply it (see
        the module docstring): a proposal becomes pending (:class:`ProposalEvent`), a
        Commit moves to the next epoch (:class:`PublicCommit`).  Raises
        :class:`~mls.errors.ValidationError` (or a subclass), :class:`EpochError` for
        another epoch, :class:`UsageError` for what a PublicGroup cannot read."""
        body = (decode(MLSMessage, message) if isinstance(message, bytes) else message).body
        if not isinstance(body, PublicMessage):
            raise UsageError(f"a PublicGroup reads PublicMessages only, not "
                             f"{type(body).__name__}")
        if self.retired:
            raise UsageError("this group was reinitialized (ReInit): it takes no more "
                             "proposals or commits")
        content = body.content
        if content.content_type == ContentType.APPLICATION:
            raise ValidationError("application data received in a PublicMessage")
        signature_key = public_message_signer(self, content)
        authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, body.auth)
        verify_content_signature(self.cs, signature_key, authenticated, self.context.to_bytes())
        if content.content_type == ContentType.PROPOSAL:
            ref = proposal_ref(self.cs, authenticated)
            pending, event = receive_proposal(self, authenticated, ref,
                                              credential_validator=credential_validator)
            return replace(self, pending=pending), event
        return self._apply_commit(authenticated, now, credential_validator)

    def _apply_commit(self, authenticated: AuthenticatedContent, now: int | None,
                      credential_validator: CredentialValidator | None
                      ) -> tuple[PublicGroup, PublicCommit]:
        """RFC 9420 §12.4.2 without the steps that need secrets."""
        content = authenticated.content
        commit = content.content
        assert isinstance(commit, Commit)
        tag = authenticated.auth.confirmation_tag
        if tag is None or len(tag) != self.cs.hash_len:
            raise ValidationError("the Commit's confirmation tag is missing or of the "
                                  "wrong length")
        sender = content.sender
        proposals, outcome = receive_commit(self, content,
                                            credential_validator=credential_validator)
        merged = merge_received_path(self, outcome, commit, sender, now=now,
                                     credential_validator=credential_validator)
        context = confirmed_context(self, merged.context, wire_format=authenticated.wire_format,
                                    content=content, signature=authenticated.auth.signature)
        new = PublicGroup(self.cs, context, merged.tree, tag, (), outcome.reinit)
        path_leaf = None if commit.path is None else merged.sender_leaf
        event = commit_event(context.epoch, sender, proposals, outcome, path_leaf=path_leaf)
        return new, _public_commit(self, new, event, outcome, proposals, merged.sender_leaf)

    def check_group_info(self, group_info: MLSMessage | GroupInfo | bytes, *,
                         signer: int | None = None) -> GroupInfo:
        """Check that a GroupInfo describes this epoch (RFC 9420 §12.4.3): the same
        GroupContext (byte for byte) and confirmation tag, signed by the leaf
        ``signer`` if given (after a Commit: :attr:`PublicCommit.committer`), else by
        any member, and a ``ratchet_tree`` extension, if present, holding this tree.
        Returns the GroupInfo; raises :class:`ValidationError` (a bad signature:
        :class:`~mls.errors.SignatureError`)."""
        info = group_info_of(group_info)
        if info.group_context.to_bytes() != self.context.to_bytes():
            raise ValidationError("the GroupInfo's GroupContext is not this epoch's")
        if not hmac.compare_digest(info.confirmation_tag, self.confirmation_tag):
            raise ValidationError("the GroupInfo's confirmation tag is not this epoch's")
        if signer is not None and info.signer != signer:
            raise ValidationError(f"the GroupInfo is signed by leaf {info.signer}, "
                                  f"not by leaf {signer}")
        leaf = self.member(info.signer)
        if leaf is None:
            raise ValidationError(f"the GroupInfo's signer {info.signer} is not a member")
        verify_group_info(self.cs, info, leaf.signature_key)
        extension = find_extension(info.extensions, ExtensionType.RATCHET_TREE)
        if extension is not None and extension.extension_data != self.tree.to_bytes():
            raise ValidationError("the GroupInfo's ratchet_tree is not this epoch's tree")
        return info


def _proposal_of(item: PendingProposal) -> Proposal:
    proposal = item.authenticated.content.content
    assert not isinstance(proposal, (bytes, Commit))
    return proposal


def _member_leaf(tree: RatchetTree, leaf_index: LeafIndex,
                 key_package_ref: bytes | None = None) -> MemberLeaf:
    leaf = tree.leaf(leaf_index)
    assert leaf is not None
    return MemberLeaf(leaf_index, leaf.credential, leaf.signature_key, key_package_ref)


def _public_commit(old: PublicGroup, new: PublicGroup, event: CommitEvent,
                   outcome: ProposalOutcome, proposals: tuple[SenderProposal, ...],
                   committer: LeafIndex) -> PublicCommit:
    refs = {leaf: key_package_ref(old.cs, key_package) for leaf, key_package
            in zip(outcome.added, outcome.added_key_packages, strict=True)}
    return PublicCommit(
        new.context, event.sender, committer, event.external,
        added=tuple(_member_leaf(new.tree, leaf, refs.get(leaf)) for leaf in event.added),
        removed=tuple(_member_leaf(old.tree, leaf) for leaf in event.removed),
        updated=tuple(_member_leaf(new.tree, leaf) for leaf in event.updated),
        covered=tuple(sp.ref for sp in proposals if sp.ref is not None),
        psks=event.psks, reinit=event.reinit, confirmation_tag=new.confirmation_tag)
