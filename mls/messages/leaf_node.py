"""Leaf nodes of the ratchet tree (RFC 9420 §7.2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mls.codec import Reader, Writer
from mls.enums import LeafNodeSource, closed_enum
from mls.errors import UsageError
from mls.messages.credentials import Credential
from mls.messages.extensions import Extension


def _write_u16(w: Writer, value: int) -> None:
    w.u16(value)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """RFC 9420 §7.2::

        struct {
            ProtocolVersion versions<V>;
            CipherSuite cipher_suites<V>;
            ExtensionType extensions<V>;
            ProposalType proposals<V>;
            CredentialType credentials<V>;
        } Capabilities;

    Every entry is a ``uint16`` kept as a plain ``int`` (GREASE values pass through).
    """

    versions: tuple[int, ...] = ()
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        w.vector(self.versions, _write_u16)
        w.vector(self.cipher_suites, _write_u16)
        w.vector(self.extensions, _write_u16)
        w.vector(self.proposals, _write_u16)
        w.vector(self.credentials, _write_u16)

    @classmethod
    def decode(cls, r: Reader) -> Capabilities:
        return cls(
            versions=r.vector(Reader.u16),
            cipher_suites=r.vector(Reader.u16),
            extensions=r.vector(Reader.u16),
            proposals=r.vector(Reader.u16),
            credentials=r.vector(Reader.u16),
        )


@dataclass(frozen=True, slots=True)
class Lifetime:
    """RFC 9420 §7.2: ``struct { uint64 not_before; uint64 not_after; } Lifetime;``
    (seconds since the Unix epoch)."""

    not_before: int
    not_after: int

    def encode(self, w: Writer) -> None:
        w.u64(self.not_before)
        w.u64(self.not_after)

    @classmethod
    def decode(cls, r: Reader) -> Lifetime:
        return cls(r.u64(), r.u64())


@dataclass(frozen=True, slots=True)
class LeafNode:
    """RFC 9420 §7.2::

        struct {
            HPKEPublicKey encryption_key;
            SignaturePublicKey signature_key;
            Credential credential;
            Capabilities capabilities;
            LeafNodeSource leaf_node_source;
            select (LeafNode.leaf_node_source) {
                case key_package: Lifetime lifetime;
                case update:      struct{};
                case commit:      opaque parent_hash<V>;
            };
            Extension extensions<V>;
            /* SignWithLabel(., "LeafNodeTBS", LeafNodeTBS) */
            opaque signature<V>;
        } LeafNode;

    ``lifetime`` is set only for the key_package source and ``parent_hash`` is
    meaningful only for the commit source (it is ``b""`` otherwise).
    """

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    lifetime: Lifetime | None = None
    parent_hash: bytes = b""
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    def _encode_content(self, w: Writer) -> None:
        """Every field but the signature (the common prefix of LeafNodeTBS)."""
        w.opaque(self.encryption_key)
        w.opaque(self.signature_key)
        self.credential.encode(w)
        self.capabilities.encode(w)
        w.u8(self.leaf_node_source)
        if self.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            if self.lifetime is None:
                raise UsageError("a key_package leaf node needs a lifetime")
            self.lifetime.encode(w)
        elif self.leaf_node_source == LeafNodeSource.COMMIT:
            w.opaque(self.parent_hash)
        w.structs(self.extensions)

    def encode(self, w: Writer) -> None:
        self._encode_content(w)
        w.opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> LeafNode:
        encryption_key = r.opaque()
        signature_key = r.opaque()
        credential = Credential.decode(r)
        capabilities = Capabilities.decode(r)
        source = closed_enum(LeafNodeSource, r.u8())
        lifetime = Lifetime.decode(r) if source == LeafNodeSource.KEY_PACKAGE else None
        parent_hash = r.opaque() if source == LeafNodeSource.COMMIT else b""
        extensions = r.structs(Extension)
        signature = r.opaque()
        return cls(encryption_key, signature_key, credential, capabilities, source,
                   lifetime, parent_hash, extensions, signature)

    def tbs_bytes(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """The serialized LeafNodeTBS (RFC 9420 §7.2): the leaf node without its
        signature, followed by ``opaque group_id<V>; uint32 leaf_index;`` for the
        update and commit sources."""
        w = Writer()
        self._encode_content(w)
        if self.leaf_node_source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT):
            if group_id is None or leaf_index is None:
                raise UsageError(
                    "LeafNodeTBS of an update/commit leaf needs group_id and leaf_index")
            w.opaque(group_id)
            w.u32(leaf_index)
        return w.getvalue()

    def without_signature(self) -> LeafNode:
        """This leaf node with an empty signature (ready to be signed)."""
        return dataclasses.replace(self, signature=b"")

    def replace(self, **changes: Any) -> LeafNode:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)
