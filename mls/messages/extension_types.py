"""Bodies of the extensions defined by RFC 9420 (§5.3.3, §11.1, §12.1.8.1,
§12.4.3.2).  The ratchet_tree extension body is
:func:`mls.messages.tree_nodes.encode_ratchet_tree` /
:func:`~mls.messages.tree_nodes.decode_ratchet_tree`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mls.codec import Reader, Writer
from mls.messages.credentials import Credential


def _write_u16(w: Writer, value: int) -> None:
    w.u16(value)


@dataclass(frozen=True, slots=True)
class ApplicationId:
    """RFC 9420 §5.3.3: ``opaque application_id<V>;``"""

    application_id: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.application_id)

    @classmethod
    def decode(cls, r: Reader) -> ApplicationId:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class RequiredCapabilities:
    """RFC 9420 §11.1::

        struct {
            ExtensionType extension_types<V>;
            ProposalType proposal_types<V>;
            CredentialType credential_types<V>;
        } RequiredCapabilities;
    """

    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        w.vector(self.extension_types, _write_u16)
        w.vector(self.proposal_types, _write_u16)
        w.vector(self.credential_types, _write_u16)

    @classmethod
    def decode(cls, r: Reader) -> RequiredCapabilities:
        return cls(r.vector(Reader.u16), r.vector(Reader.u16), r.vector(Reader.u16))


@dataclass(frozen=True, slots=True)
class ExternalPub:
    """RFC 9420 §12.4.3.2: ``struct { HPKEPublicKey external_pub; } ExternalPub;``"""

    external_pub: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.external_pub)

    @classmethod
    def decode(cls, r: Reader) -> ExternalPub:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class ExternalSender:
    """RFC 9420 §12.1.8.1::

        struct {
            SignaturePublicKey signature_key;
            Credential credential;
        } ExternalSender;
    """

    signature_key: bytes
    credential: Credential

    def encode(self, w: Writer) -> None:
        w.opaque(self.signature_key)
        self.credential.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> ExternalSender:
        return cls(r.opaque(), Credential.decode(r))


@dataclass(frozen=True, slots=True)
class ExternalSenders:
    """RFC 9420 §12.1.8.1: ``ExternalSender external_senders<V>;`` (the body of the
    external_senders extension)."""

    external_senders: tuple[ExternalSender, ...] = ()

    def encode(self, w: Writer) -> None:
        w.structs(self.external_senders)

    @classmethod
    def decode(cls, r: Reader) -> ExternalSenders:
        return cls(r.structs(ExternalSender))


def encode_external_senders(senders: Sequence[ExternalSender]) -> bytes:
    """The external_senders extension body."""
    w = Writer()
    w.structs(senders)
    return w.getvalue()


def decode_external_senders(data: bytes) -> tuple[ExternalSender, ...]:
    """Parse an external_senders extension body; it must consume ``data`` exactly."""
    r = Reader(data)
    senders = r.structs(ExternalSender)
    r.finish("external_senders")
    return senders
