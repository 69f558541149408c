"""External commits (RFC 9420 §12.4.3.2): joining a group from its GroupInfo, and
the members' side of the ExternalInit.

The joiner validates the GroupInfo and tree as a Welcome joiner would
(§12.4.3.1), derives ``init_secret`` from the group's ``external_pub`` (§8.3), and
commits ExternalInit (plus, to resync, a Remove of its own old leaf, and any PSKs)
by value with an UpdatePath from the leftmost blank leaf.  The Commit is a
PublicMessage from a ``new_member_commit`` sender.  Its new-epoch state is derived
from a *pre-join view* of the group built from the GroupInfo: a GroupState without
epoch secrets of its own (it never holds or sends anything in that epoch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mls.codec import decode
from mls.crypto.suite import CipherSuite, Rng, suite
from mls.enums import ContentType, ExtensionType, LeafNodeSource, SenderType, WireFormat
from mls.errors import DecodeError, ProposalValidationError, ValidationError
from mls.framing.public import protect_public, sign_content
from mls.group.config import GroupConfig
from mls.group.credentials import CredentialValidator
from mls.group.epoch import (
    check_and_apply,
    create_path,
    external_sender_leaf,
    finish_epoch,
    next_state,
)
from mls.group.join import group_tree, validate_group_tree
from mls.group.key_package import default_capabilities
from mls.group.proposal_list import SenderProposal
from mls.group.psk import PskResolver
from mls.group.state import GroupState
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalPub
from mls.messages.extensions import Extension, find_extension
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    Sender,
    interim_transcript_hash_input,
)
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import Capabilities, LeafNode
from mls.messages.proposals import (
    Add,
    Commit,
    ExternalInit,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    Remove,
)
from mls.messages.psk import PreSharedKeyID
from mls.messages.welcome import GroupInfo
from mls.schedule.key_schedule import (
    EpochSecrets,
    external_init_receiver,
    external_init_sender,
    external_key_pair,
)
from mls.schedule.secret_tree import SecretTree
from mls.schedule.transcript import interim_transcript_hash
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree

NEW_MEMBER_COMMIT = Sender(SenderType.NEW_MEMBER_COMMIT)


def receiver_init_secret(state: GroupState, external_init: ExternalInit | None) -> bytes:
    """A member's init secret for an external Commit (RFC 9420 §8.3)."""
    if external_init is None:
        raise ProposalValidationError("an external Commit needs an ExternalInit proposal")
    external_priv, _ = external_key_pair(state.cs, state.secrets.external_secret)
    return external_init_receiver(state.cs, external_priv, external_init.kem_output)


def _external_pub(group_info: GroupInfo) -> bytes:
    extension = find_extension(group_info.extensions, ExtensionType.EXTERNAL_PUB)
    if extension is None:
        raise ValidationError("the GroupInfo has no external_pub extension")
    try:
        return decode(ExternalPub, extension.extension_data).external_pub
    except DecodeError as exc:
        raise ValidationError("malformed external_pub extension") from exc


def pre_join_view(cs: CipherSuite, group_info: GroupInfo, tree: RatchetTree,
                  signature_priv: bytes, config: GroupConfig) -> GroupState:
    """The group as a joiner sees it from the GroupInfo: context, tree and interim
    transcript hash (RFC 9420 §8.2), no epoch secrets (``active=False``)."""
    context = group_info.group_context
    interim = interim_transcript_hash(cs, context.confirmed_transcript_hash,
                                      interim_transcript_hash_input(group_info.confirmation_tag))
    zero = bytes(cs.hash_len)
    no_secrets = EpochSecrets(zero, zero, zero, zero, zero, zero, zero, zero, zero)
    return GroupState(cs, context, tree, LeafIndex(0), signature_priv, {}, no_secrets,
                      SecretTree(cs, zero, 1), interim, group_info.confirmation_tag,
                      config=config, active=False)


def _proposals(kem_output: bytes, remove: LeafIndex | None,
               psk_ids: Sequence[PreSharedKeyID]) -> list[Proposal]:
    proposals: list[Proposal] = [ExternalInit(kem_output)]
    if remove is not None:
        proposals.append(Remove(remove))
    proposals.extend(PreSharedKey(psk_id) for psk_id in psk_ids)
    return proposals


def join_external(group_info: GroupInfo, *, credential: Credential, signature_priv: bytes,
                  rng: Rng, ratchet_tree: RatchetTree | bytes | None = None,
                  remove: LeafIndex | None = None, psk_ids: Sequence[PreSharedKeyID] = (),
                  external_psks: Mapping[bytes, bytes] | None = None,
                  capabilities: Capabilities | None = None,
                  leaf_extensions: tuple[Extension, ...] = (), authenticated_data: bytes = b"",
                  now: int | None = None,
                  credential_validator: CredentialValidator | None = None,
                  config: GroupConfig | None = None) -> tuple[GroupState, MLSMessage]:
    """Join by external Commit (RFC 9420 §12.4.3.2); ``remove`` is our old leaf when
    resyncing.  Returns our new-epoch state and the Commit to send."""
    cs = suite(group_info.group_context.cipher_suite)
    config = config or GroupConfig()
    tree = group_tree(cs, group_info, ratchet_tree)
    validate_group_tree(cs, tree, group_info, credential_validator=credential_validator)
    kem_output, init_secret = external_init_sender(cs, _external_pub(group_info), rng)
    view = pre_join_view(cs, group_info, tree, signature_priv, config)
    proposals = [SenderProposal(p, NEW_MEMBER_COMMIT, None)
                 for p in _proposals(kem_output, remove, psk_ids)]
    outcome = check_and_apply(view, proposals, committer=NEW_MEMBER_COMMIT, has_path=True,
                              now=now, credential_validator=credential_validator)
    joined_tree, own_leaf = external_sender_leaf(outcome.tree)
    template = LeafNode(b"", cs.signature_public_key(signature_priv), credential,
                        capabilities or default_capabilities(cs), LeafNodeSource.COMMIT,
                        extensions=leaf_extensions)
    provisional = create_path(view, outcome, proposals, sender_leaf=own_leaf,
                              leaf_template=template, signature_priv=signature_priv, rng=rng,
                              tree=joined_tree, external=True)
    commit = Commit(tuple(ProposalOrRef(proposal=sp.proposal) for sp in proposals),
                    provisional.update_path)
    content = FramedContent(view.group_id, view.epoch, NEW_MEMBER_COMMIT, authenticated_data,
                            ContentType.COMMIT, commit)
    signature = sign_content(cs, signature_priv, WireFormat.PUBLIC_MESSAGE, content,
                             view.context_bytes())
    resolver = PskResolver(external=dict(external_psks or {}))
    result = finish_epoch(view, provisional, wire_format=WireFormat.PUBLIC_MESSAGE,
                          content=content, signature=signature, psks=resolver,
                          init_secret=init_secret)
    authenticated = AuthenticatedContent(
        WireFormat.PUBLIC_MESSAGE, content,
        FramedContentAuthData(signature, result.confirmation_tag))
    message = protect_public(cs, authenticated, None, view.context_bytes())
    state = next_state(view, provisional, result, own_leaf=own_leaf)
    return state, MLSMessage.wrap(message)


def _external_proposal(cs: CipherSuite, group_id: bytes, epoch: int, sender: Sender,
                       signature_priv: bytes, proposal: Proposal,
                       authenticated_data: bytes) -> MLSMessage:
    content = FramedContent(group_id, epoch, sender, authenticated_data,
                            ContentType.PROPOSAL, proposal)
    signature = sign_content(cs, signature_priv, WireFormat.PUBLIC_MESSAGE, content, None)
    authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content,
                                         FramedContentAuthData(signature))
    return MLSMessage.wrap(protect_public(cs, authenticated, None, b""))


def new_member_proposal(group_id: bytes, epoch: int, key_package: KeyPackage,
                        signature_priv: bytes, *, authenticated_data: bytes = b""
                        ) -> MLSMessage:
    """An Add of ourselves from a ``new_member_proposal`` sender (RFC 9420 §12.1.8),
    signed with the KeyPackage's leaf signature key."""
    cs = suite(key_package.cipher_suite)
    return _external_proposal(cs, group_id, epoch, Sender(SenderType.NEW_MEMBER_PROPOSAL),
                              signature_priv, Add(key_package), authenticated_data)


def external_sender_proposal(cs: CipherSuite, group_id: bytes, epoch: int, sender_index: int,
                             signature_priv: bytes, proposal: Proposal, *,
                             authenticated_data: bytes = b"") -> MLSMessage:
    """A proposal from the group's external sender number ``sender_index``
    (RFC 9420 §12.1.8.1)."""
    sender = Sender(SenderType.EXTERNAL, sender_index=sender_index)
    return _external_proposal(cs, group_id, epoch, sender, signature_priv, proposal,
                              authenticated_data)
