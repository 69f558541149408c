"""The inner payload of application messages: a small CBOR content format.

Modelled on the MIMI content format (draft-ietf-mimi-content): every message has a
message id; it may carry a text body, reply to another message (``reply_to``), replace
an earlier one (``replaces``: an edit; an empty body with ``replaces`` retracts it) and
reference an attachment stored elsewhere (URL, SHA-256 of the bytes, size, media type),
as the wire binding sends large payloads through XEP-0363 upload or the Matrix media
repository.

Encoding: a CBOR map with small unsigned integer keys, in deterministic (canonical)
encoding (RFC 8949 §4.2.1)::

    { 0: message_id (bstr, 16..64 bytes),
      1: body (tstr)                     ; optional
      2: reply_to (bstr message id)      ; optional
      3: replaces (bstr message id)      ; optional
      4: { 0: url (tstr), 1: sha256 (bstr .size 32), 2: size (uint),
           3: media_type (tstr) }        ; optional attachment }

Decoding is strict: the bytes must be exactly the canonical encoding of such a map (no
unknown keys, no duplicate keys, no tags, no indefinite lengths, no trailing bytes, the
right type for every field); anything else raises :class:`ContentError`. The text and
URL never appear in ``repr`` or error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

from bridge.errors import ContentError

MESSAGE_ID_MIN = 16
MESSAGE_ID_MAX = 64
SHA256_SIZE = 32
MAX_CONTENT_SIZE = 1 << 20

_ID, _BODY, _REPLY_TO, _REPLACES, _ATTACHMENT = range(5)
_URL, _SHA256, _SIZE, _MEDIA_TYPE = range(4)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A reference to content stored out of band (upload / media repository)."""

    url: str = field(repr=False)
    sha256: bytes
    size: int
    media_type: str

    def __post_init__(self) -> None:
        _check(isinstance(self.url, str) and bool(self.url), "attachment url must be a "
                                                             "non-empty string")
        _check(isinstance(self.sha256, bytes) and len(self.sha256) == SHA256_SIZE,
               "attachment sha256 must be 32 bytes")
        _check(type(self.size) is int and 0 <= self.size < 1 << 63,
               "attachment size must be an unsigned integer")
        _check(isinstance(self.media_type, str) and "/" in self.media_type,
               "attachment media type must look like type/subtype")

    def to_cbor(self) -> dict[int, Any]:
        return {_URL: self.url, _SHA256: self.sha256, _SIZE: self.size,
                _MEDIA_TYPE: self.media_type}

    @classmethod
    def from_cbor(cls, value: object) -> Attachment:
        _check(isinstance(value, dict), "attachment must be a map")
        assert isinstance(value, dict)
        _check(set(value) == {_URL, _SHA256, _SIZE, _MEDIA_TYPE},
               "attachment needs exactly url, sha256, size and media type")
        return cls(value[_URL], value[_SHA256], value[_SIZE], value[_MEDIA_TYPE])


@dataclass(frozen=True, slots=True)
class Content:
    """One application message's content (see the module docstring)."""

    message_id: bytes
    body: str | None = field(default=None, repr=False)
    reply_to: bytes | None = None
    replaces: bytes | None = None
    attachment: Attachment | None = None

    def __post_init__(self) -> None:
        _check_id(self.message_id, "message id")
        _check(self.body is None or isinstance(self.body, str), "body must be text")
        for name in ("reply_to", "replaces"):
            value = getattr(self, name)
            if value is not None:
                _check_id(value, name)
        _check(self.attachment is None or isinstance(self.attachment, Attachment),
               "attachment must be an Attachment")

    def encode(self) -> bytes:
        """The canonical CBOR encoding."""
        value: dict[int, Any] = {_ID: self.message_id}
        if self.body is not None:
            value[_BODY] = self.body
        if self.reply_to is not None:
            value[_REPLY_TO] = self.reply_to
        if self.replaces is not None:
            value[_REPLACES] = self.replaces
        if self.attachment is not None:
            value[_ATTACHMENT] = self.attachment.to_cbor()
        return cbor2.dumps(value, canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> Content:
        """Strictly decode (see the module docstring); ContentError on any deviation."""
        if not isinstance(data, bytes) or len(data) > MAX_CONTENT_SIZE:
            raise ContentError("content must be at most 1 MiB of bytes")
        try:
            value = cbor2.loads(data, tag_hook=_reject_tag, allow_indefinite=False,
                                allow_duplicate_keys=False, max_depth=4)
        except ContentError:
            raise
        except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
            raise ContentError(f"content is not valid CBOR ({type(exc).__name__})") from exc
        _check(isinstance(value, dict), "content must be a CBOR map")
        assert isinstance(value, dict)
        _check(all(type(key) is int for key in value), "content keys must be integers")
        unknown = set(value) - {_ID, _BODY, _REPLY_TO, _REPLACES, _ATTACHMENT}
        _check(not unknown, f"unknown content fields {sorted(unknown)}")
        _check(_ID in value, "content has no message id")
        attachment = value.get(_ATTACHMENT)
        content = cls(value[_ID], value.get(_BODY), value.get(_REPLY_TO),
                      value.get(_REPLACES),
                      None if attachment is None else Attachment.from_cbor(attachment))
        _check(content.encode() == data, "content is not canonically encoded")
        return content


def _reject_tag(decoder: object, tag: object) -> object:
    raise ContentError("CBOR tags are not allowed in content")


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise ContentError(reason)


def _check_id(value: object, name: str) -> None:
    _check(isinstance(value, bytes) and MESSAGE_ID_MIN <= len(value) <= MESSAGE_ID_MAX,
           f"{name} must be {MESSAGE_ID_MIN}..{MESSAGE_ID_MAX} bytes")
