"""HPKE for MLS: RFC 9180 base mode with empty AAD, as RFC 9420 §5.1.3 uses it.

One :class:`HpkeKem` per cipher suite bundles DHKEM(curve, HKDF-<hash>), the suite KDF
and the suite AEAD.  Keys cross the API as bytes in their RFC 9180 §7.1.1 encoding:
X25519/X448 keys raw; P-256/P-384/P-521 public keys as uncompressed SEC1 points and
private keys as the ``Nsk``-byte big-endian scalar.

SealBase/OpenBase run on ``cryptography.hazmat.primitives.hpke`` wherever it has the
KEM (X25519, P-256, P-384, P-521).  It has no X448 KEM, so DHKEM(X448, HKDF-SHA512)
(RFC 9180 §4.1) and the base-mode key schedule (§5.1, §5.2) are written here on
``cryptography`` primitives; that pure path works for every curve, which lets the tests
cross-check it against the library (:func:`pure_kem_for_suite`).

Encapsulation draws its ephemeral key from the operating system (inside
``cryptography``, and likewise for X448); every other operation is deterministic.
This module is the only importer of HPKE code in the project.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke as _lib_hpke
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519

from mls.codec import Reader
from mls.crypto.primitives import (
    AES_128_GCM,
    AES_256_GCM,
    CHACHA20_POLY1305,
    HKDF_SHA256,
    HKDF_SHA384,
    HKDF_SHA512,
    Aead,
    Kdf,
)
from mls.enums import CipherSuiteId
from mls.errors import CryptoError, UnsupportedError

_HPKE_VERSION = b"HPKE-v1"
_MODE_BASE = b"\x00"
#: Parsed public keys kept per curve; sized for the nodes of a 10,000-member tree.
_PUBLIC_KEY_CACHE_SIZE = 32768


# -- KDF: HKDF with labels (RFC 9180 §4) ----------------------------------------------


def _labeled_extract(kdf: Kdf, suite_id: bytes, salt: bytes, label: bytes,
                     ikm: bytes) -> bytes:
    """LabeledExtract (RFC 9180 §4): Extract(salt, "HPKE-v1" || suite_id || label || ikm)."""
    return kdf.extract(salt, _HPKE_VERSION + suite_id + label + ikm)


def _labeled_expand(kdf: Kdf, suite_id: bytes, prk: bytes, label: bytes, info: bytes,
                    length: int) -> bytes:
    """LabeledExpand (RFC 9180 §4): info is I2OSP(L, 2) || "HPKE-v1" || suite_id || ..."""
    labeled_info = length.to_bytes(2, "big") + _HPKE_VERSION + suite_id + label + info
    return kdf.expand(prk, labeled_info, length)


# -- AEAD (RFC 9180 §7.3) ---------------------------------------------------------------




# -- Diffie-Hellman groups of the DHKEMs (RFC 9180 §4.1, §7.1) ---------------------------

PrivT = TypeVar("PrivT")
PubT = TypeVar("PubT")


class _DhGroup(ABC, Generic[PrivT, PubT]):
    """The curve-specific half of DHKEM(Group, KDF): key (de)serialization and DH."""

    def __init__(self, name: str, kem_id: int, kdf: Kdf, n_secret: int, n_pk: int,
                 n_sk: int) -> None:
        self.name = name
        self.kem_id = kem_id
        self.kdf = kdf
        self.n_secret = n_secret
        self.n_pk = n_pk
        self.n_sk = n_sk
        self.suite_id = b"KEM" + kem_id.to_bytes(2, "big")
        self.load_public: Callable[[bytes], PubT] = functools.lru_cache(
            maxsize=_PUBLIC_KEY_CACHE_SIZE)(self._parse_public)

    def __repr__(self) -> str:
        return f"DHKEM({self.name}, HKDF-{self.kdf.hash_name.upper()})"

    @abstractmethod
    def _parse_public(self, data: bytes) -> PubT:
        """DeserializePublicKey; raises CryptoError on a malformed encoding."""

    @abstractmethod
    def load_private(self, data: bytes) -> PrivT:
        """DeserializePrivateKey; raises CryptoError on a malformed encoding."""

    @abstractmethod
    def public_of(self, private_key: PrivT) -> PubT: ...

    @abstractmethod
    def serialize_public(self, public_key: PubT) -> bytes: ...

    @abstractmethod
    def dh(self, private_key: PrivT, public_key: PubT) -> bytes:
        """DH(skX, pkY); raises CryptoError on an invalid (e.g. all-zero) result."""

    @abstractmethod
    def generate_ephemeral(self) -> PrivT:
        """A fresh ephemeral key from the operating system's randomness."""

    @abstractmethod
    def derive_private(self, ikm: bytes) -> bytes:
        """The private-key half of DeriveKeyPair (RFC 9180 §7.1.3)."""

    def dkp_prk(self, ikm: bytes) -> bytes:
        return _labeled_extract(self.kdf, self.suite_id, b"", b"dkp_prk", ikm)

    def extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        """ExtractAndExpand (RFC 9180 §4.1)."""
        eae_prk = _labeled_extract(self.kdf, self.suite_id, b"", b"eae_prk", dh)
        return _labeled_expand(self.kdf, self.suite_id, eae_prk, b"shared_secret", kem_context,
                                       self.n_secret)


class _X25519Group(_DhGroup[x25519.X25519PrivateKey, x25519.X25519PublicKey]):
    """DHKEM(X25519, HKDF-SHA256), kem_id 0x0020."""

    def __init__(self) -> None:
        super().__init__("X25519", 0x0020, HKDF_SHA256, 32, 32, 32)

    def _parse_public(self, data: bytes) -> x25519.X25519PublicKey:
        if len(data) != self.n_pk:
            raise CryptoError(f"X25519 public key must be {self.n_pk} bytes, got {len(data)}")
        return x25519.X25519PublicKey.from_public_bytes(data)

    def load_private(self, data: bytes) -> x25519.X25519PrivateKey:
        if len(data) != self.n_sk:
            raise CryptoError(f"X25519 private key must be {self.n_sk} bytes")
        return x25519.X25519PrivateKey.from_private_bytes(data)

    def public_of(self, private_key: x25519.X25519PrivateKey) -> x25519.X25519PublicKey:
        return private_key.public_key()

    def serialize_public(self, public_key: x25519.X25519PublicKey) -> bytes:
        return public_key.public_bytes_raw()

    def dh(self, private_key: x25519.X25519PrivateKey,
           public_key: x25519.X25519PublicKey) -> bytes:
        try:
            shared = private_key.exchange(public_key)
        except ValueError:
            raise CryptoError("X25519 shared secret is all zero") from None
        return _reject_zero(shared, self.name)

    def generate_ephemeral(self) -> x25519.X25519PrivateKey:
        return x25519.X25519PrivateKey.generate()

    def derive_private(self, ikm: bytes) -> bytes:
        return _labeled_expand(self.kdf, self.suite_id, self.dkp_prk(ikm), b"sk", b"", self.n_sk)


class _X448Group(_DhGroup[x448.X448PrivateKey, x448.X448PublicKey]):
    """DHKEM(X448, HKDF-SHA512), kem_id 0x0021."""

    def __init__(self) -> None:
        super().__init__("X448", 0x0021, HKDF_SHA512, 64, 56, 56)

    def _parse_public(self, data: bytes) -> x448.X448PublicKey:
        if len(data) != self.n_pk:
            raise CryptoError(f"X448 public key must be {self.n_pk} bytes, got {len(data)}")
        return x448.X448PublicKey.from_public_bytes(data)

    def load_private(self, data: bytes) -> x448.X448PrivateKey:
        if len(data) != self.n_sk:
            raise CryptoError(f"X448 private key must be {self.n_sk} bytes")
        return x448.X448PrivateKey.from_private_bytes(data)

    def public_of(self, private_key: x448.X448PrivateKey) -> x448.X448PublicKey:
        return private_key.public_key()

    def serialize_public(self, public_key: x448.X448PublicKey) -> bytes:
        return public_key.public_bytes_raw()

    def dh(self, private_key: x448.X448PrivateKey, public_key: x448.X448PublicKey) -> bytes:
        try:
            shared = private_key.exchange(public_key)
        except ValueError:
            raise CryptoError("X448 shared secret is all zero") from None
        return _reject_zero(shared, self.name)

    def generate_ephemeral(self) -> x448.X448PrivateKey:
        return x448.X448PrivateKey.generate()

    def derive_private(self, ikm: bytes) -> bytes:
        return _labeled_expand(self.kdf, self.suite_id, self.dkp_prk(ikm), b"sk", b"", self.n_sk)


def _reject_zero(shared: bytes, group: str) -> bytes:
    """RFC 9180 §7.1.4: an all-zero X25519/X448 output must abort."""
    if not any(shared):
        raise CryptoError(f"{group} shared secret is all zero")
    return shared


class _NistGroup(_DhGroup[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]):
    """DHKEM(P-256|P-384|P-521, HKDF-<hash>) with SEC1 uncompressed public keys."""

    def __init__(self, name: str, kem_id: int, kdf: Kdf, curve: ec.EllipticCurve,
                 order: int, bitmask: int) -> None:
        n_sk = (order.bit_length() + 7) // 8
        super().__init__(name, kem_id, kdf, kdf.hash_len, 1 + 2 * n_sk, n_sk)
        self.curve = curve
        self.order = order
        self.bitmask = bitmask

    def _parse_public(self, data: bytes) -> ec.EllipticCurvePublicKey:
        if len(data) != self.n_pk or data[0] != 0x04:
            raise CryptoError(f"{self.name} public key must be an uncompressed point "
                              f"of {self.n_pk} bytes")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, data)
        except ValueError:
            raise CryptoError(f"{self.name} public key is not a point on the curve") from None

    def load_private(self, data: bytes) -> ec.EllipticCurvePrivateKey:
        # A big-endian scalar of at most Nsk bytes: some implementations drop leading
        # zero bytes (official P-521 passive-client vectors carry 65-byte keys).
        scalar = int.from_bytes(data, "big")
        if not 0 < len(data) <= self.n_sk or not 0 < scalar < self.order:
            raise CryptoError(f"{self.name} private key must be a scalar of at most "
                              f"{self.n_sk} bytes in [1, n-1]")
        return ec.derive_private_key(scalar, self.curve)

    def public_of(self, private_key: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePublicKey:
        return private_key.public_key()

    def serialize_public(self, public_key: ec.EllipticCurvePublicKey) -> bytes:
        return public_key.public_bytes(serialization.Encoding.X962,
                                       serialization.PublicFormat.UncompressedPoint)

    def dh(self, private_key: ec.EllipticCurvePrivateKey,
           public_key: ec.EllipticCurvePublicKey) -> bytes:
        try:
            return private_key.exchange(ec.ECDH(), public_key)
        except ValueError:
            raise CryptoError(f"{self.name} ECDH failed") from None

    def generate_ephemeral(self) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(self.curve)

    def derive_private(self, ikm: bytes) -> bytes:
        """The rejection-sampling loop of RFC 9180 §7.1.3 with "candidate" labels."""
        dkp_prk = self.dkp_prk(ikm)
        for counter in range(256):
            candidate = bytearray(_labeled_expand(self.kdf,
                self.suite_id, dkp_prk, b"candidate", bytes((counter,)), self.n_sk))
            candidate[0] &= self.bitmask
            scalar = int.from_bytes(candidate, "big")
            if 0 < scalar < self.order:
                return bytes(candidate)
        raise CryptoError(f"DeriveKeyPair for {self.name} found no valid scalar")


_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
_P384_ORDER = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                  "581A0DB248B0A77AECEC196ACCC52973", 16)
_P521_ORDER = int("01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
                  "3BB5C9B8899C47AEBB6FB71E91386409", 16)

_X25519 = _X25519Group()
_X448 = _X448Group()
_P256 = _NistGroup("P-256", 0x0010, HKDF_SHA256, ec.SECP256R1(), _P256_ORDER, 0xFF)
_P384 = _NistGroup("P-384", 0x0011, HKDF_SHA384, ec.SECP384R1(), _P384_ORDER, 0xFF)
_P521 = _NistGroup("P-521", 0x0012, HKDF_SHA512, ec.SECP521R1(), _P521_ORDER, 0x01)


# -- the per-suite HPKE ----------------------------------------------------------------


class HpkeKem(ABC):
    """HPKE base mode of one MLS cipher suite (RFC 9180 §5; RFC 9420 §5.1.3).

    ``n_enc``, ``n_pk`` and ``n_sk`` are the RFC 9180 §7.1 sizes in bytes.
    """

    n_enc: int
    n_pk: int
    n_sk: int
    #: Which code runs SealBase/OpenBase (for diagnostics and benchmarks).
    backend: str

    @abstractmethod
    def seal(self, public_key: bytes, info: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """SealBase(pkR, info, aad="", pt): returns (kem_output, ciphertext)."""

    @abstractmethod
    def open(self, private_key: bytes, info: bytes, kem_output: bytes,
             ciphertext: bytes) -> bytes:
        """OpenBase(enc, skR, info, aad="", ct); raises CryptoError on any failure."""

    @abstractmethod
    def seal_many(self, recipients: Sequence[tuple[bytes, bytes]],
                  info: bytes) -> list[tuple[bytes, bytes]]:
        """SealBase(pkR, info, aad="", pt) for each (pkR, pt) of ``recipients`` with one
        shared ``info``: (kem_output, ciphertext) per recipient, in order."""

    @abstractmethod
    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair (RFC 9180 §7.1.3): (private, public), serialized."""

    @abstractmethod
    def generate_key_pair(self, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """A fresh (private, public) key pair drawn from ``rng``."""

    @abstractmethod
    def public_key(self, private_key: bytes) -> bytes:
        """SerializePublicKey(pk(skX)) for a serialized private key."""

    @abstractmethod
    def setup_export_sender(self, public_key: bytes, info: bytes, exporter_context: bytes,
                            length: int, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """SetupBaseS + Export (RFC 9180 §5.3): (kem_output, exported secret); the
        ephemeral key is DeriveKeyPair of ``Nsk`` bytes from ``rng``."""

    @abstractmethod
    def export_receiver(self, private_key: bytes, info: bytes, kem_output: bytes,
                        exporter_context: bytes, length: int) -> bytes:
        """SetupBaseR + Export (RFC 9180 §5.3): the exported secret."""


class _DhKemHpke(HpkeKem, Generic[PrivT, PubT]):
    """HPKE over DHKEM(group, kdf) with the suite KDF and AEAD."""

    def __init__(self, group: _DhGroup[PrivT, PubT], kdf: Kdf, aead: Aead) -> None:
        self._group = group
        self._kdf = kdf
        self._aead = aead
        self.n_enc = group.n_pk
        self.n_pk = group.n_pk
        self.n_sk = group.n_sk
        self._hpke_suite_id = (b"HPKE" + group.kem_id.to_bytes(2, "big")
                               + kdf.kdf_id.to_bytes(2, "big") + aead.aead_id.to_bytes(2, "big"))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self._group!r}, "
                f"HKDF-{self._kdf.hash_name.upper()}, {self._aead.name})")

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair (RFC 9180 §7.1.3): (private, public), serialized."""
        private_key = self._group.derive_private(ikm)
        return private_key, self.public_key(private_key)

    def generate_key_pair(self, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """GenerateKeyPair as DeriveKeyPair of ``Nsk`` random bytes (RFC 9180 §7.1.3)."""
        return self.derive_key_pair(rng(self.n_sk))

    def public_key(self, private_key: bytes) -> bytes:
        """SerializePublicKey(pk(skX)) for a serialized private key."""
        group = self._group
        return group.serialize_public(group.public_of(group.load_private(private_key)))

    def setup_export_sender(self, public_key: bytes, info: bytes, exporter_context: bytes,
                            length: int, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """SetupBaseS(pkR, info) then Export(exporter_context, L) (RFC 9180 §5.3):
        returns (kem_output, exported secret).  RFC 9420 §8.3 uses it for ExternalInit.
        The ephemeral key is DeriveKeyPair(rng(Nsk)), so no randomness is hidden here."""
        group = self._group
        ephemeral = group.load_private(group.derive_private(rng(self.n_sk)))
        enc, shared_secret = self._encap(ephemeral, public_key)
        _, _, exporter_secret = self._key_schedule(shared_secret, info)
        return enc, self._export(exporter_secret, exporter_context, length)

    def export_receiver(self, private_key: bytes, info: bytes, kem_output: bytes,
                        exporter_context: bytes, length: int) -> bytes:
        """SetupBaseR(enc, skR, info) then Export(exporter_context, L) (RFC 9180 §5.3)."""
        shared_secret = self._decap(private_key, kem_output)
        _, _, exporter_secret = self._key_schedule(shared_secret, info)
        return self._export(exporter_secret, exporter_context, length)

    def _encap(self, ephemeral: PrivT, public_key: bytes) -> tuple[bytes, bytes]:
        """Encap(pkR) of DHKEM (RFC 9180 §4.1) with a given skE: (enc, shared_secret)."""
        group = self._group
        recipient = group.load_public(public_key)
        enc = group.serialize_public(group.public_of(ephemeral))
        dh = group.dh(ephemeral, recipient)
        return enc, group.extract_and_expand(dh, enc + public_key)

    def _decap(self, private_key: bytes, kem_output: bytes) -> bytes:
        """Decap(enc, skR) of DHKEM (RFC 9180 §4.1): the shared secret."""
        self._check_enc(kem_output)
        group = self._group
        recipient = group.load_private(private_key)
        dh = group.dh(recipient, group.load_public(kem_output))
        recipient_public = group.serialize_public(group.public_of(recipient))
        return group.extract_and_expand(dh, kem_output + recipient_public)

    def _key_schedule(self, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes, bytes]:
        """KeySchedule (RFC 9180 §5.1) in mode_base with empty psk and psk_id:
        (key, base_nonce, exporter_secret)."""
        context = self._schedule_context(info)
        key, base_nonce, secret = self._key_and_nonce(shared_secret, context)
        exporter_secret = _labeled_expand(self._kdf, self._hpke_suite_id, secret, b"exp",
                                          context, self._kdf.hash_len)
        return key, base_nonce, exporter_secret

    def _schedule_context(self, info: bytes) -> bytes:
        """``key_schedule_context = mode || psk_id_hash || info_hash`` (RFC 9180 §5.1),
        base mode with an empty psk_id: it depends on ``info`` only."""
        kdf, suite_id = self._kdf, self._hpke_suite_id
        psk_id_hash = _labeled_extract(kdf, suite_id, b"", b"psk_id_hash", b"")
        info_hash = _labeled_extract(kdf, suite_id, b"", b"info_hash", info)
        return _MODE_BASE + psk_id_hash + info_hash

    def _key_and_nonce(self, shared_secret: bytes,
                       context: bytes) -> tuple[bytes, bytes, bytes]:
        """The rest of KeySchedule (RFC 9180 §5.1): (key, base_nonce, secret)."""
        kdf, suite_id = self._kdf, self._hpke_suite_id
        secret = _labeled_extract(kdf, suite_id, shared_secret, b"secret", b"")
        key = _labeled_expand(kdf, suite_id, secret, b"key", context, self._aead.key_size)
        base_nonce = _labeled_expand(kdf, suite_id, secret, b"base_nonce", context,
                                     self._aead.nonce_size)
        return key, base_nonce, secret

    def seal_many(self, recipients: Sequence[tuple[bytes, bytes]],
                  info: bytes) -> list[tuple[bytes, bytes]]:
        """SealBase to several recipients with one ``info`` (RFC 9180 §5.1, §6.1): the
        ``info_hash`` of the key schedule is computed once -- a Welcome's ``info`` holds
        the whole encrypted GroupInfo, hashed otherwise once per joiner.  Each
        recipient gets a fresh ephemeral key (from the operating system, as in
        :meth:`seal`) and the AEAD runs with sequence number 0."""
        context = self._schedule_context(info)
        group, aead = self._group, self._aead
        sealed = []
        for public_key, plaintext in recipients:
            enc, shared_secret = self._encap(group.generate_ephemeral(), public_key)
            key, base_nonce, _ = self._key_and_nonce(shared_secret, context)
            sealed.append((enc, aead.encrypt(key, base_nonce, b"", plaintext)))
        return sealed

    def _export(self, exporter_secret: bytes, exporter_context: bytes, length: int) -> bytes:
        """Context.Export (RFC 9180 §5.3): LabeledExpand(exporter_secret, "sec", ...)."""
        return _labeled_expand(self._kdf, self._hpke_suite_id, exporter_secret, b"sec",
                               exporter_context, length)

    def _check_enc(self, kem_output: bytes) -> None:
        if len(kem_output) != self.n_enc:
            raise CryptoError(f"HPKE kem_output must be {self.n_enc} bytes, "
                              f"got {len(kem_output)}")


LibPrivT = TypeVar("LibPrivT", bound=x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey)
LibPubT = TypeVar("LibPubT", bound=x25519.X25519PublicKey | ec.EllipticCurvePublicKey)


class _LibraryHpke(_DhKemHpke[LibPrivT, LibPubT]):
    """SealBase/OpenBase by ``cryptography.hazmat.primitives.hpke``."""

    backend = "cryptography.hpke"

    def __init__(self, group: _DhGroup[LibPrivT, LibPubT], kdf: Kdf, aead: Aead,
                 library_suite: _lib_hpke.Suite) -> None:
        super().__init__(group, kdf, aead)
        self._suite = library_suite

    def seal(self, public_key: bytes, info: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        recipient = self._group.load_public(public_key)
        sealed = Reader(self._suite.encrypt(plaintext, recipient, info=info))
        kem_output = sealed.raw(self.n_enc)  # the library returns enc || ct
        return kem_output, sealed.raw(sealed.remaining)

    def open(self, private_key: bytes, info: bytes, kem_output: bytes,
             ciphertext: bytes) -> bytes:
        self._check_enc(kem_output)
        recipient = self._group.load_private(private_key)
        try:
            return self._suite.decrypt(kem_output + ciphertext, recipient, info=info)
        except (InvalidTag, ValueError):
            raise CryptoError(f"HPKE open failed ({self._group!r})") from None


class _PureHpke(_DhKemHpke[PrivT, PubT]):
    """DHKEM (RFC 9180 §4.1) and the base-mode key schedule (§5.1, §5.2) in Python."""

    backend = "pure RFC 9180 (mls.crypto.hpke)"

    def seal(self, public_key: bytes, info: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        return self._seal_with_ephemeral(self._group.generate_ephemeral(), public_key, info,
                                         plaintext)

    def _seal_with_ephemeral(self, ephemeral: PrivT, public_key: bytes, info: bytes,
                             plaintext: bytes) -> tuple[bytes, bytes]:
        """Encap(pkR) with a given skE, then Seal with sequence number 0."""
        enc, shared_secret = self._encap(ephemeral, public_key)
        key, base_nonce, _ = self._key_schedule(shared_secret, info)
        return enc, self._aead.encrypt(key, base_nonce, b"", plaintext)

    def open(self, private_key: bytes, info: bytes, kem_output: bytes,
             ciphertext: bytes) -> bytes:
        shared_secret = self._decap(private_key, kem_output)
        key, base_nonce, _ = self._key_schedule(shared_secret, info)
        try:
            return self._aead.decrypt(key, base_nonce, b"", ciphertext)
        except CryptoError:
            raise CryptoError(f"HPKE open failed ({self._group!r})") from None


# -- suites ----------------------------------------------------------------------------

_LIB_KEM = {_X25519: _lib_hpke.KEM.X25519, _P256: _lib_hpke.KEM.P256,
            _P384: _lib_hpke.KEM.P384, _P521: _lib_hpke.KEM.P521}
_LIB_KDF = {HKDF_SHA256: _lib_hpke.KDF.HKDF_SHA256, HKDF_SHA384: _lib_hpke.KDF.HKDF_SHA384,
            HKDF_SHA512: _lib_hpke.KDF.HKDF_SHA512}
_LIB_AEAD = {AES_128_GCM: _lib_hpke.AEAD.AES_128_GCM, AES_256_GCM: _lib_hpke.AEAD.AES_256_GCM,
             CHACHA20_POLY1305: _lib_hpke.AEAD.CHACHA20_POLY1305}

_SuiteParts = tuple[_DhGroup[Any, Any], Kdf, Aead]

_SUITES: dict[CipherSuiteId, _SuiteParts] = {
    CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519:
        (_X25519, HKDF_SHA256, AES_128_GCM),
    CipherSuiteId.MLS_128_DHKEMP256_AES128GCM_SHA256_P256:
        (_P256, HKDF_SHA256, AES_128_GCM),
    CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
        (_X25519, HKDF_SHA256, CHACHA20_POLY1305),
    CipherSuiteId.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448:
        (_X448, HKDF_SHA512, AES_256_GCM),
    CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521:
        (_P521, HKDF_SHA512, AES_256_GCM),
    CipherSuiteId.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
        (_X448, HKDF_SHA512, CHACHA20_POLY1305),
    CipherSuiteId.MLS_256_DHKEMP384_AES256GCM_SHA384_P384:
        (_P384, HKDF_SHA384, AES_256_GCM),
}


def _parts(suite_id: CipherSuiteId) -> _SuiteParts:
    try:
        return _SUITES[suite_id]
    except KeyError:
        raise UnsupportedError(f"no HPKE for cipher suite {int(suite_id):#06x}") from None


@functools.cache
def kem_for_suite(suite_id: CipherSuiteId) -> HpkeKem:
    """The HPKE of a suite: library-backed where ``cryptography`` has the KEM."""
    group, kdf, aead = _parts(suite_id)
    lib_kem = _LIB_KEM.get(group)
    if lib_kem is None:
        return _PureHpke(group, kdf, aead)
    return _LibraryHpke(group, kdf, aead, _lib_hpke.Suite(lib_kem, _LIB_KDF[kdf], _LIB_AEAD[aead]))


@functools.cache
def pure_kem_for_suite(suite_id: CipherSuiteId) -> HpkeKem:
    """The pure RFC 9180 path for any suite (production uses it only for X448)."""
    group, kdf, aead = _parts(suite_id)
    return _PureHpke(group, kdf, aead)
