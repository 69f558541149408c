"""The symmetric primitives shared by the MLS suites and HPKE: HKDF (RFC 5869) and the
three AEADs (RFC 9180 §7.2-§7.3 identifiers, RFC 9420 §17.1)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mls.errors import CryptoError


@dataclass(frozen=True, slots=True)
class Kdf:
    """HKDF-<hash> with its RFC 9180 §7.2 identifier."""

    hash_name: str
    kdf_id: int
    hash_len: int

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract (RFC 5869 §2.2); an empty salt means ``Nh`` zero bytes."""
        return hmac.digest(salt or bytes(self.hash_len), ikm, self.hash_name)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand (RFC 5869 §2.3)."""
        if length <= self.hash_len:  # one block: T(1) = HMAC(PRK, info | 0x01)
            return hmac.digest(prk, info + b"\x01", self.hash_name)[:length]
        if length > 255 * self.hash_len:
            raise CryptoError("HKDF-Expand output too long")
        out = bytearray()
        block = b""
        counter = 1
        while len(out) < length:
            block = hmac.digest(prk, block + info + bytes((counter,)), self.hash_name)
            out += block
            counter += 1
        return bytes(out[:length])


HKDF_SHA256 = Kdf("sha256", 0x0001, 32)
HKDF_SHA384 = Kdf("sha384", 0x0002, 48)
HKDF_SHA512 = Kdf("sha512", 0x0003, 64)


@dataclass(frozen=True, slots=True)
class Aead:
    """An AEAD with its RFC 9180 §7.3 identifier; failures raise CryptoError."""

    name: str
    aead_id: int
    key_size: int
    nonce_size: int = 12

    def cipher(self, key: bytes) -> AESGCM | ChaCha20Poly1305:
        if len(key) != self.key_size:
            raise CryptoError(f"{self.name} key must be {self.key_size} bytes")
        return ChaCha20Poly1305(key) if self.aead_id == 0x0003 else AESGCM(key)

    def encrypt(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self.cipher(key).encrypt(nonce, plaintext, aad)

    def decrypt(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        try:
            return self.cipher(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise CryptoError(f"{self.name} decryption failed: authentication tag mismatch"
                              ) from None


AES_128_GCM = Aead("AES-128-GCM", 0x0001, 16)
AES_256_GCM = Aead("AES-256-GCM", 0x0002, 32)
CHACHA20_POLY1305 = Aead("ChaCha20Poly1305", 0x0003, 32)
