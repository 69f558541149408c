"""Processing a received MLSMessage (RFC 9420 §6, §12.1, §12.4.2).

:func:`process_message` checks the group id and epoch, removes the protection
(membership tag and signature of a PublicMessage, §6.2; decryption and signature of
a PrivateMessage, §6.3), then:

* a proposal goes to the pending store of the epoch -> :class:`ProposalEvent`;
* a commit runs the next-epoch pipeline (:mod:`mls.group.epoch`) and its confirmation
  tag is checked -> new state and :class:`CommitEvent`;
* application data -> :class:`ApplicationEvent` (also from a retained past epoch);
* the echo of our own application message or proposal -> :class:`OwnMessageEvent`
  (our own Commit must be merged, not processed: UsageError).

A proposal is validated on receipt (:mod:`mls.group.proposal_checks`) before it
enters the pending store.  Received leaves are held to the one rule set of
:mod:`mls.group.leaf_validation`, except that their lifetimes are not judged
(RFC 9420 §7.3 only recommends it for a receiver: a KeyPackage may expire in
transit); the committer judged them.  A group retired by a ReInit (RFC 9420 §11.2)
accepts no further proposals or Commits.

Nothing is changed on failure: the caller's state is never mutated, and the secret
tree is trialled on a copy.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping

from mls.enums import ContentType, SenderType
from mls.errors import (
    ConfirmationTagError,
    EpochError,
    UsageError,
    ValidationError,
)
from mls.framing.private import decrypt_private, open_application
from mls.framing.public import unprotect_public, verify_content_signature
from mls.framing.refs import proposal_ref
from mls.group.credentials import CredentialValidator
from mls.group.epoch import (
    commit_event,
    finish_epoch,
    merge_received_path,
    next_state,
    psk_resolver_for,
    receive_commit,
    receive_path,
)
from mls.group.events import (
    ApplicationEvent,
    Event,
    OwnMessageEvent,
)
from mls.group.external import receiver_init_secret
from mls.group.proposal_checks import receive_proposal
from mls.group.psk import PskResolver
from mls.group.senders import member_signature_key, public_message_signer
from mls.group.state import GroupState, PastEpoch
from mls.messages.framing import (
    AuthenticatedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
)
from mls.messages.proposals import Commit
from mls.tree.math import LeafIndex


def process_message(state: GroupState, message: MLSMessage, *,
                    external_psks: Mapping[bytes, bytes] | None = None,
                    psk_resolver: PskResolver | None = None, now: int | None = None,
                    credential_validator: CredentialValidator | None = None
                    ) -> tuple[GroupState, Event]:
    """Process one handshake or application message; see the module docstring."""
    if not state.active:
        raise UsageError("this member is no longer in the group")
    body = message.body
    if isinstance(body, PublicMessage):
        authenticated = unprotect_public_message(state, body)
    elif isinstance(body, PrivateMessage):
        if body.group_id != state.group_id:
            raise ValidationError("message is for another group")
        if state.sent_messages and (
                state.sent_fingerprint(body.ciphertext) in state.sent_messages):
            return state, OwnMessageEvent(body.content_type, body.epoch)
        if body.epoch != state.epoch:
            return process_past_application(state, body)
        if body.content_type == ContentType.APPLICATION:
            return receive_application(state, body)
        authenticated, state = decrypt_private_message(state, body)
    else:
        raise UsageError(f"{type(body).__name__} is not processed by a group member")
    content = authenticated.content
    if content.content_type == ContentType.APPLICATION:
        assert isinstance(content.content, bytes)
        return state, ApplicationEvent(LeafIndex(content.sender.leaf_index), content.content,
                                       content.authenticated_data, content.epoch)
    if state.retired:
        raise UsageError("this group was reinitialized (ReInit): it takes no more "
                         "proposals or commits")
    if content.content_type == ContentType.PROPOSAL:
        return store_proposal(state, authenticated, credential_validator=credential_validator)
    resolver = psk_resolver or psk_resolver_for(state, external_psks)
    return process_commit(state, authenticated, resolver, now=now,
                          credential_validator=credential_validator)


# -- unprotecting ----------------------------------------------------------------------

def unprotect_public_message(state: GroupState, message: PublicMessage) -> AuthenticatedContent:
    """Group id, epoch, membership tag and signature of a PublicMessage (§6.2)."""
    signature_key = public_message_signer(state, message.content)
    return unprotect_public(state.cs, message, group_context=state.context_bytes(),
                            membership_key=state.secrets.membership_key,
                            signature_pub=signature_key)


def decrypt_private_message(state: GroupState, message: PrivateMessage
                            ) -> tuple[AuthenticatedContent, GroupState]:
    """Decrypt a PrivateMessage of the current epoch on a copy of the secret tree and
    verify its signature (RFC 9420 §6.3); returns the state holding the used-up tree."""
    secret_tree = state.secret_tree.copy()
    authenticated = decrypt_private(state.cs, message, secret_tree=secret_tree,
                                    sender_data_secret=state.secrets.sender_data_secret)
    leaf = authenticated.content.sender.leaf_index
    signature_key = member_signature_key(state.tree, leaf)
    verify_content_signature(state.cs, signature_key, authenticated, state.context_bytes())
    return authenticated, state.with_secret_tree(secret_tree)


def receive_application(state: GroupState, message: PrivateMessage
                        ) -> tuple[GroupState, ApplicationEvent]:
    """An application message of the current epoch (RFC 9420 §6.3): decrypted on a
    copy of the secret tree, padding and signature checked; returns the state
    holding the used-up tree."""
    secret_tree = state.secret_tree.copy()
    tree = state.tree
    leaf, data = open_application(
        state.cs, message, secret_tree=secret_tree,
        sender_data_secret=state.secrets.sender_data_secret,
        group_context=state.context.to_bytes(),
        signature_key_for=lambda leaf_index: member_signature_key(tree, leaf_index))
    return (state.with_secret_tree(secret_tree),
            ApplicationEvent(LeafIndex(leaf), data, message.authenticated_data,
                             message.epoch))


def process_past_application(state: GroupState, message: PrivateMessage
                             ) -> tuple[GroupState, Event]:
    """A late application message of a retained past epoch (RFC 9420 §15.3)."""
    index = next((i for i, past in enumerate(state.past_epochs)
                  if past.epoch == message.epoch), None)
    if index is None or message.content_type != ContentType.APPLICATION:
        raise EpochError(f"message for epoch {message.epoch}, group is at {state.epoch}")
    past = state.past_epochs[index]
    secret_tree = past.secret_tree.copy()
    leaf, data = open_application(
        state.cs, message, secret_tree=secret_tree,
        sender_data_secret=past.sender_data_secret, group_context=past.group_context,
        signature_key_for=lambda leaf_index: member_signature_key(past.tree, leaf_index))
    updated = PastEpoch(past.epoch, past.group_context, past.tree, secret_tree,
                        past.sender_data_secret)
    history = (*state.past_epochs[:index], updated, *state.past_epochs[index + 1:])
    event = ApplicationEvent(LeafIndex(leaf), data, message.authenticated_data, past.epoch)
    return state.replace(past_epochs=history), event


# -- proposals -----------------------------------------------------------------------

def store_proposal(state: GroupState, authenticated: AuthenticatedContent, *,
                   credential_validator: CredentialValidator | None = None
                   ) -> tuple[GroupState, Event]:
    """Validate a received proposal (:mod:`mls.group.proposal_checks`) and keep it
    for this epoch under its ProposalRef (RFC 9420 §12.1).  The echo of one of our
    own pending proposals is an :class:`OwnMessageEvent`."""
    content = authenticated.content
    proposal = content.content
    assert not isinstance(proposal, (bytes, Commit))
    ref = proposal_ref(state.cs, authenticated)
    pending = state.pending
    if content.sender == Sender.member(state.own_leaf) and any(
            item.ref == ref for item in pending):
        return state, OwnMessageEvent(ContentType.PROPOSAL, state.epoch, ref)
    pending, event = receive_proposal(state, authenticated, ref,
                                      credential_validator=credential_validator)
    return state.replace(pending=pending), event


# -- commits -------------------------------------------------------------------------

def process_commit(state: GroupState, authenticated: AuthenticatedContent,
                   psks: PskResolver, *, now: int | None,
                   credential_validator: CredentialValidator | None
                   ) -> tuple[GroupState, Event]:
    """Apply a received Commit (RFC 9420 §12.4.2): the public steps shared with
    :class:`~mls.group.public.PublicGroup` (:func:`~mls.group.epoch.receive_commit`,
    :func:`~mls.group.epoch.merge_received_path`), then the path secret, the key
    schedule and the confirmation tag."""
    content = authenticated.content
    commit = content.content
    assert isinstance(commit, Commit)
    sender = content.sender
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if sender.sender_type == SenderType.MEMBER and sender.leaf_index == state.own_leaf:
        raise UsageError("a member cannot process its own commit: merge the staged commit")
    proposals, outcome = receive_commit(state, content,
                                        credential_validator=credential_validator)
    if state.own_leaf in outcome.removed:
        event = commit_event(state.epoch + 1, sender, proposals, outcome)
        return (state.replace(active=False, pending=()),
                dataclasses.replace(event, removed_self=True))
    init_secret = receiver_init_secret(state, outcome.external_init) if external else None
    merged = merge_received_path(state, outcome, commit, sender, now=now,
                                 credential_validator=credential_validator)
    provisional = receive_path(state, outcome, proposals, merged, commit.path)
    tag = authenticated.auth.confirmation_tag
    result = finish_epoch(state, provisional, wire_format=authenticated.wire_format,
                          content=content, signature=authenticated.auth.signature,
                          psks=psks, init_secret=init_secret)
    if tag is None or not hmac.compare_digest(tag, result.confirmation_tag):
        raise ConfirmationTagError("Commit confirmation tag does not match")
    path_leaf = None if commit.path is None else merged.sender_leaf
    event = commit_event(state.epoch + 1, sender, proposals, outcome, path_leaf=path_leaf)
    return next_state(state, provisional, result), event
