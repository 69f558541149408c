"""Extensions (RFC 9420 §13.4) and the group context (RFC 9420 §8.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.codec import Reader, Writer


@dataclass(frozen=True, slots=True)
class Extension:
    """``struct { ExtensionType extension_type; opaque extension_data<V>; }``.

    The type is kept as an ``int``: unknown and GREASE types are carried through.
    """

    extension_type: int
    extension_data: bytes

    def encode(self, w: Writer) -> None:
        w.u16(self.extension_type)
        w.opaque(self.extension_data)

    @classmethod
    def decode(cls, r: Reader) -> Extension:
        return cls(r.u16(), r.opaque())


def find_extension(extensions: tuple[Extension, ...], extension_type: int) -> Extension | None:
    """The extension of a type, if present (lists hold each type at most once)."""
    for ext in extensions:
        if ext.extension_type == extension_type:
            return ext
    return None


@dataclass(frozen=True, slots=True)
class GroupContext:
    """RFC 9420 §8.1: the state summary every key derivation is bound to.

    Its encoding (signed into every message of the epoch) is cached in a private
    non-field slot; the struct is immutable."""

    version: int
    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_bytes(self) -> bytes:
        """The encoding of the GroupContext (cached)."""
        encoded = self._encoded
        if encoded is None:
            w = Writer()
            w.u16(self.version)
            w.u16(self.cipher_suite)
            w.opaque(self.group_id)
            w.u64(self.epoch)
            w.opaque(self.tree_hash)
            w.opaque(self.confirmed_transcript_hash)
            w.structs(self.extensions)
            encoded = w.getvalue()
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    @classmethod
    def decode(cls, r: Reader) -> GroupContext:
        return cls(r.u16(), r.u16(), r.opaque(), r.u64(), r.opaque(), r.opaque(),
                   r.structs(Extension))
