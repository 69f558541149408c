"""Who signed a handshake message (RFC 9420 §6.1), and what a PublicMessage is
checked for before its signature (§6.2): the group, the epoch and the signer's key.

The signature key depends on the sender type (§6.1):

* ``member``: the leaf at ``leaf_index`` in the ratchet tree;
* ``external``: entry ``sender_index`` of the ``external_senders`` extension
  (§12.1.8.1), proposals of the allowed types only;
* ``new_member_commit``: the leaf node in the Commit's UpdatePath (§12.4.3.2);
* ``new_member_proposal``: the leaf node of the KeyPackage in the Add (§12.1.8).

These checks need no secret, so a member's group and a
:class:`~mls.group.public.PublicGroup` share them.
"""

from __future__ import annotations

from mls.enums import SenderType
from mls.errors import EpochError, ValidationError
from mls.group.external_senders import external_proposal_signature_key
from mls.group.state import EpochView
from mls.messages.framing import FramedContent
from mls.messages.proposals import Commit
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree


def member_signature_key(tree: RatchetTree, leaf_index: int) -> bytes:
    """The signature key of a member sender; ValidationError for a blank leaf."""
    if not 0 <= leaf_index < tree.n_leaves:
        raise ValidationError(f"sender leaf {leaf_index} is outside the tree")
    leaf = tree.leaf(LeafIndex(leaf_index))
    if leaf is None:
        raise ValidationError(f"sender leaf {leaf_index} is blank")
    return leaf.signature_key


def sender_signature_key(view: EpochView, content: FramedContent) -> bytes:
    """The key the FramedContent signature must verify with (RFC 9420 §6.1); raises
    :class:`ValidationError` if this sender may not send this content."""
    sender = content.sender
    if sender.sender_type == SenderType.MEMBER:
        return member_signature_key(view.tree, sender.leaf_index)
    if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        body = content.content
        if not isinstance(body, Commit) or body.path is None:
            raise ValidationError("a new_member_commit sender must send a Commit with a path")
        return body.path.leaf_node.signature_key
    proposal = None if isinstance(content.content, (bytes, Commit)) else content.content
    return external_proposal_signature_key(sender, content.content_type, proposal,
                                           group_context=view.context)


def public_message_signer(view: EpochView, content: FramedContent) -> bytes:
    """A PublicMessage's content is for this group and epoch (RFC 9420 §6.2, §12.4.2);
    returns its signer's key (:func:`sender_signature_key`)."""
    if content.group_id != view.context.group_id:
        raise ValidationError("message is for another group")
    if content.epoch != view.context.epoch:
        raise EpochError(f"message for epoch {content.epoch}, group is at "
                         f"{view.context.epoch}")
    return sender_signature_key(view, content)
