"""Content authentication and PublicMessage protection (RFC 9420 §6.1, §6.2)."""

from __future__ import annotations

from mls.codec import Writer
from mls.crypto import CipherSuite
from mls.enums import ContentType, SenderType, WireFormat
from mls.errors import MembershipTagError, SignatureError, UsageError, ValidationError
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    PublicMessage,
    framed_content_tbs,
)

FRAMED_CONTENT_LABEL = b"FramedContentTBS"


def sign_content(cs: CipherSuite, signature_priv: bytes, wire_format: WireFormat,
                 content: FramedContent, group_context: bytes | None) -> bytes:
    """SignWithLabel(., "FramedContentTBS", FramedContentTBS) (RFC 9420 §6.1)."""
    tbs = framed_content_tbs(wire_format, content, group_context)
    return cs.sign_with_label(signature_priv, FRAMED_CONTENT_LABEL, tbs)


def authenticate(cs: CipherSuite, signature_priv: bytes, wire_format: WireFormat,
                 content: FramedContent, group_context: bytes | None,
                 confirmation_tag: bytes | None = None) -> AuthenticatedContent:
    """Sign ``content`` into an AuthenticatedContent (RFC 9420 §6.1).

    ``confirmation_tag`` is required exactly for commits; the caller computes it
    from the new epoch's confirmation key (RFC 9420 §8.1).
    """
    if (confirmation_tag is not None) != (content.content_type == ContentType.COMMIT):
        raise UsageError("a confirmation tag is required exactly for commits")
    signature = sign_content(cs, signature_priv, wire_format, content, group_context)
    return AuthenticatedContent(wire_format, content,
                                FramedContentAuthData(signature, confirmation_tag))


def verify_content_signature(cs: CipherSuite, signature_pub: bytes,
                             authenticated: AuthenticatedContent,
                             group_context: bytes | None) -> None:
    """VerifyWithLabel over FramedContentTBS; raises SignatureError (RFC 9420 §6.1)."""
    tbs = framed_content_tbs(authenticated.wire_format, authenticated.content, group_context)
    if not cs.verify_with_label(signature_pub, FRAMED_CONTENT_LABEL, tbs,
                                authenticated.auth.signature):
        raise SignatureError("FramedContent signature does not verify")


def membership_tag(cs: CipherSuite, membership_key: bytes, content: FramedContent,
                   auth: FramedContentAuthData, group_context: bytes) -> bytes:
    """MAC(membership_key, AuthenticatedContentTBM) (RFC 9420 §6.2)."""
    w = Writer()
    w.raw(framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, group_context))
    auth.encode_for(w, content.content_type)
    return cs.mac(membership_key, w.getvalue())


def protect_public(cs: CipherSuite, authenticated: AuthenticatedContent,
                   membership_key: bytes | None, group_context: bytes) -> PublicMessage:
    """Encode an AuthenticatedContent as a PublicMessage (RFC 9420 §6.2).

    Application data must never travel as a PublicMessage (RFC 9420 §6): UsageError.
    Member senders get a membership tag, which needs ``membership_key``.
    """
    content = authenticated.content
    if content.content_type == ContentType.APPLICATION:
        raise UsageError("application messages must be sent as PrivateMessage")
    if authenticated.wire_format != WireFormat.PUBLIC_MESSAGE:
        raise UsageError("content was signed for a different wire format")
    tag = None
    if content.sender.sender_type == SenderType.MEMBER:
        if membership_key is None:
            raise UsageError("a member's PublicMessage needs the membership key")
        tag = membership_tag(cs, membership_key, content, authenticated.auth, group_context)
    return PublicMessage(content, authenticated.auth, tag)


def unprotect_public(cs: CipherSuite, message: PublicMessage, *, group_context: bytes,
                     membership_key: bytes | None, signature_pub: bytes
                     ) -> AuthenticatedContent:
    """Verify a PublicMessage and return its AuthenticatedContent (RFC 9420 §6.2).

    Checks the membership tag (member senders) and the signature with
    ``signature_pub``, which the caller looked up from the sender (§6.1). The
    confirmation tag of a commit is checked by the group layer, which has the new
    epoch's key.
    """
    content = message.content
    if content.content_type == ContentType.APPLICATION:
        raise ValidationError("application data received in a PublicMessage")
    if content.sender.sender_type == SenderType.MEMBER:
        if membership_key is None or message.membership_tag is None:
            raise MembershipTagError("member PublicMessage without a membership tag")
        expected = membership_tag(cs, membership_key, content, message.auth, group_context)
        if not _equal(expected, message.membership_tag):
            raise MembershipTagError("PublicMessage membership tag does not verify")
    authenticated = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, message.auth)
    verify_content_signature(cs, signature_pub, authenticated, group_context)
    return authenticated


def _equal(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)
