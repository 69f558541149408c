"""The inner payload of application messages: a small CBOR content format.

Modelled on the MIMI content format (draft-ietf-mimi-content): every message has a
message id; it may carry a text body, reply to another message (``reply_to``), replace
an earlier one (``replaces``: an edit), react to one (``reaction``: an emoji, with
``reply_to`` naming the message reacted to), and carry a file: either a plain reference
to bytes stored elsewhere (``attachment``: URL, SHA-256, size, media type -- kept so
that older messages still decode) or an end-to-end encrypted file (``file``: an
:class:`ExternalPart`, modelled on MIMI's external parts: URL, the AEAD key and nonce,
the SHA-256 of the ciphertext and of the plaintext, size, media type and name; see
:mod:`bridge.member.attachments`). A message with ``replaces`` and no body, file,
attachment or reaction retracts the message it replaces (MIMI's deletion: a
replacement with no content); a retraction of a reaction takes the reaction back.

Encoding: a CBOR map with small unsigned integer keys, in deterministic (canonical)
encoding (RFC 8949 §4.2.1)::

    { 0: message_id (bstr, 16..64 bytes),
      1: body (tstr)                     ; optional
      2: reply_to (bstr message id)      ; optional
      3: replaces (bstr message id)      ; optional
      4: { 0: url (tstr), 1: sha256 (bstr .size 32), 2: size (uint),
           3: media_type (tstr) }        ; optional attachment (unencrypted reference)
      5: reaction (tstr, 1..32 chars)    ; optional; needs reply_to, excludes 1, 3, 4, 6
      6: { 0: url (tstr), 1: sha256 of the ciphertext (bstr .size 32),
           2: size of the plaintext (uint), 3: media_type (tstr),
           4: key (bstr .size 32), 5: nonce (bstr .size 12),
           6: sha256 of the plaintext (bstr .size 32), 7: name (tstr),
           8: aead (uint; 2 = AEAD_AES_256_GCM, RFC 5116 §5.2) }  ; optional file }

Decoding is strict: the bytes must be exactly the canonical encoding of such a map (no
unknown keys, no duplicate keys, no tags, no indefinite lengths, no trailing bytes, the
right type for every field); anything else raises :class:`ContentError`. The text, URLs,
file names and file keys never appear in ``repr`` or error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from bridge.errors import ContentError

MESSAGE_ID_MIN = 16
MESSAGE_ID_MAX = 64
SHA256_SIZE = 32
MAX_CONTENT_SIZE = 1 << 20

_ID, _BODY, _REPLY_TO, _REPLACES, _ATTACHMENT, _REACTION, _FILE = range(7)
_URL, _SHA256, _SIZE, _MEDIA_TYPE, _KEY, _NONCE, _PLAIN_SHA256, _NAME, _AEAD = range(9)
_FIELDS = frozenset(range(7))
_FILE_FIELDS = frozenset(range(9))
#: The one AEAD a file may be encrypted with: AEAD_AES_256_GCM (RFC 5116 §5.2; its
#: number in the IANA AEAD registry).
AEAD_AES_256_GCM = 2
FILE_KEY_SIZE = 32
FILE_NONCE_SIZE = 12
MAX_REACTION_LENGTH = 32
MAX_NAME_LENGTH = 255


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
class ExternalPart:
    """An end-to-end encrypted file stored out of band (MIMI content's external part):
    the ciphertext is at ``url``; ``key`` and ``nonce`` decrypt it (AES-256-GCM);
    ``sha256`` is the hash of the ciphertext, ``plaintext_sha256`` and ``size`` those
    of the file. The URL, key, nonce and name never appear in ``repr``."""

    url: str = field(repr=False)
    sha256: bytes
    size: int
    media_type: str
    key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    plaintext_sha256: bytes
    name: str = field(repr=False)
    aead: int = AEAD_AES_256_GCM

    def __post_init__(self) -> None:
        Attachment(self.url, self.sha256, self.size, self.media_type)  # shared checks
        _check(isinstance(self.key, bytes) and len(self.key) == FILE_KEY_SIZE,
               "file key must be 32 bytes")
        _check(isinstance(self.nonce, bytes) and len(self.nonce) == FILE_NONCE_SIZE,
               "file nonce must be 12 bytes")
        _check(isinstance(self.plaintext_sha256, bytes)
               and len(self.plaintext_sha256) == SHA256_SIZE,
               "file plaintext sha256 must be 32 bytes")
        _check(isinstance(self.name, str) and 0 < len(self.name) <= MAX_NAME_LENGTH
               and self.name not in (".", "..") and not set(self.name) & set("/\\\0"),
               "file name must be 1..255 characters without path separators")
        _check(self.aead == AEAD_AES_256_GCM, "file AEAD must be AES-256-GCM (2)")

    def to_cbor(self) -> dict[int, Any]:
        return {_URL: self.url, _SHA256: self.sha256, _SIZE: self.size,
                _MEDIA_TYPE: self.media_type, _KEY: self.key, _NONCE: self.nonce,
                _PLAIN_SHA256: self.plaintext_sha256, _NAME: self.name, _AEAD: self.aead}

    @classmethod
    def from_cbor(cls, value: object) -> ExternalPart:
        _check(isinstance(value, dict) and set(value) == _FILE_FIELDS,
               "file must be a map of exactly url, sha256, size, media type, key, nonce, "
               "plaintext sha256, name and aead")
        assert isinstance(value, dict)
        return cls(value[_URL], value[_SHA256], value[_SIZE], value[_MEDIA_TYPE],
                   value[_KEY], value[_NONCE], value[_PLAIN_SHA256], value[_NAME],
                   value[_AEAD])


@dataclass(frozen=True, slots=True)
class Content:
    """One application message's content (see the module docstring)."""

    message_id: bytes
    body: str | None = field(default=None, repr=False)
    reply_to: bytes | None = None
    replaces: bytes | None = None
    attachment: Attachment | None = None
    reaction: str | None = None
    file: ExternalPart | None = None

    def __post_init__(self) -> None:
        _check_id(self.message_id, "message id")
        _check(self.body is None or isinstance(self.body, str), "body must be text")
        for name in ("reply_to", "replaces"):
            value = getattr(self, name)
            if value is not None:
                _check_id(value, name)
        _check(self.attachment is None or isinstance(self.attachment, Attachment),
               "attachment must be an Attachment")
        _check(self.file is None or isinstance(self.file, ExternalPart),
               "file must be an ExternalPart")
        if self.reaction is not None:
            _check(isinstance(self.reaction, str)
                   and 0 < len(self.reaction) <= MAX_REACTION_LENGTH,
                   "reaction must be 1..32 characters")
            _check(self.reply_to is not None, "a reaction needs the message it reacts to")
            _check(self.body is None and self.replaces is None and self.attachment is None
                   and self.file is None, "a reaction carries nothing else")

    @property
    def retracts(self) -> bytes | None:
        """The id of the message this one retracts (a replacement with no content)."""
        if self.replaces is None or self.body or self.attachment is not None \
                or self.file is not None or self.reaction is not None:
            return None
        return self.replaces

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
        if self.reaction is not None:
            value[_REACTION] = self.reaction
        if self.file is not None:
            value[_FILE] = self.file.to_cbor()
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
        unknown = set(value) - _FIELDS
        _check(not unknown, f"unknown content fields {sorted(unknown)}")
        _check(_ID in value, "content has no message id")
        attachment, file = value.get(_ATTACHMENT), value.get(_FILE)
        content = cls(value[_ID], value.get(_BODY), value.get(_REPLY_TO),
                      value.get(_REPLACES),
                      None if attachment is None else Attachment.from_cbor(attachment),
                      value.get(_REACTION),
                      None if file is None else ExternalPart.from_cbor(file))
        _check(content.encode() == data, "content is not canonically encoded")
        return content


def new_message_id(rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh random 16-byte message id."""
    return rng(MESSAGE_ID_MIN)


def _reject_tag(decoder: object, tag: object) -> object:
    raise ContentError("CBOR tags are not allowed in content")


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise ContentError(reason)


def _check_id(value: object, name: str) -> None:
    _check(isinstance(value, bytes) and MESSAGE_ID_MIN <= len(value) <= MESSAGE_ID_MAX,
           f"{name} must be {MESSAGE_ID_MIN}..{MESSAGE_ID_MAX} bytes")
