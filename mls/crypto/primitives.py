"""The symmetric primitives shared by the MLS suites and HPKE: HKDF (RFC 5869) and the
three AEADs (RFC 9180 §7.2-§7.3 identifiers, RFC 9420 §17.1)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mls.errors import CryptoError

_HASH_CTORS: dict[str, Callable[[bytes], Any]] = {
    "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_IPAD = bytes(byte ^ 0x36 for byte in range(256))  # RFC 2104 ipad, as a translate table
_OPAD = bytes(byte ^ 0x5C for byte in range(256))  # RFC 2104 opad


@dataclass(frozen=True, slots=True)
class Kdf:
    """HKDF-<hash> with its RFC 9180 §7.2 identifier."""

    hash_name: str
    kdf_id: int
    hash_len: int
    block_size: int = 64

    def hmac_many(self, key: bytes, messages: tuple[bytes, ...]) -> list[bytes]:
        """``HMAC(key, m)`` (RFC 2104) for each message under one key: the padded key
        blocks are hashed once and the inner/outer states copied per message, where
        ``hmac.digest`` redoes that setup for every call (RFC 9420 §9.1 derives a
        ratchet's key, nonce and next secret from one secret)."""
        ctor = _HASH_CTORS[self.hash_name]
        if len(key) > self.block_size:
            key = ctor(key).digest()
        key = key.ljust(self.block_size, b"\x00")
        inner, outer = ctor(key.translate(_IPAD)), ctor(key.translate(_OPAD))
        macs = []
        for message in messages:
            inner_copy, outer_copy = inner.copy(), outer.copy()
            inner_copy.update(message)
            outer_copy.update(inner_copy.digest())
            macs.append(outer_copy.digest())
        return macs

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
HKDF_SHA384 = Kdf("sha384", 0x0002, 48, block_size=128)
HKDF_SHA512 = Kdf("sha512", 0x0003, 64, block_size=128)


@dataclass(frozen=True, slots=True)
class Aead:
    """An AEAD with its RFC 9180 §7.3 identifier; failures raise CryptoError."""

    name: str
    aead_id: int
    key_size: int
    nonce_size: int = 12

    def cipher(self, key: bytes) -> AESGCM | ChaCha20Poly1305:
        """A cipher object for ``key``; built per operation so that no key outlives
        its use (RFC 9420 §9.2)."""
        if len(key) != self.key_size:
            raise CryptoError(f"{self.name} key must be {self.key_size} bytes")
        return ChaCha20Poly1305(key) if self.aead_id == 0x0003 else AESGCM(key)

    def encrypt(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        if len(key) != self.key_size:  # (cipher() inlined: this runs for every message)
            raise CryptoError(f"{self.name} key must be {self.key_size} bytes")
        cipher = ChaCha20Poly1305(key) if self.aead_id == 0x0003 else AESGCM(key)
        return cipher.encrypt(nonce, plaintext, aad)

    def decrypt(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        if len(key) != self.key_size:
            raise CryptoError(f"{self.name} key must be {self.key_size} bytes")
        cipher = ChaCha20Poly1305(key) if self.aead_id == 0x0003 else AESGCM(key)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise CryptoError(f"{self.name} decryption failed: authentication tag mismatch"
                              ) from None


AES_128_GCM = Aead("AES-128-GCM", 0x0001, 16)
AES_256_GCM = Aead("AES-256-GCM", 0x0002, 32)
CHACHA20_POLY1305 = Aead("ChaCha20Poly1305", 0x0003, 32)
