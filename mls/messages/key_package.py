"""Key packages (RFC 9420 §10)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mls.codec import Reader, Writer
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
    versions or suites still parse (and are then rejected by validation).
    """

    version: int
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    def _encode_content(self, w: Writer) -> None:
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque(self.init_key)
        self.leaf_node.encode(w)
        w.structs(self.extensions)

    def encode(self, w: Writer) -> None:
        self._encode_content(w)
        w.opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> KeyPackage:
        version = r.u16()
        cipher_suite = r.u16()
        init_key = r.opaque()
        leaf_node = LeafNode.decode(r)
        extensions = r.structs(Extension)
        return cls(version, cipher_suite, init_key, leaf_node, extensions, r.opaque())

    def tbs_bytes(self) -> bytes:
        """The serialized KeyPackageTBS: every field but the signature."""
        w = Writer()
        self._encode_content(w)
        return w.getvalue()

    def replace(self, **changes: Any) -> KeyPackage:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)
