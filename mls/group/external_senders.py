"""Proposals from outside the group (RFC 9420 §6.1, §12.1.8, §12.1.8.1).

Two sender types may send proposals without being members:

* ``external``: a signer pre-provisioned in the GroupContext's ``external_senders``
  extension; ``sender_index`` indexes that list.  Only add, remove, psk, reinit and
  group_context_extensions proposals are allowed (§12.1.8); anything else is
  malformed.
* ``new_member_proposal``: a would-be member proposing its own Add; the signer is
  the signature key of the leaf in the Add's KeyPackage (§6.1).

:func:`external_proposal_signature_key` checks the sender against the content and
returns the key the FramedContent signature must verify with.  The Add's KeyPackage
itself is validated by the caller (:func:`mls.group.key_package.validate_key_package`).
"""

from __future__ import annotations

from mls.enums import ContentType, ExtensionType, ProposalType, SenderType
from mls.errors import DecodeError, ProposalValidationError, UsageError, ValidationError
from mls.group.credentials import CredentialValidator, check_credential
from mls.messages.extension_types import ExternalSender, decode_external_senders
from mls.messages.extensions import Extension, GroupContext, find_extension
from mls.messages.framing import Sender
from mls.messages.proposals import Add, Proposal

#: Proposal types an ``external`` sender may send (RFC 9420 §12.1.8, "Ext" column).
EXTERNAL_SENDER_PROPOSAL_TYPES = frozenset({
    ProposalType.ADD, ProposalType.REMOVE, ProposalType.PSK, ProposalType.REINIT,
    ProposalType.GROUP_CONTEXT_EXTENSIONS,
})


def external_senders(extensions: tuple[Extension, ...]) -> tuple[ExternalSender, ...]:
    """The signers of the ``external_senders`` extension (empty if absent); a
    malformed body is a :class:`ValidationError` (RFC 9420 §12.1.8.1)."""
    ext = find_extension(extensions, ExtensionType.EXTERNAL_SENDERS)
    if ext is None:
        return ()
    try:
        return decode_external_senders(ext.extension_data)
    except DecodeError as exc:
        raise ValidationError(f"malformed external_senders extension: {exc}") from exc


def validate_external_senders(extensions: tuple[Extension, ...],
                              credential_validator: CredentialValidator | None = None,
                              error_class: type[ValidationError] = ValidationError) -> None:
    """An ``external_senders`` extension being added or changed parses and each
    credential is accepted by the AS (RFC 9420 §5.3.1)."""
    try:
        senders = external_senders(extensions)
    except ValidationError as exc:
        raise error_class(str(exc)) from exc
    for index, sender in enumerate(senders):
        try:
            check_credential(credential_validator, sender.credential, sender.signature_key)
        except ValidationError as exc:
            raise error_class(f"external sender {index}: credential rejected: {exc}") from exc


def external_proposal_signature_key(sender: Sender, content_type: ContentType,
                                    proposal: Proposal | None, *,
                                    group_context: GroupContext) -> bytes:
    """The signature key of a non-member proposal's signer (RFC 9420 §6.1, §12.1.8).

    ``proposal`` is the content when ``content_type`` is proposal (else ``None``).
    Raises :class:`ValidationError` if this sender may not send this content.
    """
    if sender.sender_type == SenderType.EXTERNAL:
        if content_type != ContentType.PROPOSAL or proposal is None:
            raise ValidationError("an external sender may only send proposals")
        if proposal.proposal_type not in EXTERNAL_SENDER_PROPOSAL_TYPES:
            raise ProposalValidationError(f"an external sender may not send a "
                                  f"{proposal.proposal_type.name.lower()} proposal")
        signers = external_senders(group_context.extensions)
        if not signers:
            raise ValidationError("external proposal but the group has no external_senders")
        if not 0 <= sender.sender_index < len(signers):
            raise ValidationError(f"external sender index {sender.sender_index} is not in "
                                  f"the external_senders extension ({len(signers)} entries)")
        return signers[sender.sender_index].signature_key
    if sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL:
        if content_type != ContentType.PROPOSAL or proposal is None:
            raise ValidationError("a new_member_proposal sender may only send proposals")
        if not isinstance(proposal, Add):
            raise ProposalValidationError(f"a new_member_proposal sender may only send an add "
                                  f"proposal, not {proposal.proposal_type.name.lower()}")
        return proposal.key_package.leaf_node.signature_key
    raise UsageError(f"sender type {sender.sender_type.name.lower()} is not an external "
                     f"proposer")
