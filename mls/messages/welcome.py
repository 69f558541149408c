"""Welcome, GroupSecrets and GroupInfo (RFC 9420 §12.4.3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mls.codec import Reader, Writer
from mls.messages.extensions import Extension, GroupContext
from mls.messages.psk import PreSharedKeyID
from mls.messages.tree_nodes import HPKECiphertext


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets:
    """RFC 9420 §12.4.3::

        struct {
            KeyPackageRef new_member;
            HPKECiphertext encrypted_group_secrets;
        } EncryptedGroupSecrets;
    """

    new_member: bytes
    encrypted_group_secrets: HPKECiphertext

    def encode(self, w: Writer) -> None:
        w.opaque(self.new_member)
        self.encrypted_group_secrets.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> EncryptedGroupSecrets:
        return cls(r.opaque(), HPKECiphertext.decode(r))


@dataclass(frozen=True, slots=True)
class Welcome:
    """RFC 9420 §12.4.3::

        struct {
            CipherSuite cipher_suite;
            EncryptedGroupSecrets secrets<V>;
            opaque encrypted_group_info<V>;
        } Welcome;
    """

    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def encode(self, w: Writer) -> None:
        w.u16(self.cipher_suite)
        w.structs(self.secrets)
        w.opaque(self.encrypted_group_info)

    @classmethod
    def decode(cls, r: Reader) -> Welcome:
        return cls(r.u16(), r.structs(EncryptedGroupSecrets), r.opaque())


@dataclass(frozen=True, slots=True)
class GroupSecrets:
    """RFC 9420 §12.4.3::

        struct { opaque path_secret<V>; } PathSecret;

        struct {
            opaque joiner_secret<V>;
            optional<PathSecret> path_secret;
            PreSharedKeyID psks<V>;
        } GroupSecrets;

    The secrets are kept out of ``repr``.
    """

    joiner_secret: bytes = field(repr=False)
    path_secret: bytes | None = field(default=None, repr=False)
    psks: tuple[PreSharedKeyID, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.joiner_secret)
        w.optional_opaque(self.path_secret)  # PathSecret is a one-field struct
        w.structs(self.psks)

    @classmethod
    def decode(cls, r: Reader) -> GroupSecrets:
        return cls(r.opaque(), r.optional_opaque(), r.structs(PreSharedKeyID))


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """RFC 9420 §12.4.3::

        struct {
            GroupContext group_context;
            Extension extensions<V>;
            MAC confirmation_tag;
            uint32 signer;
            /* SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) */
            opaque signature<V>;
        } GroupInfo;
    """

    group_context: GroupContext
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    def _encode_content(self, w: Writer) -> None:
        self.group_context.encode(w)
        w.structs(self.extensions)
        w.opaque(self.confirmation_tag)
        w.u32(self.signer)

    def encode(self, w: Writer) -> None:
        self._encode_content(w)
        w.opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> GroupInfo:
        group_context = GroupContext.decode(r)
        extensions = r.structs(Extension)
        confirmation_tag = r.opaque()
        signer = r.u32()
        return cls(group_context, extensions, confirmation_tag, signer, r.opaque())

    def tbs_bytes(self) -> bytes:
        """The serialized GroupInfoTBS: every field but the signature."""
        w = Writer()
        self._encode_content(w)
        return w.getvalue()

    def replace(self, **changes: Any) -> GroupInfo:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)
