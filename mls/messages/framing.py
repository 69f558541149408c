"""Message framing (RFC 9420 §6) and transcript-hash inputs (§8.2)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.codec import Reader, Writer, opaque_bytes
from mls.enums import ContentType, ProtocolVersion, SenderType, WireFormat, closed_enum
from mls.errors import DecodeError, UsageError
from mls.messages.key_package import KeyPackage
from mls.messages.proposals import (
    PROPOSAL_CLASSES,
    Commit,
    Proposal,
    decode_proposal,
    encode_proposal,
)
from mls.messages.welcome import GroupInfo, Welcome

Content = bytes | Proposal | Commit
_PROPOSAL_TYPES = tuple(PROPOSAL_CLASSES.values())


@dataclass(frozen=True, slots=True)
class Sender:
    """RFC 9420 §6::

        struct {
            SenderType sender_type;
            select (Sender.sender_type) {
                case member:   uint32 leaf_index;
                case external: uint32 sender_index;
                case new_member_commit:
                case new_member_proposal: struct{};
            };
        } Sender;
    """

    sender_type: SenderType
    leaf_index: int = 0
    sender_index: int = 0

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index=leaf_index)

    def encode(self, w: Writer) -> None:
        w.u8(self.sender_type)
        if self.sender_type == SenderType.MEMBER:
            w.u32(self.leaf_index)
        elif self.sender_type == SenderType.EXTERNAL:
            w.u32(self.sender_index)

    @classmethod
    def decode(cls, r: Reader) -> Sender:
        sender_type = closed_enum(SenderType, r.u8())
        if sender_type == SenderType.MEMBER:
            return cls(sender_type, leaf_index=r.u32())
        if sender_type == SenderType.EXTERNAL:
            return cls(sender_type, sender_index=r.u32())
        return cls(sender_type)


def _encode_content_body(w: Writer, content_type: ContentType, content: Content) -> None:
    """The ``select (content_type)`` arm shared by FramedContent and
    PrivateMessageContent."""
    if content_type == ContentType.APPLICATION and isinstance(content, bytes):
        w.opaque(content)
    elif content_type == ContentType.PROPOSAL and isinstance(content, _PROPOSAL_TYPES):
        encode_proposal(w, content)
    elif content_type == ContentType.COMMIT and isinstance(content, Commit):
        content.encode(w)
    else:
        raise UsageError(f"content {type(content).__name__} does not match {content_type!r}")


def _decode_content_body(r: Reader, content_type: ContentType) -> Content:
    if content_type == ContentType.APPLICATION:
        return r.opaque()
    if content_type == ContentType.PROPOSAL:
        return decode_proposal(r)
    return Commit.decode(r)


@dataclass(frozen=True, slots=True)
class FramedContent:
    """RFC 9420 §6::

        struct {
            opaque group_id<V>;
            uint64 epoch;
            Sender sender;
            opaque authenticated_data<V>;
            ContentType content_type;
            select (FramedContent.content_type) {
                case application: opaque application_data<V>;
                case proposal:    Proposal proposal;
                case commit:      Commit commit;
            };
        } FramedContent;
    """

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content_type: ContentType
    content: Content

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u64(self.epoch)
        self.sender.encode(w)
        w.opaque(self.authenticated_data)
        w.u8(self.content_type)
        _encode_content_body(w, self.content_type, self.content)

    @classmethod
    def decode(cls, r: Reader) -> FramedContent:
        group_id = r.opaque()
        epoch = r.u64()
        sender = Sender.decode(r)
        authenticated_data = r.opaque()
        content_type = closed_enum(ContentType, r.u8())
        content = _decode_content_body(r, content_type)
        return cls(group_id, epoch, sender, authenticated_data, content_type, content)


@dataclass(frozen=True, slots=True)
class FramedContentAuthData:
    """RFC 9420 §6.1::

        struct {
            opaque signature<V>;
            select (FramedContent.content_type) {
                case commit: MAC confirmation_tag;
                case application:
                case proposal: struct{};
            };
        } FramedContentAuthData;

    ``confirmation_tag`` is set iff the content is a commit, so decoding needs the
    content type: use :meth:`decode_for`.
    """

    signature: bytes
    confirmation_tag: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.opaque(self.signature)
        if self.confirmation_tag is not None:
            w.opaque(self.confirmation_tag)

    def encode_for(self, w: Writer, content_type: ContentType) -> None:
        """Encode, checking that the tag's presence matches ``content_type``."""
        if (self.confirmation_tag is not None) != (content_type == ContentType.COMMIT):
            raise UsageError("confirmation_tag must be present exactly for commits")
        self.encode(w)

    @classmethod
    def decode_for(cls, r: Reader, content_type: ContentType) -> FramedContentAuthData:
        signature = r.opaque()
        tag = r.opaque() if content_type == ContentType.COMMIT else None
        return cls(signature, tag)


@dataclass(frozen=True, slots=True)
class AuthenticatedContent:
    """RFC 9420 §6.1::

        struct {
            WireFormat wire_format;
            FramedContent content;
            FramedContentAuthData auth;
        } AuthenticatedContent;
    """

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def encode(self, w: Writer) -> None:
        w.u16(self.wire_format)
        self.content.encode(w)
        self.auth.encode_for(w, self.content.content_type)

    @classmethod
    def decode(cls, r: Reader) -> AuthenticatedContent:
        wire_format = closed_enum(WireFormat, r.u16())
        content = FramedContent.decode(r)
        return cls(wire_format, content, FramedContentAuthData.decode_for(r, content.content_type))


def framed_content_tbs(wire_format: WireFormat, content: FramedContent,
                       group_context_bytes: bytes | None) -> bytes:
    """The serialized FramedContentTBS (RFC 9420 §6.1): version, wire_format and
    content, then the serialized GroupContext for member and new_member_commit
    senders (``group_context_bytes`` is ignored for the other sender types)."""
    sender = content.sender
    if (type(content.content) is bytes and sender.sender_type == SenderType.MEMBER
            and group_context_bytes is not None
            and content.content_type == ContentType.APPLICATION):
        return member_application_tbs(wire_format, content.group_id, content.epoch,
                                      sender.leaf_index, content.authenticated_data,
                                      content.content, group_context_bytes)
    w = Writer()
    w.u16(ProtocolVersion.MLS10)
    w.u16(wire_format)
    content.encode(w)
    if sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
        if group_context_bytes is None:
            raise UsageError("FramedContentTBS of a member/new_member_commit needs the context")
        w.raw(group_context_bytes)
    return w.getvalue()


def member_application_tbs(wire_format: WireFormat, group_id: bytes, epoch: int,
                           leaf_index: int, authenticated_data: bytes, data: bytes,
                           group_context_bytes: bytes) -> bytes:
    """FramedContentTBS (RFC 9420 §6.1) of application data from a member: the fixed
    layout of :func:`framed_content_tbs` written out (it runs twice per message)."""
    if not (0 <= wire_format < 0x10000 and 0 <= epoch < 1 << 64
            and 0 <= leaf_index < 1 << 32):
        raise UsageError("wire format, epoch or leaf index out of range")
    return b"".join((
        _MLS10_BYTES, wire_format.to_bytes(2, "big"), opaque_bytes(group_id),
        epoch.to_bytes(8, "big"), _MEMBER_BYTE, leaf_index.to_bytes(4, "big"),
        opaque_bytes(authenticated_data), _APPLICATION_BYTE, opaque_bytes(data),
        group_context_bytes))


_MLS10_BYTES = int(ProtocolVersion.MLS10).to_bytes(2, "big")
_MEMBER_BYTE = bytes((SenderType.MEMBER,))
_APPLICATION_BYTE = bytes((ContentType.APPLICATION,))


@dataclass(frozen=True, slots=True)
class PublicMessage:
    """RFC 9420 §6.2::

        struct {
            FramedContent content;
            FramedContentAuthData auth;
            select (PublicMessage.content.sender.sender_type) {
                case member: MAC membership_tag;
                case external:
                case new_member_commit:
                case new_member_proposal: struct{};
            };
        } PublicMessage;
    """

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def encode(self, w: Writer) -> None:
        self.content.encode(w)
        self.auth.encode_for(w, self.content.content_type)
        is_member = self.content.sender.sender_type == SenderType.MEMBER
        if is_member != (self.membership_tag is not None):
            raise UsageError("membership_tag must be present exactly for member senders")
        if self.membership_tag is not None:
            w.opaque(self.membership_tag)

    @classmethod
    def decode(cls, r: Reader) -> PublicMessage:
        content = FramedContent.decode(r)
        auth = FramedContentAuthData.decode_for(r, content.content_type)
        is_member = content.sender.sender_type == SenderType.MEMBER
        return cls(content, auth, r.opaque() if is_member else None)


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """RFC 9420 §6.3::

        struct {
            opaque group_id<V>;
            uint64 epoch;
            ContentType content_type;
            opaque authenticated_data<V>;
            opaque encrypted_sender_data<V>;
            opaque ciphertext<V>;
        } PrivateMessage;
    """

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u64(self.epoch)
        w.u8(self.content_type)
        w.opaque(self.authenticated_data)
        w.opaque(self.encrypted_sender_data)
        w.opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> PrivateMessage:
        group_id = r.opaque()
        epoch = r.u64()
        content_type = closed_enum(ContentType, r.u8())
        return cls(group_id, epoch, content_type, r.opaque(), r.opaque(), r.opaque())


@dataclass(frozen=True, slots=True)
class SenderData:
    """RFC 9420 §6.3.2::

        struct {
            uint32 leaf_index;
            uint32 generation;
            opaque reuse_guard[4];
        } SenderData;
    """

    leaf_index: int
    generation: int
    reuse_guard: bytes

    def encode(self, w: Writer) -> None:
        if len(self.reuse_guard) != 4:
            raise UsageError("reuse_guard must be exactly 4 bytes")
        w.u32(self.leaf_index)
        w.u32(self.generation)
        w.raw(self.reuse_guard)

    @classmethod
    def decode(cls, r: Reader) -> SenderData:
        return cls(r.u32(), r.u32(), r.raw(4))


def encode_sender_data(leaf_index: int, generation: int, reuse_guard: bytes) -> bytes:
    """The encoding of ``SenderData(leaf_index, generation, reuse_guard)`` (RFC 9420
    §6.3.2) without building the struct."""
    if len(reuse_guard) != 4 or not (0 <= leaf_index < 1 << 32 and 0 <= generation < 1 << 32):
        raise UsageError("SenderData field out of range (reuse_guard must be 4 bytes)")
    return leaf_index.to_bytes(4, "big") + generation.to_bytes(4, "big") + reuse_guard


def decode_sender_data(data: bytes) -> tuple[int, int, bytes]:
    """``(leaf_index, generation, reuse_guard)`` of an encoded SenderData (RFC 9420
    §6.3.2), which must be exactly 12 bytes; else DecodeError."""
    r = Reader(data)
    leaf_index, generation, reuse_guard = r.u32(), r.u32(), r.raw(4)
    r.finish("SenderData")
    return leaf_index, generation, reuse_guard


def _epoch_head(group_id: bytes, epoch: int, content_type: ContentType) -> bytes:
    """``opaque group_id<V>; uint64 epoch; ContentType content_type`` (shared head of
    SenderDataAAD and PrivateContentAAD)."""
    if not (0 <= epoch < 1 << 64 and 0 <= content_type < 0x100):
        raise UsageError("epoch or content type out of range")
    return opaque_bytes(group_id) + epoch.to_bytes(8, "big") + bytes((content_type,))


def private_message_aads(group_id: bytes, epoch: int, content_type: ContentType,
                         authenticated_data: bytes) -> tuple[bytes, bytes]:
    """``(PrivateContentAAD, SenderDataAAD)`` of one PrivateMessage (RFC 9420 §6.3.1,
    §6.3.2): the second is the head of the first."""
    head = _epoch_head(group_id, epoch, content_type)
    return head + opaque_bytes(authenticated_data), head


def encode_sender_data_aad(group_id: bytes, epoch: int, content_type: ContentType) -> bytes:
    """SenderDataAAD (RFC 9420 §6.3.2): group_id<V>, uint64 epoch, content_type."""
    return _epoch_head(group_id, epoch, content_type)


def encode_private_content_aad(group_id: bytes, epoch: int, content_type: ContentType,
                               authenticated_data: bytes) -> bytes:
    """PrivateContentAAD (RFC 9420 §6.3.1): SenderDataAAD's fields, then
    authenticated_data<V>."""
    return _epoch_head(group_id, epoch, content_type) + opaque_bytes(authenticated_data)


def encode_private_message_content(content_type: ContentType, content: Content,
                                   auth: FramedContentAuthData, padding_len: int) -> bytes:
    """PrivateMessageContent (RFC 9420 §6.3.1): the content arm, the auth data and
    ``padding_len`` zero bytes."""
    if padding_len < 0:
        raise UsageError("padding length must not be negative")
    if type(content) is bytes and content_type == ContentType.APPLICATION:
        if auth.confirmation_tag is not None:
            raise UsageError("confirmation_tag must be present exactly for commits")
        return application_message_content(content, auth.signature, padding_len)
    w = Writer()
    _encode_content_body(w, content_type, content)
    auth.encode_for(w, content_type)
    w.raw(bytes(padding_len))
    return w.getvalue()


def application_message_content(data: bytes, signature: bytes, padding_len: int) -> bytes:
    """PrivateMessageContent (RFC 9420 §6.3.1) of application data: application_data<V>,
    signature<V> and ``padding_len`` zero bytes."""
    return opaque_bytes(data) + opaque_bytes(signature) + bytes(padding_len)


def decode_application_message_content(data: bytes) -> tuple[bytes, bytes]:
    """``(application_data, signature)`` of a decrypted application
    PrivateMessageContent; non-zero padding is a DecodeError (RFC 9420 §6.3.1)."""
    r = Reader(data)
    application_data, signature = r.opaque(), r.opaque()
    padding = r.raw(r.remaining)
    if padding.count(0) != len(padding):
        raise DecodeError("PrivateMessageContent padding contains a non-zero byte")
    return application_data, signature


def decode_private_message_content(content_type: ContentType,
                                   data: bytes) -> tuple[Content, FramedContentAuthData]:
    """Parse a decrypted PrivateMessageContent; the padding must be all zero bytes
    (RFC 9420 §6.3.1), else DecodeError."""
    if content_type == ContentType.APPLICATION:
        application_data, signature = decode_application_message_content(data)
        return application_data, FramedContentAuthData(signature)
    r = Reader(data)
    content = _decode_content_body(r, content_type)
    auth = FramedContentAuthData.decode_for(r, content_type)
    padding = r.raw(r.remaining)
    if padding.count(0) != len(padding):
        raise DecodeError("PrivateMessageContent padding contains a non-zero byte")
    return content, auth


MessageBody = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

_BODY_CLASSES: dict[WireFormat, type[MessageBody]] = {
    WireFormat.PUBLIC_MESSAGE: PublicMessage,
    WireFormat.PRIVATE_MESSAGE: PrivateMessage,
    WireFormat.WELCOME: Welcome,
    WireFormat.GROUP_INFO: GroupInfo,
    WireFormat.KEY_PACKAGE: KeyPackage,
}


@dataclass(frozen=True, slots=True)
class MLSMessage:
    """RFC 9420 §6::

        struct {
            ProtocolVersion version = mls10;
            WireFormat wire_format;
            select (MLSMessage.wire_format) { ... };
        } MLSMessage;

    Only mls10 is accepted on decode.
    """

    version: int
    wire_format: WireFormat
    body: MessageBody

    @classmethod
    def wrap(cls, body: MessageBody) -> MLSMessage:
        """An mls10 MLSMessage whose wire format is inferred from ``body``."""
        for wire_format, body_cls in _BODY_CLASSES.items():
            if isinstance(body, body_cls):
                return cls(ProtocolVersion.MLS10, wire_format, body)
        raise UsageError(f"{type(body).__name__} is not an MLSMessage body")

    def encode(self, w: Writer) -> None:
        if not isinstance(self.body, _BODY_CLASSES[self.wire_format]):
            raise UsageError(f"{type(self.body).__name__} does not match {self.wire_format!r}")
        w.u16(self.version)
        w.u16(self.wire_format)
        self.body.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> MLSMessage:
        version = r.u16()
        if version != ProtocolVersion.MLS10:
            raise DecodeError(f"unsupported protocol version {version}")
        wire_format = closed_enum(WireFormat, r.u16())
        body = _BODY_CLASSES[wire_format].decode(r)
        return cls(ProtocolVersion.MLS10, wire_format, body)


def confirmed_transcript_hash_input(authenticated_content: AuthenticatedContent) -> bytes:
    """ConfirmedTranscriptHashInput (RFC 9420 §8.2): wire_format, content, signature."""
    w = Writer()
    w.u16(authenticated_content.wire_format)
    authenticated_content.content.encode(w)
    w.opaque(authenticated_content.auth.signature)
    return w.getvalue()


def interim_transcript_hash_input(confirmation_tag: bytes) -> bytes:
    """InterimTranscriptHashInput (RFC 9420 §8.2): ``MAC confirmation_tag``."""
    w = Writer()
    w.opaque(confirmation_tag)
    return w.getvalue()
