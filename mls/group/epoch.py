"""The "next epoch" pipeline shared by the committer and the receivers of a Commit
(RFC 9420 §12.4.1, §12.4.2, §12.4.3.2).

Two stages, because the committer must sign the Commit between them:

1. A :class:`ProvisionalEpoch` -- resolve the proposals (by value, or by reference
   from the pending store), validate the list (§12.2), apply it (§12.3), then apply
   the UpdatePath: the committer creates it (:func:`create_path`); a receiver
   validates and merges it (:func:`receive_commit`, then :func:`merge_received_path`)
   and decrypts it (:func:`receive_path`).  The result holds the new tree, the
   provisional GroupContext (epoch + 1, new tree hash, the *old* confirmed transcript
   hash, new extensions) and the commit secret.
2. :func:`finish_epoch` -- from the signed commit content: the confirmed transcript
   hash, the new GroupContext, the PSK secret, the key schedule (init secret of the
   previous epoch, or the ExternalInit secret), the confirmation tag, the interim
   transcript hash and the new secret tree.  :func:`next_state` turns the result
   into the new :class:`~mls.group.state.GroupState`.

The receiver's steps that need no secret (everything up to the path decryption, and
the confirmed transcript hash, :func:`confirmed_context`) read only an
:class:`~mls.group.state.EpochView`: a member's group and a
:class:`~mls.group.public.PublicGroup` run the same code.

Nothing here mutates its inputs: trees are copied before they change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from mls.codec import encode
from mls.crypto.suite import Rng
from mls.enums import LeafNodeSource, ResumptionPSKUsage, SenderType, WireFormat
from mls.errors import ProposalValidationError, UsageError, ValidationError
from mls.group.credentials import CredentialValidator
from mls.group.events import CommitEvent
from mls.group.leaf_validation import validate_leaf_node
from mls.group.proposal_list import (
    ProposalOutcome,
    SenderProposal,
    apply_proposals,
    path_required,
    validate_proposal_list,
)
from mls.group.psk import PskResolver
from mls.group.state import EpochView, GroupState, PastEpoch, start_epoch_keys
from mls.messages.extensions import GroupContext
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    Sender,
    confirmed_transcript_hash_input,
    interim_transcript_hash_input,
)
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import Commit, Update
from mls.messages.psk import PreSharedKeyID
from mls.messages.tree_nodes import UpdatePath
from mls.schedule.key_schedule import EpochSecrets, advance_epoch
from mls.schedule.psk import psk_secret
from mls.schedule.transcript import (
    confirmation_tag,
    confirmed_transcript_hash,
    interim_transcript_hash,
)
from mls.tree.math import LeafIndex, NodeIndex
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import (
    create_update_path,
    decrypt_update_path,
    merge_update_path,
)


@dataclass(frozen=True, slots=True)
class ProvisionalEpoch:
    """Stage one of the pipeline (see the module docstring).

    ``sender_leaf`` is the committer's leaf (for an external commit: the leaf the
    joiner takes).  ``new_keys`` are HPKE private keys (by public key) learnt from
    the UpdatePath; ``path_secrets`` are the committer's, for Welcome messages.
    """

    proposals: tuple[SenderProposal, ...]
    outcome: ProposalOutcome
    tree: RatchetTree
    context: GroupContext
    sender_leaf: LeafIndex
    update_path: UpdatePath | None
    commit_secret: bytes = field(repr=False)
    new_keys: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)
    path_secrets: Mapping[NodeIndex, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class EpochResult:
    """Stage two of the pipeline: the new epoch's context and secrets."""

    context: GroupContext
    secrets: EpochSecrets = field(repr=False)
    joiner_secret: bytes = field(repr=False)
    welcome_secret: bytes = field(repr=False)
    confirmation_tag: bytes
    interim_transcript_hash: bytes
    psks: tuple[tuple[PreSharedKeyID, bytes], ...] = field(default=(), repr=False)


# -- stage 1: proposals ----------------------------------------------------------------

def resolve_proposals(view: EpochView, commit: Commit,
                      committer: Sender) -> tuple[SenderProposal, ...]:
    """The Commit's proposals with their senders (RFC 9420 §12.4.2): by value from
    the committer, by reference from the pending store of this epoch."""
    pending = {item.ref: item for item in view.pending}
    out: list[SenderProposal] = []
    for entry in commit.proposals:
        if entry.proposal is not None:
            out.append(SenderProposal(entry.proposal, committer, None))
            continue
        assert entry.reference is not None
        item = pending.get(entry.reference)
        if item is None:
            raise ProposalValidationError("Commit references an unknown proposal")
        content = item.authenticated.content
        assert not isinstance(content.content, (bytes, Commit))
        out.append(SenderProposal(content.content, content.sender, entry.reference))
    return tuple(out)


def check_and_apply(view: EpochView, proposals: Sequence[SenderProposal], *,
                    committer: Sender, has_path: bool, now: int | None,
                    credential_validator: CredentialValidator | None,
                    linked_usage: ResumptionPSKUsage | None = None) -> ProposalOutcome:
    """Validate the proposal list (RFC 9420 §12.2), check that a path is present
    when required (§12.4) and apply the proposals to a copy of the tree (§12.3).
    ``now`` and ``linked_usage``: see
    :func:`~mls.group.proposal_list.validate_proposal_list` (the committer gives
    ``now``, a receiver ``None``)."""
    external = committer.sender_type == SenderType.NEW_MEMBER_COMMIT
    validate_proposal_list(view.cs, proposals, committer=committer, tree=view.tree,
                           group_context=view.context, now=now,
                           credential_validator=credential_validator,
                           is_external_commit=external, linked_usage=linked_usage)
    if not has_path and (external or path_required(proposals)):
        raise ProposalValidationError("this Commit requires an UpdatePath")
    return apply_proposals(view.cs, proposals, tree=view.tree, group_context=view.context)


def receive_commit(view: EpochView, content: FramedContent, *,
                   credential_validator: CredentialValidator | None
                   ) -> tuple[tuple[SenderProposal, ...], ProposalOutcome]:
    """A received Commit up to its path (RFC 9420 §12.4.2): the sender may commit (a
    member, or a new member for an external Commit, §12.4.3.2), the proposals are
    resolved, validated (§12.2) and applied (§12.3), and a path is present when
    required (§12.4).  The signature was checked by the caller.  Received KeyPackages'
    lifetimes are not judged (RFC 9420 §7.3 only recommends it on receipt)."""
    commit = content.content
    assert isinstance(commit, Commit)
    sender = content.sender
    if sender.sender_type not in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
        raise ValidationError("only members and new members can send a Commit")
    proposals = resolve_proposals(view, commit, sender)
    outcome = check_and_apply(view, proposals, committer=sender,
                              has_path=commit.path is not None, now=None,
                              credential_validator=credential_validator)
    return proposals, outcome


def commit_event(epoch: int, sender: Sender, proposals: Sequence[SenderProposal],
                 outcome: ProposalOutcome, *, path_leaf: LeafIndex | None = None
                 ) -> CommitEvent:
    """What a Commit changed (RFC 9420 §12.3, §12.4): the leaves its proposals added
    and removed, the senders of its Updates, its PSKs and ReInit.  ``path_leaf`` is
    the leaf whose UpdatePath was merged, if any: the joiner of an external Commit
    (added) or the committing member (updated)."""
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    updated = tuple(LeafIndex(sp.sender.leaf_index) for sp in proposals
                    if isinstance(sp.proposal, Update))
    added = outcome.added
    if path_leaf is not None:
        if external:
            added = (*added, path_leaf)
        else:
            updated = (*updated, path_leaf)
    return CommitEvent(epoch, sender, added, outcome.removed, updated, outcome.psk_ids,
                       outcome.reinit, external=external)


def provisional_context(view: EpochView, outcome: ProposalOutcome,
                        tree_hash: bytes) -> GroupContext:
    """The provisional GroupContext of RFC 9420 §12.4.1 / §12.4.2."""
    return replace(view.context, epoch=view.context.epoch + 1, tree_hash=tree_hash,
                   extensions=outcome.extensions)


def external_sender_leaf(tree: RatchetTree) -> tuple[RatchetTree, LeafIndex]:
    """The leaf an external joiner takes: the leftmost blank leaf of (a copy of) the
    tree after the proposals, extending it if there is none (RFC 9420 §12.4.3.2)."""
    tree = tree.copy()
    leaf = tree.leftmost_blank_leaf()
    if leaf is None:
        leaf = LeafIndex(tree.n_leaves)
        tree.extend()
    return tree, leaf


# -- stage 1: the UpdatePath -----------------------------------------------------------

def create_path(state: GroupState, outcome: ProposalOutcome, proposals: Sequence[SenderProposal],
                *, sender_leaf: LeafIndex, leaf_template: LeafNode, signature_priv: bytes,
                rng: Rng, tree: RatchetTree | None = None,
                external: bool = False) -> ProvisionalEpoch:
    """The committer's side: a fresh UpdatePath over the tree after the proposals
    (``tree``, default ``outcome.tree``), excluding the leaves added by this Commit
    (RFC 9420 §12.4.1)."""

    def context_for(tree_hash: bytes) -> bytes:
        return encode(provisional_context(state, outcome, tree_hash))

    base_tree = outcome.tree if tree is None else tree
    created = create_update_path(base_tree, sender_leaf, leaf_template, signature_priv,
                                 state.group_id, context_for, rng,
                                 excluded_leaves=outcome.added, allow_blank_sender=external)
    new_keys = {}
    for node, private in created.private_keys.items():
        value = created.tree.node(node)
        assert value is not None
        new_keys[value.encryption_key] = private
    context = provisional_context(state, outcome, created.tree.tree_hash())
    return ProvisionalEpoch(tuple(proposals), outcome, created.tree, context, sender_leaf,
                            created.update_path, created.commit_secret, new_keys,
                            created.path_secrets)


def without_path(state: GroupState, outcome: ProposalOutcome,
                 proposals: Sequence[SenderProposal], sender_leaf: LeafIndex
                 ) -> ProvisionalEpoch:
    """A Commit without UpdatePath: commit_secret is the zero vector (§12.4.1)."""
    context = provisional_context(state, outcome, outcome.tree.tree_hash())
    return ProvisionalEpoch(tuple(proposals), outcome, outcome.tree, context, sender_leaf,
                            None, b"")


@dataclass(frozen=True, slots=True)
class MergedPath:
    """A received Commit applied to the public tree: the tree after its proposals and
    UpdatePath, the leaf of the committer (for an external Commit: the joiner's new
    leaf) and the provisional GroupContext (RFC 9420 §12.4.2)."""

    tree: RatchetTree
    sender_leaf: LeafIndex
    context: GroupContext


def merge_received_path(view: EpochView, outcome: ProposalOutcome, commit: Commit,
                        sender: Sender, *, now: int | None,
                        credential_validator: CredentialValidator | None) -> MergedPath:
    """The public half of applying a received UpdatePath (RFC 9420 §12.4.2), nothing
    decrypted: the joiner of an external Commit takes the leftmost blank leaf
    (§12.4.3.2); the path's leaf node is validated (§7.3, source commit; for a resync,
    as an Update of the removed leaf); the path is merged (fresh keys, one ciphertext
    per copath resolution node, parent hashes, §7.5, §7.9.2); the provisional
    GroupContext gets the new tree hash.  Without a path: the tree after the
    proposals."""
    update_path = commit.path
    if update_path is None:
        return MergedPath(outcome.tree, LeafIndex(sender.leaf_index),
                          provisional_context(view, outcome, outcome.tree.tree_hash()))
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if external:
        tree, sender_leaf = external_sender_leaf(outcome.tree)
    else:
        tree, sender_leaf = outcome.tree, LeafIndex(sender.leaf_index)
    check_context = replace(view.context, extensions=outcome.extensions)
    check_tree, replacing = tree, None if external else sender_leaf
    if external and outcome.removed:  # a resync: the new leaf succeeds the removed one
        check_tree, replacing = view.tree, outcome.removed[0]
    validate_leaf_node(view.cs, update_path.leaf_node, group_context=check_context,
                       tree=check_tree, leaf_index=sender_leaf,
                       expected_source=LeafNodeSource.COMMIT, now=now,
                       credential_validator=credential_validator, replacing=replacing)
    merged = merge_update_path(tree, sender_leaf, update_path,
                               excluded_leaves=outcome.added, allow_blank_sender=external)
    return MergedPath(merged, sender_leaf,
                      provisional_context(view, outcome, merged.tree_hash()))


def receive_path(state: GroupState, outcome: ProposalOutcome,
                 proposals: Sequence[SenderProposal], merged: MergedPath,
                 update_path: UpdatePath | None) -> ProvisionalEpoch:
    """A member's side of a received Commit after :func:`merge_received_path`
    (RFC 9420 §12.4.2): decrypt the path secret meant for us and derive the commit
    secret (the zero vector without a path, §12.4.1)."""
    if update_path is None:
        return ProvisionalEpoch(tuple(proposals), outcome, merged.tree, merged.context,
                                merged.sender_leaf, None, b"")
    sender_leaf, tree = merged.sender_leaf, merged.tree
    if sender_leaf == state.own_leaf:
        raise UsageError("a member cannot process its own commit: merge it")
    decrypted = decrypt_update_path(tree, sender_leaf, state.own_leaf,
                                    state.node_private_keys(tree), update_path,
                                    encode(merged.context), excluded_leaves=outcome.added)
    new_keys = {}
    for node, private in decrypted.private_keys.items():
        value = tree.node(node)
        assert value is not None
        new_keys[value.encryption_key] = private
    return ProvisionalEpoch(tuple(proposals), outcome, tree, merged.context, sender_leaf,
                            update_path, decrypted.commit_secret, new_keys)


# -- stage 2: the key schedule ------------------------------------------------------------

def confirmed_context(view: EpochView, provisional: GroupContext, *,
                      wire_format: WireFormat, content: FramedContent,
                      signature: bytes) -> GroupContext:
    """The new epoch's GroupContext: the provisional one with the confirmed transcript
    hash that the signed Commit ``content`` extends the interim one with
    (RFC 9420 §8.2)."""
    signed = AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, b""))
    confirmed = confirmed_transcript_hash(view.cs, view.interim_transcript_hash,
                                          confirmed_transcript_hash_input(signed))
    return replace(provisional, confirmed_transcript_hash=confirmed)


def finish_epoch(state: GroupState, provisional: ProvisionalEpoch, *, wire_format: WireFormat,
                 content: FramedContent, signature: bytes, psks: PskResolver,
                 init_secret: bytes | None = None) -> EpochResult:
    """Transcript hashes, PSKs, key schedule and confirmation tag of the new epoch
    (RFC 9420 §8, §8.2, §12.4.1 steps after signing).

    ``init_secret`` overrides the previous epoch's (ExternalInit, §8.3).
    """
    cs = state.cs
    context = confirmed_context(state, provisional.context, wire_format=wire_format,
                                content=content, signature=signature)
    confirmed = context.confirmed_transcript_hash
    resolved = psks.resolve(provisional.outcome.psk_ids)
    secret = psk_secret(cs, resolved)
    init = state.secrets.init_secret if init_secret is None else init_secret
    joiner, welcome, secrets = advance_epoch(cs, init, provisional.commit_secret, secret,
                                             encode(context))
    tag = confirmation_tag(cs, secrets.confirmation_key, confirmed)
    interim = interim_transcript_hash(cs, confirmed, interim_transcript_hash_input(tag))
    return EpochResult(context, secrets, joiner, welcome, tag, interim, tuple(resolved))


def psk_resolver_for(state: GroupState, external_psks: Mapping[bytes, bytes] | None
                     ) -> PskResolver:
    """A resolver for external PSKs and this group's own resumption PSKs (§8.6)."""

    def resumption(group_id: bytes, epoch: int) -> bytes | None:
        if group_id != state.group_id:
            return None
        return state.resumption_psk(epoch)

    return PskResolver(external=dict(external_psks or {}), resumption=resumption)


def next_state(state: GroupState, provisional: ProvisionalEpoch, result: EpochResult, *,
               own_leaf: LeafIndex | None = None, signature_priv: bytes | None = None,
               extra_keys: Mapping[bytes, bytes] | None = None) -> GroupState:
    """The GroupState of the new epoch: old epoch moved to the history, pending
    proposals dropped, HPKE keys merged and pruned to those the new tree uses; a
    committed ReInit retires the group (RFC 9420 §11.2)."""
    tree = provisional.tree
    keys = dict(state.hpke_keys)
    keys.update(provisional.new_keys)
    keys.update(extra_keys or {})
    hpke_keys = {public: private for public, private in keys.items()
                 if tree.find_node_by_encryption_key(public) is not None}
    config = state.config
    secrets, secret_tree = start_epoch_keys(state.cs, result.secrets, tree.n_leaves, config)
    past = state.past_epochs
    psks = state.resumption_psks
    if state.active:  # an external joiner's pre-join view has no epoch of its own
        entry = PastEpoch(state.epoch, state.context_bytes(), state.tree, state.secret_tree,
                          state.secrets.sender_data_secret)
        past = (entry, *past)[:config.max_past_epochs]
        psks = ((state.epoch, state.secrets.resumption_psk), *psks)
    return state.replace(
        context=result.context, tree=tree,
        own_leaf=state.own_leaf if own_leaf is None else own_leaf,
        signature_priv=state.signature_priv if signature_priv is None else signature_priv,
        hpke_keys=hpke_keys, secrets=secrets, secret_tree=secret_tree,
        interim_transcript_hash=result.interim_transcript_hash,
        confirmation_tag=result.confirmation_tag, pending=(), past_epochs=past,
        resumption_psks=psks[:config.max_resumption_psks], active=True,
        reinit=provisional.outcome.reinit)


def removed_self(state: GroupState, outcome: ProposalOutcome) -> bool:
    """Whether the Commit removes our own leaf (we then leave the group)."""
    return state.own_leaf in outcome.removed
