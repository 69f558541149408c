"""The bridge's Authentication Service (RFC 9420 §5.3, §5.3.1; RFC 9750 §8): X.509
credentials that the hub issues and that the hub and every member check.

The hub keeps a per-bridge CA (:class:`CertificateAuthority`: an Ed25519 key and a
self-signed certificate, in the hub's identity file). A member proves that it holds its
MLS signature key (:class:`AttestRequest`, a SignWithLabel over its network identity and
the key) and the hub answers with an X.509 credential (RFC 9420 §5.3: ``certificates``
= the end-entity certificate, then the CA certificate) binding the identity URI (one
subjectAltName URI, e.g. ``xmpp:alice@example.org``) to that key for a bounded time.
The hub attests only the requester's own identity.

Members pin the hub's CA certificate on first use (:class:`HubInfo` carries it) and hold
every credential that enters their groups to it (:class:`CredentialPolicy`, the
:class:`mls.group.credentials.CredentialValidator` they pass to every ``Group`` call):
the chain ends at the pinned CA, the certificate's key is the leaf's ``signature_key``,
the certificate is valid now (for credentials entering the group; a tree being joined
is checked without the clock, RFC 9420 §5.3.2: members with expired credentials stay
until they update), and its SAN URI is the identity shown (:meth:`TrustAnchor.identity`).

The basic-credential mode (:data:`BASIC_LABEL`) is for interop with clients that cannot
use these credentials: such a group's identities are vouched for by the hub only (its
KeyPackage directory), not checked by the members.

Keys: the certificate's subjectPublicKeyInfo is the MLS signature key of any of the
seven cipher suites (Ed25519, Ed448, ECDSA P-256/P-384/P-521; RFC 9420 §5.1.1 gives
their wire forms: raw EdDSA keys, uncompressed SEC1 points).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import string
import urllib.parse
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.oid import NameOID

from bridge.errors import CredentialRejected
from mls.codec import Reader, Writer
from mls.crypto.suite import CipherSuite, Rng
from mls.enums import CipherSuiteId, CredentialType
from mls.errors import CryptoError
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender

#: How long an attestation is valid unless configured otherwise: 30 days.
DEFAULT_VALIDITY = 30 * 24 * 3600
#: Certificates start this long before their issuing: members' clocks may lag the hub's.
CLOCK_SKEW = 300
#: The SignWithLabel label of an attestation request's proof of possession.
ATTEST_LABEL = b"bridge attest"
#: How a basic-credential group is labelled wherever it is shown.
BASIC_LABEL = "identities vouched by the hub only"
#: How an X.509 group is labelled.
X509_LABEL = "identities attested by the hub's CA, checked by every member"
_CACHE_LIMIT = 4096
_NOT_AFTER_CA = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)  # RFC 5280 §4.1.2.5
_URI_SAFE = "".join(c for c in string.printable if c not in string.whitespace + "%")


class CredentialMode(enum.StrEnum):
    """What a member requires of the credentials in its groups."""

    X509 = "x509"  # attested by the hub's CA, checked by every member
    BASIC = "basic"  # identities vouched for by the hub only

    @property
    def label(self) -> str:
        return X509_LABEL if self is CredentialMode.X509 else BASIC_LABEL


# -- MLS signature keys as certificate keys ----------------------------------------------

_ED25519_SUITES = {CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
                   CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519}
_ED448_SUITES = {CipherSuiteId.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448,
                 CipherSuiteId.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448}
_EC_SUITES: dict[int, ec.EllipticCurve] = {
    CipherSuiteId.MLS_128_DHKEMP256_AES128GCM_SHA256_P256: ec.SECP256R1(),
    CipherSuiteId.MLS_256_DHKEMP384_AES256GCM_SHA384_P384: ec.SECP384R1(),
    CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521: ec.SECP521R1(),
}

CertificateKey = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | ec.EllipticCurvePublicKey


def certificate_key(suite_id: int, signature_key: bytes) -> CertificateKey:
    """The MLS signature key of ``suite_id`` (its wire form, RFC 9420 §5.1.1) as a
    certificate public key; :class:`CredentialRejected` if it is not one."""
    try:
        if suite_id in _ED25519_SUITES:
            return ed25519.Ed25519PublicKey.from_public_bytes(signature_key)
        if suite_id in _ED448_SUITES:
            return ed448.Ed448PublicKey.from_public_bytes(signature_key)
        curve = _EC_SUITES.get(suite_id)
        if curve is not None and signature_key[:1] == b"\x04":
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, signature_key)
    except (ValueError, UnsupportedAlgorithm):
        pass
    raise CredentialRejected(f"not a signature key of cipher suite {suite_id}")


def mls_signature_key(key: object) -> bytes:
    """A certificate's public key in the MLS wire form (the inverse of
    :func:`certificate_key`); :class:`CredentialRejected` for other key types."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key.public_bytes_raw()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in {
            curve.name for curve in _EC_SUITES.values()}:
        return key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    raise CredentialRejected("the certificate's key is not an MLS signature key")


# -- identities in certificates -------------------------------------------------------------

def identity_uri(identity: str) -> str:
    """The SAN URI of a network identity: the identity, non-ASCII and ``%`` percent-
    encoded as UTF-8 (an IA5String holds ASCII only; RFC 3987 §3.1)."""
    return urllib.parse.quote(identity, safe=_URI_SAFE)


def uri_identity(uri: str) -> str:
    """The network identity in a SAN URI; :class:`CredentialRejected` unless ``uri``
    is exactly what :func:`identity_uri` makes of it (one spelling per identity)."""
    try:
        identity = urllib.parse.unquote(uri, errors="strict")
    except UnicodeDecodeError:
        raise CredentialRejected("the certificate's URI is not UTF-8") from None
    if not identity or identity_uri(identity) != uri:
        raise CredentialRejected("the certificate's URI is not a canonical identity URI")
    return identity


def fingerprint(certificate: bytes) -> str:
    """SHA-256 of a DER certificate, as colon-separated hex (shown to users)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(certificate).digest())


def _time(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _serial(rng: Rng) -> int:
    """A positive serial number of at most 20 octets (RFC 5280 §4.1.2.2)."""
    return int.from_bytes(rng(16), "big") | 1


# -- the hub's CA -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The per-bridge CA: an Ed25519 private key (raw, 32 bytes) and its self-signed
    certificate (DER). It lives in the hub's identity file, never in the store."""

    private_key: bytes = field(repr=False)
    certificate: bytes

    @classmethod
    def generate(cls, name: str, *, now: int, rng: Rng) -> CertificateAuthority:
        """A new CA named after the hub, valid from ``now`` with no end (RFC 5280
        §4.1.2.5's 99991231235959Z: members pin it; it is retired by replacing it)."""
        key = ed25519.Ed25519PrivateKey.from_private_bytes(rng(32))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mls-bridge CA"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64])])
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(public).serial_number(_serial(rng))
            .not_valid_before(_time(now - CLOCK_SKEW)).not_valid_after(_NOT_AFTER_CA)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, None))
        return cls(key.private_bytes_raw(), certificate.public_bytes(serialization.Encoding.DER))

    @property
    def anchor(self) -> TrustAnchor:
        """The anchor of this CA's certificate (one per certificate in a process, so
        its cache of verified certificates is shared)."""
        return _anchor(self.certificate)

    def issue(self, identity: str, suite_id: int, signature_key: bytes, *, now: int,
              validity: int, rng: Rng) -> Credential:
        """An X.509 credential (RFC 9420 §5.3) binding ``identity`` (the SAN URI) to
        the MLS signature key of ``suite_id``, valid ``validity`` seconds from ``now``.
        The caller has checked that the requester holds the key and is ``identity``."""
        key = ed25519.Ed25519PrivateKey.from_private_bytes(self.private_key)
        ca = x509.load_der_x509_certificate(self.certificate)
        leaf = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.subject)
            .public_key(certificate_key(suite_id, signature_key))
            .serial_number(_serial(rng))
            .not_valid_before(_time(now - CLOCK_SKEW)).not_valid_after(_time(now + validity))
            # an empty subject: the SAN is critical (RFC 5280 §4.2.1.6)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(identity_uri(identity))]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                key.public_key()), critical=False)
            .sign(key, None))
        return Credential.x509((leaf.public_bytes(serialization.Encoding.DER),
                                self.certificate))


# -- verification -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Attested:
    """What a verified end-entity certificate says: identity, key, validity."""

    identity: str
    signature_key: bytes = field(repr=False)
    not_before: int
    not_after: int


class TrustAnchor:
    """A pinned CA certificate and the checks of RFC 9420 §5.3.1 against it. The
    anchor itself is trusted as pinned (its own validity is not judged: RFC 5280 §6.1.1
    takes trust anchors as given)."""

    __slots__ = ("_ca", "_verified", "certificate")

    def __init__(self, certificate: bytes) -> None:
        try:
            self._ca = x509.load_der_x509_certificate(certificate)
        except ValueError as exc:
            raise CredentialRejected("the CA certificate does not parse") from exc
        if not isinstance(self._ca.public_key(), ed25519.Ed25519PublicKey):
            raise CredentialRejected("the CA certificate's key is not Ed25519")
        self.certificate = certificate
        self._verified: dict[bytes, Attested] = {}

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    def attested(self, credential: Credential) -> Attested:
        """The end-entity certificate of an X.509 credential, checked to be issued by
        this CA (signature, issuer, a non-CA certificate naming one identity URI):
        cached by its bytes. Neither the key binding nor the time is checked here."""
        if credential.credential_type != CredentialType.X509:
            raise CredentialRejected(
                f"a credential of type {credential.credential_type} is not an X.509 one")
        chain = credential.certificates
        if not 1 <= len(chain) <= 2 or (len(chain) == 2 and chain[1] != self.certificate):
            raise CredentialRejected("the certificate chain does not end at the pinned CA")
        found = self._verified.get(chain[0])
        if found is None:
            found = self._check(chain[0])
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[chain[0]] = found
        return found

    def _check(self, der: bytes) -> Attested:
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.verify_directly_issued_by(self._ca)
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm,
                x509.ExtensionNotFound) as exc:
            raise CredentialRejected("the certificate was not issued by the pinned CA "
                                     f"({type(exc).__name__})") from None
        if constraints.value.ca or len(uris) != 1 or len(list(names.value)) != 1:
            raise CredentialRejected("the certificate is not an end-entity certificate "
                                     "naming one identity URI")
        return Attested(uri_identity(uris[0]), mls_signature_key(cert.public_key()),
                        int(cert.not_valid_before_utc.timestamp()),
                        int(cert.not_valid_after_utc.timestamp()))

    def identity(self, credential: Credential) -> str:
        """The identity an X.509 credential names, once its chain verified
        (:class:`bridge.identities.IdentityVerifier`)."""
        return self.attested(credential).identity

    def verify(self, credential: Credential, signature_key: bytes, now: int | None) -> str:
        """RFC 9420 §5.3.1 with this CA as the AS: the chain ends here, the
        certificate's key is ``signature_key`` (§5.3), and it is valid at ``now``
        (``None``: not judged). Returns the identity; :class:`CredentialRejected`."""
        found = self.attested(credential)
        if found.signature_key != signature_key:
            raise CredentialRejected("the certificate's key is not the leaf's signature key")
        if now is not None and not found.not_before <= now <= found.not_after:
            raise CredentialRejected("the certificate is expired or not yet valid")
        return found.identity


@functools.lru_cache(maxsize=32)
def _anchor(certificate: bytes) -> TrustAnchor:
    return TrustAnchor(certificate)


# -- the validator members (and the hub) hand to mls -------------------------------------------

@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    """An :class:`mls.group.credentials.CredentialValidator` (and successor validator)
    for the bridge's AS (RFC 9420 §5.3.1).

    * X.509 credentials: :meth:`TrustAnchor.verify` against ``anchor`` (rejected if
      there is none), valid at ``clock()`` (no clock: not judged; for trees being
      joined, whose members may hold expired credentials, §5.3.2);
    * basic credentials: accepted in :attr:`CredentialMode.BASIC` only (a UTF-8 identity);
    * the ``trusted`` external senders (the hub's own: its key signs, so no one else can
      use them) are accepted as they are, in both modes.

    A successor credential must name the same identity as the one it replaces."""

    mode: CredentialMode
    anchor: TrustAnchor | None
    clock: Callable[[], int] | None = None
    trusted: Collection[ExternalSender] = ()

    def tolerant(self) -> CredentialPolicy:
        """The same checks without the clock (for the tree of a group being joined)."""
        return dataclasses.replace(self, clock=None)

    def validate(self, credential: Credential, signature_key: bytes) -> None:
        if any(sender.signature_key == signature_key and sender.credential == credential
               for sender in self.trusted):
            return
        if credential.credential_type == CredentialType.X509:
            if self.anchor is None:
                raise CredentialRejected("no CA is pinned: X.509 credentials cannot be "
                                         "checked")
            self.anchor.verify(credential, signature_key,
                               None if self.clock is None else self.clock())
            return
        if credential.credential_type == CredentialType.BASIC \
                and self.mode is CredentialMode.BASIC:
            basic_identity(credential)
            return
        raise CredentialRejected(f"a credential of type {credential.credential_type} is "
                                 f"not accepted in {self.mode.value} mode")

    def validate_successor(self, old: Credential, new: Credential) -> None:
        if self.identity(old) != self.identity(new):
            raise CredentialRejected("the new credential names another identity")

    def identity(self, credential: Credential) -> str:
        """The identity a credential names (X.509: verified against the anchor)."""
        if credential.credential_type == CredentialType.X509:
            if self.anchor is None:
                raise CredentialRejected("no CA is pinned: X.509 credentials cannot be "
                                         "checked")
            return self.anchor.identity(credential)
        return basic_identity(credential)


def basic_identity(credential: Credential) -> str:
    """A basic credential's identity as text; :class:`CredentialRejected` otherwise."""
    if credential.credential_type != CredentialType.BASIC:
        raise CredentialRejected("not a basic credential")
    try:
        identity = credential.identity.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialRejected("a basic identity that is not UTF-8") from None
    if not identity:
        raise CredentialRejected("an empty basic identity")
    return identity


# -- wire structs ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AttestRequest:
    """The payload of an ``attest`` request::

        struct {
            CipherSuite cipher_suite;
            SignaturePublicKey signature_key;
            opaque signature<V>;   // SignWithLabel(., "bridge attest", AttestTBS)
        } AttestRequest;

        struct {
            opaque identity<V>;    // the requester's identity URI, UTF-8
            CipherSuite cipher_suite;
            SignaturePublicKey signature_key;
        } AttestTBS;

    The signature is the proof of possession of the key (RFC 9420 §5.1.2's
    SignWithLabel, with a label no MLS structure uses)."""

    cipher_suite: int
    signature_key: bytes
    signature: bytes = field(repr=False)

    @staticmethod
    def tbs(identity: str, cipher_suite: int, signature_key: bytes) -> bytes:
        w = Writer()
        w.opaque(identity.encode("utf-8"))
        w.u16(cipher_suite)
        w.opaque(signature_key)
        return w.getvalue()

    @classmethod
    def create(cls, cs: CipherSuite, identity: str, signature_priv: bytes) -> AttestRequest:
        key = cs.signature_public_key(signature_priv)
        signature = cs.sign_with_label(signature_priv, ATTEST_LABEL,
                                       cls.tbs(identity, cs.id, key))
        return cls(cs.id, key, signature)

    def check(self, cs: CipherSuite, identity: str) -> None:
        """The proof of possession verifies for ``identity``; else CredentialRejected."""
        try:
            ok = cs.verify_with_label(self.signature_key, ATTEST_LABEL,
                                      self.tbs(identity, self.cipher_suite,
                                               self.signature_key), self.signature)
        except CryptoError:
            ok = False
        if not ok:
            raise CredentialRejected("the proof of possession does not verify")

    def encode(self, w: Writer) -> None:
        w.u16(self.cipher_suite)
        w.opaque(self.signature_key)
        w.opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> AttestRequest:
        return cls(r.u16(), r.opaque(), r.opaque())


@dataclass(frozen=True, slots=True)
class HubInfo:
    """The reply to ``hub-info``::

        struct {
            ExternalSender external_sender;  // RFC 9420 §12.1.8.1, for new groups
            opaque ca_certificate<V>;        // DER: the CA members pin
        } HubInfo;
    """

    external_sender: ExternalSender
    ca_certificate: bytes

    def encode(self, w: Writer) -> None:
        self.external_sender.encode(w)
        w.opaque(self.ca_certificate)

    @classmethod
    def decode(cls, r: Reader) -> HubInfo:
        return cls(ExternalSender.decode(r), r.opaque())
