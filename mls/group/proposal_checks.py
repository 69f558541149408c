"""Validating a proposal on receipt, before it is stored (RFC 9420 §12.1, §12.2).

A proposal arriving by itself (not yet covered by a Commit) gets every check that
does not depend on the rest of the Commit that will cover it:

* Add: the KeyPackage is valid for this group (§10.1, §12.1.1);
* Update: the sender is a member and the leaf node is valid with source ``update``
  (§7.3, §12.1.2): signature over this group and the sender's leaf index, the group's
  requirements, a fresh encryption key, unique keys, credential types supported
  both ways, an acceptable credential successor;
* Remove: names a non-blank leaf of the tree (§12.1.3);
* PreSharedKey: ``psk_nonce`` of length Nh; a resumption PSK has usage application
  (§12.1.4);
* ReInit and GroupContextExtensions: well-formed fields and extensions (§12.1.5,
  §12.1.7);
* ExternalInit is never sent by reference (§12.1.6); external senders only send the
  types of §12.1.8.

The leaves are checked by the one rule set of :mod:`mls.group.leaf_validation`, as
received leaves: their lifetimes are not judged (RFC 9420 §7.3 only recommends it for
a receiver; see :func:`mls.tree.validation.check_leaf_node`) -- the member that
commits an Add judges its KeyPackage's lifetime then.

Failures raise :class:`~mls.errors.ProposalValidationError` (a bad signature too,
chained from the :class:`~mls.errors.SignatureError`).  The rules that need the
whole list (duplicates, conflicts, the committer) are :mod:`mls.group.proposal_list`'s.
"""

from __future__ import annotations

from mls.enums import LeafNodeSource, SenderType
from mls.errors import ProposalValidationError, SignatureError, ValidationError
from mls.group.credentials import CredentialValidator, check_successor
from mls.group.events import ProposalEvent
from mls.group.external_senders import EXTERNAL_SENDER_PROPOSAL_TYPES
from mls.group.key_package import validate_key_package
from mls.group.leaf_validation import (
    check_credential_types,
    check_keys_unique,
    check_leaf_alone,
    group_requirements,
)
from mls.group.proposal_list import check_extension_list, check_psk_id, check_reinit
from mls.group.state import EpochView, PendingProposal
from mls.messages.framing import AuthenticatedContent, Sender
from mls.messages.proposals import (
    Add,
    Commit,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from mls.tree.math import LeafIndex


def receive_proposal(view: EpochView, authenticated: AuthenticatedContent, ref: bytes, *,
                     credential_validator: CredentialValidator | None
                     ) -> tuple[tuple[PendingProposal, ...], ProposalEvent]:
    """A proposal received in this epoch (RFC 9420 §12.1), its signature already
    verified: checked (:func:`check_received_proposal`) and added to the epoch's
    pending proposals under its ProposalRef ``ref`` unless already there."""
    content = authenticated.content
    proposal = content.content
    assert not isinstance(proposal, (bytes, Commit))
    check_received_proposal(view, proposal, content.sender,
                            credential_validator=credential_validator)
    pending = view.pending
    if all(item.ref != ref for item in pending):
        pending = (*pending, PendingProposal(ref, authenticated))
    return pending, ProposalEvent(ref, proposal, content.sender, content.authenticated_data)


def check_received_proposal(view: EpochView, proposal: Proposal, sender: Sender, *,
                            credential_validator: CredentialValidator | None) -> None:
    """The checks of the module docstring for one received ``proposal``."""
    where = f"received {proposal.proposal_type.name.lower()} proposal"
    if isinstance(proposal, ExternalInit):
        raise ProposalValidationError("ExternalInit may only be sent by value in a Commit")
    if sender.sender_type == SenderType.EXTERNAL and (
            proposal.proposal_type not in EXTERNAL_SENDER_PROPOSAL_TYPES):
        raise ProposalValidationError(f"{where}: not allowed from an external sender")
    if sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL and not isinstance(proposal, Add):
        raise ProposalValidationError(f"{where}: a new_member_proposal sender may only "
                                      f"propose an Add")
    try:
        if isinstance(proposal, Add | Update):
            _check_new_leaf(view, proposal, sender, where, credential_validator)
        elif isinstance(proposal, Remove):
            removed = proposal.removed
            if not 0 <= removed < view.tree.n_leaves or (
                    view.tree.leaf(LeafIndex(removed)) is None):
                raise ProposalValidationError(f"{where}: removes blank or absent leaf "
                                              f"{removed}")
        elif isinstance(proposal, PreSharedKey):
            check_psk_id(view.cs, proposal.psk, where)
        elif isinstance(proposal, ReInit):
            check_reinit(proposal, view.context, where, credential_validator)
        elif isinstance(proposal, GroupContextExtensions):
            check_extension_list(proposal.extensions, where, credential_validator)
    except SignatureError as exc:
        raise ProposalValidationError(f"{where}: {exc}") from exc


def _check_new_leaf(view: EpochView, proposal: Add | Update, sender: Sender, where: str,
                    credential_validator: CredentialValidator | None) -> None:
    """An Add's KeyPackage (§10.1) or an Update's leaf node (§7.3), errors prefixed
    with ``where``."""
    try:
        if isinstance(proposal, Add):
            validate_key_package(view.cs, proposal.key_package, now=None,
                                 group_context=view.context,
                                 credential_validator=credential_validator,
                                 error_class=ProposalValidationError)
        else:
            _check_update(view, proposal, sender, where, credential_validator)
    except ProposalValidationError as exc:
        if str(exc).startswith(where):
            raise
        raise ProposalValidationError(f"{where}: {exc}") from exc


def _check_update(view: EpochView, proposal: Update, sender: Sender, where: str,
                  credential_validator: CredentialValidator | None) -> None:
    if sender.sender_type != SenderType.MEMBER:
        raise ProposalValidationError("only members can send Update proposals")
    leaf_index = LeafIndex(sender.leaf_index)
    old = view.tree.leaf(leaf_index)
    if old is None:
        raise ProposalValidationError(f"{where}: sender leaf {leaf_index} is blank")
    leaf = proposal.leaf_node
    check_leaf_alone(view.cs, leaf, requirements=group_requirements(view.context.extensions),
                     group_id=view.context.group_id, leaf_index=leaf_index,
                     expected_source=LeafNodeSource.UPDATE, now=None,
                     credential_validator=credential_validator,
                     error_class=ProposalValidationError)
    if leaf.encryption_key == old.encryption_key:
        raise ProposalValidationError(f"{where}: encryption_key is not changed")
    check_keys_unique(view.tree, leaf, where, replacing=leaf_index,
                      error_class=ProposalValidationError)
    check_credential_types(view.tree, leaf, where, ignore=(leaf_index,),
                           error_class=ProposalValidationError)
    try:
        check_successor(credential_validator, old.credential, leaf.credential)
    except ValidationError as exc:
        raise ProposalValidationError(f"{where}: credential may not replace the old one: "
                                      f"{exc}") from exc
