"""External senders (RFC 9420 §12.1.8): :mod:`mls.group.external_senders`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mls.enums import ContentType, ExtensionType, SenderType
from mls.errors import UsageError, ValidationError
from mls.group.external_senders import external_proposal_signature_key, validate_external_senders
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender, encode_external_senders
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import Sender
from mls.messages.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
)
from tests.mls.fixtures import CS, GROUP_ID, make_client, psk_id


def _senders_context(*senders: ExternalSender) -> GroupContext:
    ext = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(senders))
    return GroupContext(1, CS.id, GROUP_ID, 1, b"", b"", (ext,))


def test_external_sender_signature_key() -> None:
    context = _senders_context(ExternalSender(b"key 0", Credential.basic(b"a")),
                               ExternalSender(b"key 1", Credential.basic(b"b")))
    sender = Sender(SenderType.EXTERNAL, sender_index=1)
    for proposal in (Remove(0), PreSharedKey(psk_id()), ReInit(b"g", 1, 1, ()),
                     GroupContextExtensions(()), Add(make_client(b"x").key_package)):
        assert external_proposal_signature_key(sender, ContentType.PROPOSAL, proposal,
                                               group_context=context) == b"key 1"


@pytest.mark.parametrize(("sender_index", "content_type", "proposal", "message"), [
    (2, ContentType.PROPOSAL, Remove(0), "index 2 is not in"),
    (0, ContentType.COMMIT, None, "may only send proposals"),
    (0, ContentType.PROPOSAL, ExternalInit(b""), "may not send a external_init"),
])
def test_external_sender_rejections(sender_index: int, content_type: ContentType,
                                    proposal: Proposal | None, message: str) -> None:
    context = _senders_context(ExternalSender(b"key 0", Credential.basic(b"a")))
    with pytest.raises(ValidationError, match=message):
        external_proposal_signature_key(Sender(SenderType.EXTERNAL, sender_index=sender_index),
                                        content_type, proposal, group_context=context)


def test_external_sender_without_extension_or_malformed() -> None:
    sender = Sender(SenderType.EXTERNAL, sender_index=0)
    bare = GroupContext(1, CS.id, GROUP_ID, 1, b"", b"", ())
    with pytest.raises(ValidationError, match="no external_senders"):
        external_proposal_signature_key(sender, ContentType.PROPOSAL, Remove(0),
                                        group_context=bare)
    broken = replace(bare, extensions=(Extension(ExtensionType.EXTERNAL_SENDERS, b"\x05"),))
    with pytest.raises(ValidationError, match="malformed external_senders"):
        external_proposal_signature_key(sender, ContentType.PROPOSAL, Remove(0),
                                        group_context=broken)


def test_new_member_proposal_signer_is_key_package_leaf() -> None:
    context = GroupContext(1, CS.id, GROUP_ID, 1, b"", b"", ())
    sender = Sender(SenderType.NEW_MEMBER_PROPOSAL)
    kp = make_client(b"joiner").key_package
    assert external_proposal_signature_key(sender, ContentType.PROPOSAL, Add(kp),
                                           group_context=context) == kp.leaf_node.signature_key
    with pytest.raises(ValidationError, match="only send an add"):
        external_proposal_signature_key(sender, ContentType.PROPOSAL, Remove(0),
                                        group_context=context)
    with pytest.raises(ValidationError, match="may only send proposals"):
        external_proposal_signature_key(sender, ContentType.APPLICATION, None,
                                        group_context=context)
    with pytest.raises(UsageError):
        external_proposal_signature_key(Sender.member(0), ContentType.PROPOSAL, Remove(0),
                                        group_context=context)


def test_validate_external_senders_extension() -> None:
    good = _senders_context(ExternalSender(b"k", Credential.basic(b"a")))
    validate_external_senders(good.extensions)
    bad = _senders_context(ExternalSender(b"k", Credential.x509(())))
    with pytest.raises(ValidationError, match="external sender 0: credential rejected"):
        validate_external_senders(bad.extensions)
