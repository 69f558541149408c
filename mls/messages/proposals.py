"""Proposals and Commit (RFC 9420 §12.1, §12.4).

Each proposal class encodes only its body (the struct the RFC names ``Add``,
``Update``, ...); :func:`encode_proposal` / :func:`decode_proposal` handle the
``Proposal`` union with its ``proposal_type`` selector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mls.codec import Reader, Writer
from mls.enums import ProposalOrRefType, ProposalType, closed_enum
from mls.errors import DecodeError, UsageError
from mls.messages.extensions import Extension
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import LeafNode
from mls.messages.psk import PreSharedKeyID
from mls.messages.tree_nodes import UpdatePath


@dataclass(frozen=True, slots=True)
class Add:
    """RFC 9420 §12.1.1: ``struct { KeyPackage key_package; } Add;``"""

    proposal_type: ClassVar[ProposalType] = ProposalType.ADD
    key_package: KeyPackage

    def encode(self, w: Writer) -> None:
        self.key_package.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Add:
        return cls(KeyPackage.decode(r))


@dataclass(frozen=True, slots=True)
class Update:
    """RFC 9420 §12.1.2: ``struct { LeafNode leaf_node; } Update;``"""

    proposal_type: ClassVar[ProposalType] = ProposalType.UPDATE
    leaf_node: LeafNode

    def encode(self, w: Writer) -> None:
        self.leaf_node.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Update:
        return cls(LeafNode.decode(r))


@dataclass(frozen=True, slots=True)
class Remove:
    """RFC 9420 §12.1.3: ``struct { uint32 removed; } Remove;``"""

    proposal_type: ClassVar[ProposalType] = ProposalType.REMOVE
    removed: int

    def encode(self, w: Writer) -> None:
        w.u32(self.removed)

    @classmethod
    def decode(cls, r: Reader) -> Remove:
        return cls(r.u32())


@dataclass(frozen=True, slots=True)
class PreSharedKey:
    """RFC 9420 §12.1.4: ``struct { PreSharedKeyID psk; } PreSharedKey;``"""

    proposal_type: ClassVar[ProposalType] = ProposalType.PSK
    psk: PreSharedKeyID

    def encode(self, w: Writer) -> None:
        self.psk.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> PreSharedKey:
        return cls(PreSharedKeyID.decode(r))


@dataclass(frozen=True, slots=True)
class ReInit:
    """RFC 9420 §12.1.5::

        struct {
            opaque group_id<V>;
            ProtocolVersion version;
            CipherSuite cipher_suite;
            Extension extensions<V>;
        } ReInit;
    """

    proposal_type: ClassVar[ProposalType] = ProposalType.REINIT
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.structs(self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> ReInit:
        return cls(r.opaque(), r.u16(), r.u16(), r.structs(Extension))


@dataclass(frozen=True, slots=True)
class ExternalInit:
    """RFC 9420 §12.1.6: ``struct { opaque kem_output<V>; } ExternalInit;``"""

    proposal_type: ClassVar[ProposalType] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.kem_output)

    @classmethod
    def decode(cls, r: Reader) -> ExternalInit:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class GroupContextExtensions:
    """RFC 9420 §12.1.7: ``struct { Extension extensions<V>; } GroupContextExtensions;``"""

    proposal_type: ClassVar[ProposalType] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: tuple[Extension, ...] = ()

    def encode(self, w: Writer) -> None:
        w.structs(self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> GroupContextExtensions:
        return cls(r.structs(Extension))


Proposal = Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions

PROPOSAL_CLASSES: dict[int, type[Proposal]] = {
    cls.proposal_type: cls
    for cls in (Add, Update, Remove, PreSharedKey, ReInit, ExternalInit, GroupContextExtensions)
}


def encode_proposal(w: Writer, proposal: Proposal) -> None:
    """Write ``Proposal`` (RFC 9420 §12.1): ``proposal_type`` then the body."""
    w.u16(proposal.proposal_type)
    proposal.encode(w)


def decode_proposal(r: Reader) -> Proposal:
    """Read ``Proposal``; an unknown type cannot be skipped (no length) -> DecodeError."""
    proposal_type = r.u16()
    cls = PROPOSAL_CLASSES.get(proposal_type)
    if cls is None:
        raise DecodeError(f"cannot parse proposal of unknown type {proposal_type}")
    return cls.decode(r)


def proposal_bytes(proposal: Proposal) -> bytes:
    """The serialized ``Proposal`` (with its type), e.g. for a ProposalRef."""
    w = Writer()
    encode_proposal(w, proposal)
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class ProposalOrRef:
    """RFC 9420 §12.4::

        struct {
            ProposalOrRefType type;
            select (ProposalOrRef.type) {
                case proposal:  Proposal proposal;
                case reference: ProposalRef reference;
            };
        } ProposalOrRef;

    Exactly one of ``proposal`` and ``reference`` is set.
    """

    proposal: Proposal | None = None
    reference: bytes | None = None

    def __post_init__(self) -> None:
        if (self.proposal is None) == (self.reference is None):
            raise UsageError("ProposalOrRef holds exactly one of proposal and reference")

    @property
    def type(self) -> ProposalOrRefType:
        if self.proposal is not None:
            return ProposalOrRefType.PROPOSAL
        return ProposalOrRefType.REFERENCE

    def encode(self, w: Writer) -> None:
        w.u8(self.type)
        if self.proposal is not None:
            encode_proposal(w, self.proposal)
        else:
            assert self.reference is not None
            w.opaque(self.reference)

    @classmethod
    def decode(cls, r: Reader) -> ProposalOrRef:
        kind = closed_enum(ProposalOrRefType, r.u8())
        if kind == ProposalOrRefType.PROPOSAL:
            return cls(proposal=decode_proposal(r))
        return cls(reference=r.opaque())


@dataclass(frozen=True, slots=True)
class Commit:
    """RFC 9420 §12.4::

        struct {
            ProposalOrRef proposals<V>;
            optional<UpdatePath> path;
        } Commit;

    The encoding is cached (or kept from the decoded bytes) in a private non-field
    slot: a Commit is encoded for its signature, its membership tag, the transcript
    hash and the wire, and with an UpdatePath it can hold thousands of ciphertexts.
    """

    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_bytes(self) -> bytes:
        """The encoding of the Commit (cached)."""
        encoded = self._encoded
        if encoded is None:
            w = Writer()
            w.structs(self.proposals)
            w.optional(self.path)
            encoded = w.getvalue()
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    @classmethod
    def decode(cls, r: Reader) -> Commit:
        start = r.position
        commit = cls(r.structs(ProposalOrRef), r.optional(UpdatePath))
        object.__setattr__(commit, "_encoded", r.bytes_since(start))
        return commit
