"""Signature schemes of the MLS cipher suites (RFC 9420 §5.1.2, §17.1).

Keys and signatures cross the API as bytes in the encodings RFC 9420 §5.1.1 and the
official test vectors use:

* Ed25519 / Ed448 (RFC 8032): raw 32/57-byte private and public keys, raw signatures.
* ECDSA over P-256/P-384/P-521 with SHA-256/384/512: public keys as uncompressed SEC1
  points, private keys as the raw big-endian scalar of the curve's byte length, and
  DER-encoded signatures.  Signing is deterministic (RFC 6979), so ``mls`` needs no
  randomness for it.

Parsed public keys are cached by their bytes (verification of a large tree sees the
same keys again and again); parsed signing keys are cached in a small cache, as a
member signs with the same long-term key repeatedly.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from mls.enums import CipherSuiteId
from mls.errors import CryptoError, UnsupportedError

#: Parsed verification keys kept per scheme; sized for a 10,000-member group.
_PUBLIC_KEY_CACHE_SIZE = 32768
#: Parsed signing keys kept per scheme (a client holds a handful of its own).
_PRIVATE_KEY_CACHE_SIZE = 16

PrivT = TypeVar("PrivT")
PubT = TypeVar("PubT")


class SignatureScheme(ABC):
    """One signature scheme over serialized keys (RFC 9420 §5.1.2)."""

    name: str

    @abstractmethod
    def sign(self, private_key: bytes, message: bytes) -> bytes:
        """Sign ``message``; raises CryptoError on a malformed private key."""

    @abstractmethod
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is valid; False also for a malformed signature.

        A public key that does not parse raises CryptoError.
        """

    @abstractmethod
    def generate_key_pair(self, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """A fresh (private, public) key pair drawn from ``rng``."""

    @abstractmethod
    def public_key(self, private_key: bytes) -> bytes:
        """The serialized public key of a serialized private key."""

    def __repr__(self) -> str:
        return f"SignatureScheme({self.name})"


class _CachedScheme(SignatureScheme, Generic[PrivT, PubT]):
    """Key parsing with per-scheme LRU caches keyed by the key bytes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._load_public: Callable[[bytes], PubT] = functools.lru_cache(
            maxsize=_PUBLIC_KEY_CACHE_SIZE)(self._parse_public)
        self._load_private: Callable[[bytes], PrivT] = functools.lru_cache(
            maxsize=_PRIVATE_KEY_CACHE_SIZE)(self._parse_private)

    @abstractmethod
    def _parse_public(self, data: bytes) -> PubT: ...

    @abstractmethod
    def _parse_private(self, data: bytes) -> PrivT: ...


class _EdDsa(_CachedScheme[ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
                           ed25519.Ed25519PublicKey | ed448.Ed448PublicKey]):
    """Ed25519 or Ed448 (RFC 8032, pure variants, empty context)."""

    def __init__(self, name: str, key_size: int,
                 private_cls: type[ed25519.Ed25519PrivateKey] | type[ed448.Ed448PrivateKey],
                 public_cls: type[ed25519.Ed25519PublicKey] | type[ed448.Ed448PublicKey]) -> None:
        super().__init__(name)
        self.key_size = key_size
        self._private_cls = private_cls
        self._public_cls = public_cls

    def _parse_public(self, data: bytes) -> ed25519.Ed25519PublicKey | ed448.Ed448PublicKey:
        if len(data) != self.key_size:
            raise CryptoError(f"{self.name} public key must be {self.key_size} bytes, "
                              f"got {len(data)}")
        return self._public_cls.from_public_bytes(data)

    def _parse_private(self, data: bytes) -> ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey:
        if len(data) != self.key_size:
            raise CryptoError(f"{self.name} private key must be {self.key_size} bytes")
        return self._private_cls.from_private_bytes(data)

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        return self._load_private(private_key).sign(message)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = self._load_public(public_key)
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def generate_key_pair(self, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        private_key = rng(self.key_size)
        return private_key, self.public_key(private_key)

    def public_key(self, private_key: bytes) -> bytes:
        return self._load_private(private_key).public_key().public_bytes_raw()


class _Ecdsa(_CachedScheme[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]):
    """ECDSA with deterministic nonces (RFC 6979) and DER signatures."""

    def __init__(self, name: str, curve: ec.EllipticCurve, hash_algorithm: hashes.HashAlgorithm,
                 top_byte_mask: int) -> None:
        super().__init__(name)
        self._curve = curve
        self._algorithm = ec.ECDSA(hash_algorithm, deterministic_signing=True)
        self.scalar_size = (curve.key_size + 7) // 8
        self.public_key_size = 1 + 2 * self.scalar_size
        self._top_byte_mask = top_byte_mask

    def _parse_public(self, data: bytes) -> ec.EllipticCurvePublicKey:
        if len(data) != self.public_key_size or data[0] != 0x04:
            raise CryptoError(f"{self.name} public key must be an uncompressed point "
                              f"of {self.public_key_size} bytes")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self._curve, data)
        except ValueError:
            raise CryptoError(f"{self.name} public key is not a point on the curve") from None

    def _parse_private(self, data: bytes) -> ec.EllipticCurvePrivateKey:
        # A big-endian scalar; some implementations drop leading zero bytes (the
        # official message-protection vector for P-521 has a 65-byte key), so any
        # non-empty length up to the field size is accepted.
        if not 0 < len(data) <= self.scalar_size:
            raise CryptoError(f"{self.name} private key must be a scalar of at most "
                              f"{self.scalar_size} bytes")
        try:
            return ec.derive_private_key(int.from_bytes(data, "big"), self._curve)
        except ValueError:
            raise CryptoError(f"{self.name} private key is out of range") from None

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        return self._load_private(private_key).sign(message, self._algorithm)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = self._load_public(public_key)
        try:
            key.verify(signature, message, self._algorithm)
        except InvalidSignature:
            return False
        return True

    def generate_key_pair(self, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """Rejection sampling of a scalar in [1, n-1] from ``rng``."""
        for _ in range(256):
            candidate = bytearray(rng(self.scalar_size))
            candidate[0] &= self._top_byte_mask
            try:
                key = self._parse_private(bytes(candidate))
            except CryptoError:
                continue  # zero or >= the group order: draw again
            return bytes(candidate), self._serialize_public(key.public_key())
        raise CryptoError(f"{self.name}: no valid private scalar after 256 draws")

    def public_key(self, private_key: bytes) -> bytes:
        return self._serialize_public(self._load_private(private_key).public_key())

    @staticmethod
    def _serialize_public(key: ec.EllipticCurvePublicKey) -> bytes:
        return key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)


_ED25519 = _EdDsa("Ed25519", 32, ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)
_ED448 = _EdDsa("Ed448", 57, ed448.Ed448PrivateKey, ed448.Ed448PublicKey)
_P256 = _Ecdsa("ECDSA-P256-SHA256", ec.SECP256R1(), hashes.SHA256(), 0xFF)
_P384 = _Ecdsa("ECDSA-P384-SHA384", ec.SECP384R1(), hashes.SHA384(), 0xFF)
_P521 = _Ecdsa("ECDSA-P521-SHA512", ec.SECP521R1(), hashes.SHA512(), 0x01)

_SCHEMES: dict[CipherSuiteId, SignatureScheme] = {
    CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: _ED25519,
    CipherSuiteId.MLS_128_DHKEMP256_AES128GCM_SHA256_P256: _P256,
    CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519: _ED25519,
    CipherSuiteId.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448: _ED448,
    CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521: _P521,
    CipherSuiteId.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448: _ED448,
    CipherSuiteId.MLS_256_DHKEMP384_AES256GCM_SHA384_P384: _P384,
}


def scheme_for_suite(suite_id: CipherSuiteId) -> SignatureScheme:
    """The signature scheme of a registered cipher suite (RFC 9420 §17.1)."""
    try:
        return _SCHEMES[suite_id]
    except KeyError:
        raise UnsupportedError(f"no signature scheme for cipher suite {int(suite_id):#06x}") \
            from None
