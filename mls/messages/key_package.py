"""Key packages (RFC 9420 §10)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mls.codec import Reader, Writer, opaque_bytes
from mls.messages.extensions import Extension
from mls.messages.leaf_node import LeafNode


@dataclass(frozen=True, slots=True)
class KeyPackage:
    """RFC 9420 §10::

        struct {
            ProtocolVersion version;
            CipherSuite cipher_suite;
            HPKEPublicKey init_key;
            LeafNode leaf_node;
            Extension extensions<V>;
            /* SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) */
            opaque signature<V>;
        } KeyPackage;

    ``version`` and ``cipher_suite`` are plain ``int`` so that packages for other
    versions or suites still parse (and are then rejected by validation).  The
    encoding is cached like that of :class:`~mls.messages.leaf_node.LeafNode`.
    """

    version: int
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    _content: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def _encode_content(self, w: Writer) -> None:
        w.raw(self.tbs_bytes())

    def to_bytes(self) -> bytes:
        """The encoding of the whole KeyPackage (cached)."""
        encoded = self._encoded
        if encoded is None:
            encoded = self.tbs_bytes() + opaque_bytes(self.signature)
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    @classmethod
    def decode(cls, r: Reader) -> KeyPackage:
        start = r.position
        version = r.u16()
        cipher_suite = r.u16()
        init_key = r.opaque()
        leaf_node = LeafNode.decode(r)
        extensions = r.structs(Extension)
        content = r.bytes_since(start)
        signature = r.opaque()
        key_package = cls(version, cipher_suite, init_key, leaf_node, extensions, signature)
        object.__setattr__(key_package, "_content", content)
        object.__setattr__(key_package, "_encoded", r.bytes_since(start))
        return key_package

    def tbs_bytes(self) -> bytes:
        """The serialized KeyPackageTBS: every field but the signature."""
        content = self._content
        if content is None:
            w = Writer()
            w.u16(self.version)
            w.u16(self.cipher_suite)
            w.opaque(self.init_key)
            self.leaf_node.encode(w)
            w.structs(self.extensions)
            content = w.getvalue()
            object.__setattr__(self, "_content", content)
        return content

    def replace(self, **changes: Any) -> KeyPackage:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)
