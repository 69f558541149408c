"""message-protection.json: PublicMessage and PrivateMessage protect/unprotect
(RFC 9420 §6.1-§6.3) for a proposal, a commit and application data."""

from __future__ import annotations

import os
from typing import Any

from mls.codec import Reader, decode, encode
from mls.crypto import CipherSuite, suite
from mls.enums import ContentType, ProtocolVersion, WireFormat
from mls.errors import UsageError
from mls.framing.private import protect_private, unprotect_private
from mls.framing.public import authenticate, protect_public, unprotect_public
from mls.messages.extensions import GroupContext
from mls.messages.framing import (
    Content,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
)
from mls.messages.proposals import Commit, decode_proposal
from mls.schedule.secret_tree import SecretTree

SENDER_LEAF = 1


class _Setting:
    """The group parameters of one case."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.cs: CipherSuite = suite(case["cipher_suite"])
        self.group_id = bytes.fromhex(case["group_id"])
        self.epoch: int = case["epoch"]
        self.context = encode(GroupContext(
            ProtocolVersion.MLS10, case["cipher_suite"], self.group_id, self.epoch,
            bytes.fromhex(case["tree_hash"]), bytes.fromhex(case["confirmed_transcript_hash"])))
        self.signature_priv = bytes.fromhex(case["signature_priv"])
        self.signature_pub = bytes.fromhex(case["signature_pub"])
        self.encryption_secret = bytes.fromhex(case["encryption_secret"])
        self.sender_data_secret = bytes.fromhex(case["sender_data_secret"])
        self.membership_key = bytes.fromhex(case["membership_key"])

    def secret_tree(self) -> SecretTree:
        return SecretTree(self.cs, self.encryption_secret, 2)

    def signature_key_for(self, leaf: int) -> bytes | None:
        return self.signature_pub if leaf == SENDER_LEAF else None


def _message_body(hex_message: str) -> PublicMessage | PrivateMessage:
    body = decode(MLSMessage, bytes.fromhex(hex_message)).body
    assert isinstance(body, PublicMessage | PrivateMessage), "not a framed message"
    return body


def _check_public(s: _Setting, content_type: ContentType, raw: Content,
                  pub_hex: str) -> bytes | None:
    """Verify the vector's PublicMessage; then protect our own and verify it."""
    message = _message_body(pub_hex)
    assert isinstance(message, PublicMessage), "expected a PublicMessage"
    got = unprotect_public(s.cs, message, group_context=s.context,
                           membership_key=s.membership_key, signature_pub=s.signature_pub)
    assert got.content.content == raw, "PublicMessage content differs from the raw value"
    tag = got.auth.confirmation_tag
    ours = _own_message(s, WireFormat.PUBLIC_MESSAGE, content_type, raw, tag)
    again = protect_public(s.cs, ours, s.membership_key, s.context)
    parsed = _message_body(encode(MLSMessage.wrap(again)).hex())
    assert isinstance(parsed, PublicMessage)
    back = unprotect_public(s.cs, parsed, group_context=s.context,
                            membership_key=s.membership_key, signature_pub=s.signature_pub)
    assert back.content.content == raw, "our PublicMessage does not round-trip"
    return tag


def _own_message(s: _Setting, wire_format: WireFormat, content_type: ContentType,
                 raw: Content, tag: bytes | None) -> Any:
    content = FramedContent(s.group_id, s.epoch, Sender.member(SENDER_LEAF), b"",
                            content_type, raw)
    return authenticate(s.cs, s.signature_priv, wire_format, content, s.context, tag)


def _check_private(s: _Setting, content_type: ContentType, raw: Content, priv_hex: str,
                   tag: bytes | None) -> None:
    """Unprotect the vector's PrivateMessage; then protect our own and unprotect it."""
    message = _message_body(priv_hex)
    assert isinstance(message, PrivateMessage), "expected a PrivateMessage"
    got = unprotect_private(s.cs, message, secret_tree=s.secret_tree(),
                            sender_data_secret=s.sender_data_secret, group_context=s.context,
                            signature_key_for=s.signature_key_for)
    assert got.content.content == raw, "PrivateMessage content differs from the raw value"
    if content_type == ContentType.COMMIT:
        tag = got.auth.confirmation_tag
    ours = _own_message(s, WireFormat.PRIVATE_MESSAGE, content_type, raw, tag)
    sent = protect_private(s.cs, ours, secret_tree=s.secret_tree(),
                           sender_data_secret=s.sender_data_secret,
                           reuse_guard=os.urandom(4), padding=7)
    parsed = _message_body(encode(MLSMessage.wrap(sent)).hex())
    assert isinstance(parsed, PrivateMessage)
    back = unprotect_private(s.cs, parsed, secret_tree=s.secret_tree(),
                             sender_data_secret=s.sender_data_secret, group_context=s.context,
                             signature_key_for=s.signature_key_for)
    assert back.content.content == raw, "our PrivateMessage does not round-trip"


def check(case: dict[str, Any]) -> None:
    s = _Setting(case)
    proposal = decode_proposal_bytes(bytes.fromhex(case["proposal"]))
    tag = _check_public(s, ContentType.PROPOSAL, proposal, case["proposal_pub"])
    _check_private(s, ContentType.PROPOSAL, proposal, case["proposal_priv"], tag)

    commit = decode(Commit, bytes.fromhex(case["commit"]))
    tag = _check_public(s, ContentType.COMMIT, commit, case["commit_pub"])
    _check_private(s, ContentType.COMMIT, commit, case["commit_priv"], tag)

    application = bytes.fromhex(case["application"])
    ours = _own_message(s, WireFormat.PUBLIC_MESSAGE, ContentType.APPLICATION, application, None)
    try:
        protect_public(s.cs, ours, s.membership_key, s.context)
    except UsageError:
        pass
    else:
        raise AssertionError("protecting application data as a PublicMessage must fail")
    _check_private(s, ContentType.APPLICATION, application, case["application_priv"], None)


def decode_proposal_bytes(data: bytes) -> Any:
    r = Reader(data)
    proposal = decode_proposal(r)
    r.finish("Proposal")
    return proposal
