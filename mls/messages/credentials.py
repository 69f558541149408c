"""Credentials (RFC 9420 §5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.codec import Reader, Writer
from mls.enums import CredentialType
from mls.errors import DecodeError, UsageError


def _write_certificate(w: Writer, cert_data: bytes) -> None:
    """``struct { opaque cert_data<V>; } Certificate;``"""
    w.opaque(cert_data)


@dataclass(frozen=True, slots=True)
class Credential:
    """RFC 9420 §5.3::

        struct {
            CredentialType credential_type;
            select (Credential.credential_type) {
                case basic: opaque identity<V>;
                case x509:  Certificate certificates<V>;
            };
        } Credential;

    ``credential_type`` is an ``int`` (an open registry), but a credential of a type
    other than basic or x509 cannot be parsed: the wire gives its body no length.
    """

    credential_type: int
    identity: bytes = b""
    certificates: tuple[bytes, ...] = ()

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, certificates: tuple[bytes, ...]) -> Credential:
        return cls(CredentialType.X509, certificates=tuple(certificates))

    def encode(self, w: Writer) -> None:
        w.u16(self.credential_type)
        if self.credential_type == CredentialType.BASIC:
            w.opaque(self.identity)
        elif self.credential_type == CredentialType.X509:
            w.vector(self.certificates, _write_certificate)
        else:
            raise UsageError(f"cannot encode credential of type {self.credential_type}")

    @classmethod
    def decode(cls, r: Reader) -> Credential:
        credential_type = r.u16()
        if credential_type == CredentialType.BASIC:
            return cls(CredentialType.BASIC, identity=r.opaque())
        if credential_type == CredentialType.X509:
            return cls(CredentialType.X509, certificates=r.vector(Reader.opaque))
        raise DecodeError(f"cannot parse credential of unknown type {credential_type}")
