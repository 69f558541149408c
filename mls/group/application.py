"""Sending: framing, signing and protecting content (RFC 9420 §6); application
messages (§6.3, §9.1); the exporter (§8.5) and the epoch authenticator (§8.7).

Receiving application data is part of :mod:`mls.group.process` (current epoch and
retained past epochs).  Every function returns a new state; the secret tree is used
on a copy, so the caller's state never changes.
"""

from __future__ import annotations

from mls.crypto.suite import Rng
from mls.enums import ContentType, ProtocolVersion, WireFormat
from mls.errors import UsageError
from mls.framing.private import protect_application, protect_private
from mls.framing.public import FRAMED_CONTENT_LABEL, protect_public, sign_content
from mls.group.state import GroupState
from mls.messages.framing import (
    AuthenticatedContent,
    Content,
    FramedContent,
    MLSMessage,
    Sender,
    encode_private_message_content,
    member_application_tbs,
)
from mls.schedule.key_schedule import export_secret as _export_secret


def own_content(state: GroupState, content_type: ContentType, content: Content,
                authenticated_data: bytes = b"") -> FramedContent:
    """FramedContent sent by us as a member in the current epoch (RFC 9420 §6)."""
    return FramedContent(state.group_id, state.epoch, Sender.member(state.own_leaf),
                         authenticated_data, content_type, content)


def sign_own(state: GroupState, wire_format: WireFormat, content: FramedContent) -> bytes:
    """Our signature over FramedContentTBS (RFC 9420 §6.1)."""
    return sign_content(state.cs, state.signature_priv, wire_format, content,
                        state.context_bytes())


def _padding(state: GroupState, authenticated: AuthenticatedContent) -> int:
    """Zero bytes to pad the PrivateMessageContent to a multiple of padding_size."""
    size = state.config.padding_size
    if size <= 1:
        return 0
    content = authenticated.content
    length = len(encode_private_message_content(content.content_type, content.content,
                                                authenticated.auth, 0))
    return -length % size


def check_can_send(state: GroupState) -> None:
    """UsageError unless we may still send in this group: we are a member and the
    group was not retired by a ReInit (RFC 9420 §11.2)."""
    if not state.active:
        raise UsageError("this member is no longer in the group")
    if state.retired:
        raise UsageError("this group was reinitialized (ReInit): use the new group")


def protect(state: GroupState, authenticated: AuthenticatedContent, rng: Rng
            ) -> tuple[GroupState, MLSMessage]:
    """Wrap our signed content as a PublicMessage (membership tag) or PrivateMessage
    (next key of our ratchet, on a copy of the secret tree), RFC 9420 §6.2, §6.3.
    Sent application messages and proposals are remembered to recognise their echo."""
    if authenticated.wire_format == WireFormat.PUBLIC_MESSAGE:
        message = protect_public(state.cs, authenticated, state.secrets.membership_key,
                                 state.context_bytes())
        return state, MLSMessage.wrap(message)
    secret_tree = state.secret_tree.copy()
    private = protect_private(state.cs, authenticated, secret_tree=secret_tree,
                              sender_data_secret=state.secrets.sender_data_secret,
                              reuse_guard=rng(4), padding=_padding(state, authenticated))
    if authenticated.content.content_type != ContentType.COMMIT:
        state = state.with_secret_tree(secret_tree, state.sent_after(private.ciphertext))
    else:
        state = state.with_secret_tree(secret_tree)
    return state, MLSMessage(ProtocolVersion.MLS10, WireFormat.PRIVATE_MESSAGE, private)


def encrypt_application(state: GroupState, data: bytes, *, rng: Rng,
                        authenticated_data: bytes = b"") -> tuple[GroupState, MLSMessage]:
    """An application message as a PrivateMessage (RFC 9420 §6.3); the key of the
    generation used is deleted at once (§9.2)."""
    check_can_send(state)
    if not isinstance(data, bytes):
        raise UsageError(f"application data must be bytes, not {type(data).__name__}")
    cs = state.cs
    context = state.context
    group_id, epoch, leaf = context.group_id, context.epoch, state.own_leaf
    tbs = member_application_tbs(WireFormat.PRIVATE_MESSAGE, group_id, epoch, leaf,
                                 authenticated_data, data, context.to_bytes())
    signature = cs.sign_with_label(state.signature_priv, FRAMED_CONTENT_LABEL, tbs)
    secret_tree = state.secret_tree.copy()
    private = protect_application(
        cs, group_id=group_id, epoch=epoch, leaf_index=leaf,
        authenticated_data=authenticated_data, data=data, signature=signature,
        secret_tree=secret_tree, sender_data_secret=state.secrets.sender_data_secret,
        reuse_guard=rng(4), padding_size=state.config.padding_size)
    state = state.with_secret_tree(secret_tree, state.sent_after(private.ciphertext))
    return state, MLSMessage(ProtocolVersion.MLS10, WireFormat.PRIVATE_MESSAGE, private)


def export_secret(state: GroupState, label: bytes, context: bytes, length: int) -> bytes:
    """MLS-Exporter(Label, Context, Length) of the current epoch (RFC 9420 §8.5)."""
    return _export_secret(state.cs, state.secrets.exporter_secret, label, context, length)


def epoch_authenticator(state: GroupState) -> bytes:
    """The epoch authenticator of the current epoch (RFC 9420 §8.7)."""
    return state.secrets.epoch_authenticator
