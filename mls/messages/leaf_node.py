"""Leaf nodes of the ratchet tree (RFC 9420 §7.2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mls.codec import Reader, Writer, opaque_bytes
from mls.enums import LeafNodeSource, closed_enum
from mls.errors import UsageError
from mls.messages.credentials import Credential
from mls.messages.extensions import Extension


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
        w.uint_vector(self.versions, 2)
        w.uint_vector(self.cipher_suites, 2)
        w.uint_vector(self.extensions, 2)
        w.uint_vector(self.proposals, 2)
        w.uint_vector(self.credentials, 2)

    @classmethod
    def decode(cls, r: Reader) -> Capabilities:
        return cls(
            versions=r.uint_vector(2),
            cipher_suites=r.uint_vector(2),
            extensions=r.uint_vector(2),
            proposals=r.uint_vector(2),
            credentials=r.uint_vector(2),
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

    The encoding of every field but the signature is computed once (or kept from the
    decoded bytes) and cached in a private non-field slot: the node is immutable and
    encoded many times (signature checks, tree hashes, KeyPackage refs, Welcome trees).
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
    _content: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def content_bytes(self) -> bytes:
        """Every field but the signature (the common prefix of LeafNodeTBS)."""
        content = self._content
        if content is None:
            w = Writer()
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
            content = w.getvalue()
            object.__setattr__(self, "_content", content)
        return content

    def _encode_content(self, w: Writer) -> None:
        w.raw(self.content_bytes())

    def to_bytes(self) -> bytes:
        """The encoding of the whole LeafNode: the cached content and the signature
        (joined on each call, so that a tree's leaves hold their encoding once)."""
        return self.content_bytes() + opaque_bytes(self.signature)

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    @classmethod
    def decode(cls, r: Reader) -> LeafNode:
        start = r.position
        encryption_key = r.opaque()
        signature_key = r.opaque()
        credential = Credential.decode(r)
        capabilities = Capabilities.decode(r)
        source = closed_enum(LeafNodeSource, r.u8())
        lifetime = Lifetime.decode(r) if source == LeafNodeSource.KEY_PACKAGE else None
        parent_hash = r.opaque() if source == LeafNodeSource.COMMIT else b""
        extensions = r.structs(Extension)
        content = r.bytes_since(start)
        signature = r.opaque()
        node = cls(encryption_key, signature_key, credential, capabilities, source,
                   lifetime, parent_hash, extensions, signature)
        object.__setattr__(node, "_content", content)
        return node

    def tbs_bytes(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """The serialized LeafNodeTBS (RFC 9420 §7.2): the leaf node without its
        signature, followed by ``opaque group_id<V>; uint32 leaf_index;`` for the
        update and commit sources."""
        content = self.content_bytes()
        if self.leaf_node_source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT):
            if group_id is None or leaf_index is None:
                raise UsageError(
                    "LeafNodeTBS of an update/commit leaf needs group_id and leaf_index")
            w = Writer()
            w.raw(content)
            w.opaque(group_id)
            w.u32(leaf_index)
            return w.getvalue()
        return content

    def without_signature(self) -> LeafNode:
        """This leaf node with an empty signature (ready to be signed)."""
        return dataclasses.replace(self, signature=b"")

    def replace(self, **changes: Any) -> LeafNode:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)
