"""Creating proposals and Commits (RFC 9420 §12.1, §12.4.1, §12.4.3).

:func:`create_commit` covers the pending proposals of the epoch by reference and any
new ones by value, adds an UpdatePath when one is required (§12.4) or asked for,
signs the Commit, derives the new epoch (:mod:`mls.group.epoch`), and builds the
Welcome for added members and a signed GroupInfo.  The result is a
:class:`StagedCommit`: the committer's group moves to the new epoch only when it
merges it, after the delivery service accepted the Commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mls.codec import encode
from mls.crypto.suite import Rng
from mls.enums import ContentType, ExtensionType, ResumptionPSKUsage, SenderType
from mls.errors import UsageError, ValidationError
from mls.framing.public import authenticate
from mls.framing.refs import key_package_ref, proposal_ref
from mls.framing.welcome import build_welcome, sign_group_info
from mls.group.application import check_can_send, own_content, protect, sign_own
from mls.group.credentials import CredentialValidator
from mls.group.epoch import (
    EpochResult,
    ProvisionalEpoch,
    check_and_apply,
    commit_event,
    create_path,
    finish_epoch,
    next_state,
    psk_resolver_for,
    without_path,
)
from mls.group.events import CommitEvent
from mls.group.proposal_list import SenderProposal, path_required, validate_proposal_list
from mls.group.psk import PskResolver
from mls.group.state import GroupState, PendingProposal
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalPub
from mls.messages.extensions import Extension
from mls.messages.framing import AuthenticatedContent, FramedContentAuthData, MLSMessage, Sender
from mls.messages.proposals import Commit, Proposal, ProposalOrRef, Update
from mls.messages.welcome import GroupInfo, GroupSecrets
from mls.schedule.key_schedule import external_key_pair
from mls.tree.math import common_ancestor, leaf_to_node


@dataclass(frozen=True, slots=True)
class StagedCommit:
    """A Commit waiting for the delivery service (RFC 9420 §12.4.1, §14).

    ``message`` is the Commit to send, ``welcome`` the Welcome for added members (if
    any), ``group_info`` the signed GroupInfo of the new epoch.  ``state`` is the new
    epoch's state, adopted by ``merge``; ``base`` identifies the state it was made
    from (group id, epoch, confirmation tag of the base epoch, our leaf).
    """

    message: MLSMessage
    welcome: MLSMessage | None
    group_info: GroupInfo
    event: CommitEvent
    base: tuple[bytes, int, bytes, int]
    state: GroupState = field(repr=False)


def base_of(state: GroupState) -> tuple[bytes, int, bytes, int]:
    """What identifies the member and epoch a Commit was created in."""
    return state.group_id, state.epoch, state.confirmation_tag, state.own_leaf


# -- proposals -----------------------------------------------------------------------

def create_proposal(state: GroupState, proposal: Proposal, *, rng: Rng,
                    authenticated_data: bytes = b"",
                    new_keys: Mapping[bytes, bytes] | None = None
                    ) -> tuple[GroupState, MLSMessage]:
    """Sign and protect a proposal from us and keep it in the pending store of the
    epoch (RFC 9420 §12.1).  ``new_keys`` are private keys (by public key) to hold
    until the proposal is committed (an Update's leaf key)."""
    check_can_send(state)
    content = own_content(state, ContentType.PROPOSAL, proposal, authenticated_data)
    wire_format = state.config.handshake_wire_format
    authenticated = authenticate(state.cs, state.signature_priv, wire_format, content,
                                 state.context_bytes())
    state, message = protect(state, authenticated, rng)
    ref = proposal_ref(state.cs, authenticated)
    keys = dict(state.hpke_keys)
    keys.update(new_keys or {})
    return (state.replace(pending=(*state.pending, PendingProposal(ref, authenticated)),
                          hpke_keys=keys), message)


# -- commits -------------------------------------------------------------------------

def _covered(state: GroupState, by_value: Sequence[Proposal], *, now: int | None,
             credential_validator: CredentialValidator | None
             ) -> tuple[list[SenderProposal], list[ProposalOrRef], bool]:
    """The proposals a Commit covers: the valid pending ones (our own Updates
    excepted: the UpdatePath replaces them, §12.2) by reference, then ``by_value``."""
    me = Sender.member(state.own_leaf)
    pending: list[tuple[SenderProposal, ProposalOrRef]] = []
    own_update = False
    for item in state.pending:
        content = item.authenticated.content
        proposal = content.content
        assert not isinstance(proposal, (bytes, Commit))
        if isinstance(proposal, Update) and content.sender == me:
            own_update = True
            continue
        pending.append((SenderProposal(proposal, content.sender, item.ref),
                        ProposalOrRef(reference=item.ref)))
    values = [(SenderProposal(proposal, me, None), ProposalOrRef(proposal=proposal))
              for proposal in by_value]
    chosen = _valid_subset(state, pending, values, now=now,
                           credential_validator=credential_validator)
    return [sp for sp, _ in chosen], [entry for _, entry in chosen], own_update


def _valid_subset(state: GroupState, pending: list[tuple[SenderProposal, ProposalOrRef]],
                  by_value: list[tuple[SenderProposal, ProposalOrRef]], *, now: int | None,
                  credential_validator: CredentialValidator | None
                  ) -> list[tuple[SenderProposal, ProposalOrRef]]:
    """The pending proposals that form a valid list with ``by_value`` (RFC 9420
    §12.2: a committer includes only valid proposals).  The whole list is tried
    first; only if it fails are pending proposals kept one by one, in order."""
    me = Sender.member(state.own_leaf)

    def valid(items: list[tuple[SenderProposal, ProposalOrRef]]) -> bool:
        try:
            validate_proposal_list(state.cs, [sp for sp, _ in items], committer=me,
                                   tree=state.tree, group_context=state.context, now=now,
                                   credential_validator=credential_validator)
        except ValidationError:
            return False
        return True

    if not pending or valid(pending + by_value):
        return pending + by_value
    kept: list[tuple[SenderProposal, ProposalOrRef]] = []
    for item in pending:
        if valid([*kept, item, *by_value]):
            kept.append(item)
    return kept + by_value


def create_commit(state: GroupState, *, rng: Rng, proposals: Sequence[Proposal] = (),
                  force_path: bool = False, authenticated_data: bytes = b"",
                  external_psks: Mapping[bytes, bytes] | None = None,
                  psk_resolver: PskResolver | None = None, now: int | None = None,
                  credential_validator: CredentialValidator | None = None,
                  linked_usage: ResumptionPSKUsage | None = None,
                  credential: Credential | None = None) -> StagedCommit:
    """Create a Commit (RFC 9420 §12.4.1); see the module docstring.  ``linked_usage``
    is set only for the first Commit of a reinitialized or branched group (§11.2).
    A ``credential`` other than our leaf's replaces it through the UpdatePath (§5.3.2:
    a member renews an expiring credential this way; the signature key stays)."""
    check_can_send(state)
    me = Sender.member(state.own_leaf)
    leaf_template = state.own_leaf_node()
    if credential is not None and credential != leaf_template.credential:
        leaf_template = leaf_template.replace(credential=credential)
        force_path = True
    covered, entries, own_update = _covered(state, proposals, now=now,
                                            credential_validator=credential_validator)
    with_path = force_path or own_update or path_required(covered)
    outcome = check_and_apply(state, covered, committer=me, has_path=with_path, now=now,
                              credential_validator=credential_validator,
                              linked_usage=linked_usage)
    if with_path:
        provisional = create_path(state, outcome, covered, sender_leaf=state.own_leaf,
                                  leaf_template=leaf_template,
                                  signature_priv=state.signature_priv, rng=rng)
    else:
        provisional = without_path(state, outcome, covered, state.own_leaf)
    commit = Commit(tuple(entries), provisional.update_path)
    content = own_content(state, ContentType.COMMIT, commit, authenticated_data)
    wire_format = state.config.handshake_wire_format
    signature = sign_own(state, wire_format, content)
    resolver = psk_resolver or psk_resolver_for(state, external_psks)
    result = finish_epoch(state, provisional, wire_format=wire_format, content=content,
                          signature=signature, psks=resolver)
    authenticated = AuthenticatedContent(
        wire_format, content, FramedContentAuthData(signature, result.confirmation_tag))
    sent_state, message = protect(state, authenticated, rng)
    new_state = next_state(sent_state, provisional, result)
    group_info = create_group_info(new_state, result)
    welcome = create_welcome(new_state, provisional, result, group_info)
    event = commit_event(new_state.epoch, me, covered, outcome,
                         path_leaf=state.own_leaf if with_path else None)
    return StagedCommit(message, welcome, group_info, event, base_of(state), new_state)


def create_group_info(state: GroupState, result: EpochResult) -> GroupInfo:
    """The signed GroupInfo of the new epoch (RFC 9420 §12.4.3) with the
    ratchet_tree and external_pub extensions when configured."""
    extensions: list[Extension] = []
    if state.config.ratchet_tree_in_welcome:
        extensions.append(Extension(ExtensionType.RATCHET_TREE, state.tree.to_bytes()))
    if state.config.external_pub_in_group_info:
        _, external_pub = external_key_pair(state.cs, result.secrets.external_secret)
        extensions.append(Extension(ExtensionType.EXTERNAL_PUB,
                                    encode(ExternalPub(external_pub))))
    unsigned = GroupInfo(result.context, tuple(extensions), result.confirmation_tag,
                         state.own_leaf)
    return sign_group_info(state.cs, state.signature_priv, unsigned)


def create_welcome(state: GroupState, provisional: ProvisionalEpoch, result: EpochResult,
                   group_info: GroupInfo) -> MLSMessage | None:
    """A Welcome for the members this Commit adds (RFC 9420 §12.4.3.1): each gets the
    joiner secret, the path secret of its lowest common ancestor with us (if there is
    a path) and the PSK ids."""
    outcome = provisional.outcome
    if not outcome.added:
        return None
    cs = state.cs
    joiners = []
    for leaf_index, key_package in zip(outcome.added, outcome.added_key_packages, strict=True):
        path_secret = None
        if provisional.update_path is not None:
            ancestor = common_ancestor(leaf_to_node(state.own_leaf), leaf_to_node(leaf_index))
            path_secret = provisional.path_secrets[ancestor]
        secrets = GroupSecrets(result.joiner_secret, path_secret, outcome.psk_ids)
        joiners.append((key_package_ref(cs, key_package), key_package.init_key, secrets))
    welcome = build_welcome(cs, result.welcome_secret, group_info, joiners)
    return MLSMessage.wrap(welcome)


def check_base(state: GroupState, staged: StagedCommit) -> None:
    """A staged Commit merges only into the state (epoch) it was created from."""
    if staged.base != base_of(state):
        raise UsageError("this staged commit was created by another member or in "
                         "another epoch or group")
    if staged.event.sender.sender_type != SenderType.MEMBER:
        raise UsageError("not a member's staged commit")
