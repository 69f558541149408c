"""MLS cipher suites and the labelled primitives built on them (RFC 9420 §5.1-§5.2).

A :class:`CipherSuite` bundles the hash, KDF (HKDF with that hash), AEAD, HPKE KEM and
signature scheme of one registered suite (RFC 9420 §17.1) and offers the MLS-level
operations: ExpandWithLabel, DeriveSecret, DeriveTreeSecret, RefHash, MAC,
SignWithLabel/VerifyWithLabel and EncryptWithLabel/DecryptWithLabel.

Keys cross this API as bytes in their MLS wire encoding (RFC 9420 §5.1.1, RFC 9180
§7.1.1 SerializePublicKey/SerializePrivateKey).  Randomness is a parameter
(``rng(n) -> bytes``) wherever this module needs it, except that HPKE encapsulation
inside ``cryptography`` draws its ephemeral key from the operating system.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from mls.codec import Writer, opaque_bytes
from mls.crypto.hpke import HpkeKem, kem_for_suite
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
from mls.crypto.signature import SignatureScheme, scheme_for_suite
from mls.enums import CipherSuiteId
from mls.errors import UnsupportedError, UsageError

#: Source of randomness: ``rng(n)`` returns ``n`` uniformly random bytes.
Rng = Callable[[int], bytes]

_LABEL_PREFIX = b"MLS 1.0 "


@functools.lru_cache(maxsize=256)
def _label_field(label: bytes) -> bytes:
    """``opaque label<V> = "MLS 1.0 " + Label`` (labels are a handful of constants)."""
    w = Writer()
    w.opaque(_LABEL_PREFIX + label)
    return w.getvalue()


def _labelled(label: bytes, context: bytes) -> bytes:
    """``opaque label<V> = "MLS 1.0 " + Label; opaque context<V>`` (shared layout)."""
    return _label_field(label) + opaque_bytes(context)



_SUITE_PARAMS: dict[CipherSuiteId, tuple[Kdf, Aead]] = {
    CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: (HKDF_SHA256, AES_128_GCM),
    CipherSuiteId.MLS_128_DHKEMP256_AES128GCM_SHA256_P256: (HKDF_SHA256, AES_128_GCM),
    CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
        (HKDF_SHA256, CHACHA20_POLY1305),
    CipherSuiteId.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448: (HKDF_SHA512, AES_256_GCM),
    CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521: (HKDF_SHA512, AES_256_GCM),
    CipherSuiteId.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
        (HKDF_SHA512, CHACHA20_POLY1305),
    CipherSuiteId.MLS_256_DHKEMP384_AES256GCM_SHA384_P384: (HKDF_SHA384, AES_256_GCM),
}


class CipherSuite:
    """One registered MLS cipher suite (RFC 9420 §5.1, §17.1)."""

    __slots__ = ("_hash_ctor", "_key_head", "_nonce_head", "_secret_head", "aead",
                 "hash_len", "hash_name", "id", "kdf", "kem", "signature")

    def __init__(self, suite_id: CipherSuiteId) -> None:
        kdf, aead = _SUITE_PARAMS[suite_id]
        self.id = suite_id
        self.kdf = kdf
        self.hash_name = kdf.hash_name
        self._hash_ctor: Callable[[bytes], Any] = getattr(hashlib, kdf.hash_name)
        self.hash_len = kdf.hash_len
        self.aead = aead
        self.kem: HpkeKem = kem_for_suite(suite_id)
        self.signature: SignatureScheme = scheme_for_suite(suite_id)
        # KDFLabel heads (uint16 length, label<V>) of the per-message derivations;
        # every suite's Nk and Nn fit in one HKDF-Expand block.
        self._key_head = aead.key_size.to_bytes(2, "big") + _label_field(b"key")
        self._nonce_head = aead.nonce_size.to_bytes(2, "big") + _label_field(b"nonce")
        self._secret_head = kdf.hash_len.to_bytes(2, "big") + _label_field(b"secret")

    def __repr__(self) -> str:
        return f"CipherSuite({self.id.name})"

    # -- hash, KDF, MAC (RFC 9420 §5.1, §5.2) ---------------------------------------

    def hash(self, data: bytes) -> bytes:
        return self._hash_ctor(data).digest()  # type: ignore[no-any-return]

    def mac(self, key: bytes, data: bytes) -> bytes:
        """MAC(key, data): HMAC with the suite hash (RFC 9420 §5.1)."""
        return hmac.digest(key, data, self.hash_name)

    def verify_mac(self, key: bytes, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.mac(key, data), tag)

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract (RFC 5869 §2.2); an empty salt means Nh zero bytes."""
        return self.kdf.extract(salt, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand (RFC 5869 §2.3)."""
        return self.kdf.expand(prk, info, length)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """ExpandWithLabel (RFC 9420 §8): KDFLabel = uint16 length, label, context."""
        info = length.to_bytes(2, "big") + _label_field(label) + opaque_bytes(context)
        return self.kdf.expand(secret, info, length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        """DeriveSecret(Secret, Label) = ExpandWithLabel(Secret, Label, "", Nh)."""
        return self.expand_with_label(secret, label, b"", self.hash_len)

    def derive_tree_secret(self, secret: bytes, label: bytes, generation: int,
                           length: int) -> bytes:
        """DeriveTreeSecret (RFC 9420 §9): context is the uint32 generation.  Runs for
        every message, so the one-block case of HKDF-Expand is written out here:
        ``T(1) = HMAC(secret, KDFLabel || 0x01)``."""
        if length <= self.hash_len and 0 <= generation < 1 << 32:
            info = (length.to_bytes(2, "big") + _label_field(label) + b"\x04"
                    + generation.to_bytes(4, "big") + b"\x01")
            return hmac.digest(secret, info, self.hash_name)[:length]
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def key_and_nonce(self, secret: bytes, context: bytes) -> tuple[bytes, bytes]:
        """``ExpandWithLabel(secret, "key", context, Nk)`` and
        ``ExpandWithLabel(secret, "nonce", context, Nn)`` (RFC 9420 §6.3.2 sender data
        keys; with the uint32 generation as context, the DeriveTreeSecret key and
        nonce of §9.1).  Both fit one HKDF-Expand block: ``HMAC(secret, KDFLabel|1)``."""
        tail = opaque_bytes(context) + b"\x01"
        key, nonce = self.kdf.hmac_many(secret, (self._key_head + tail,
                                                 self._nonce_head + tail))
        return key[:self.aead.key_size], nonce[:self.aead.nonce_size]

    def ratchet_step(self, secret: bytes, generation_bytes: bytes
                     ) -> tuple[bytes, bytes, bytes]:
        """DeriveTreeSecret(secret, "key"/"nonce"/"secret", generation, Nk/Nn/Nh)
        (RFC 9420 §9.1): the key, nonce and next secret of one ratchet generation,
        given as its 4-byte uint32 encoding."""
        if len(generation_bytes) != 4:
            raise UsageError("the generation is a 4-byte uint32")
        tail = b"\x04" + generation_bytes + b"\x01"  # opaque context<V> of 4 bytes, T(1)
        key, nonce, next_secret = self.kdf.hmac_many(
            secret, (self._key_head + tail, self._nonce_head + tail, self._secret_head + tail))
        return key[:self.aead.key_size], nonce[:self.aead.nonce_size], next_secret

    def next_ratchet_secret(self, secret: bytes, generation_bytes: bytes) -> bytes:
        """``DeriveTreeSecret(secret, "secret", generation, Nh)`` (RFC 9420 §9.1) with
        the generation given as its 4-byte uint32 encoding."""
        return hmac.digest(secret, self._secret_head + opaque_bytes(generation_bytes)
                           + b"\x01", self.hash_name)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        """RefHash(label, value) = Hash(RefHashInput) (RFC 9420 §5.2); label is full."""
        w = Writer()
        w.opaque(label)
        w.opaque(value)
        return self.hash(w.getvalue())

    # -- AEAD ------------------------------------------------------------------------

    @property
    def key_size(self) -> int:
        return self.aead.key_size

    @property
    def nonce_size(self) -> int:
        return self.aead.nonce_size

    def aead_encrypt(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self.aead.encrypt(key, nonce, aad, plaintext)

    def aead_decrypt(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """AEAD-Open; CryptoError on a tag mismatch."""
        return self.aead.decrypt(key, nonce, aad, ciphertext)

    # -- signatures (RFC 9420 §5.1.2) -------------------------------------------------

    def sign_with_label(self, private_key: bytes, label: bytes, content: bytes) -> bytes:
        return self.signature.sign(private_key, _labelled(label, content))

    def verify_with_label(self, public_key: bytes, label: bytes, content: bytes,
                          signature: bytes) -> bool:
        return self.signature.verify(public_key, _labelled(label, content), signature)

    # -- public-key encryption (RFC 9420 §5.1.3) --------------------------------------

    def encrypt_with_label(self, public_key: bytes, label: bytes, context: bytes,
                           plaintext: bytes) -> tuple[bytes, bytes]:
        """SealBase with info = EncryptContext, empty AAD; returns (kem_output, ct)."""
        return self.kem.seal(public_key, _labelled(label, context), plaintext)

    def encrypt_with_label_many(self, recipients: Sequence[tuple[bytes, bytes]],
                                label: bytes, context: bytes) -> list[tuple[bytes, bytes]]:
        """EncryptWithLabel(pk, label, context, pt) for each (pk, pt) of ``recipients``,
        sharing the work that depends only on ``context`` (RFC 9420 §5.1.3, §12.4.3.1:
        every joiner's GroupSecrets is sealed with the same encrypted GroupInfo)."""
        return self.kem.seal_many(recipients, _labelled(label, context))

    def decrypt_with_label(self, private_key: bytes, label: bytes, context: bytes,
                           kem_output: bytes, ciphertext: bytes) -> bytes:
        return self.kem.open(private_key, _labelled(label, context), kem_output, ciphertext)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """HPKE DeriveKeyPair (RFC 9180 §7.1.3): (private, public) serialized."""
        return self.kem.derive_key_pair(ikm)

    def generate_hpke_key_pair(self, rng: Rng) -> tuple[bytes, bytes]:
        """A fresh HPKE (private, public) pair: DeriveKeyPair of Nsk bytes from ``rng``."""
        return self.kem.generate_key_pair(rng)

    def hpke_public_key(self, private_key: bytes) -> bytes:
        """The serialized HPKE public key of a serialized HPKE private key."""
        return self.kem.public_key(private_key)

    # -- signature keys (RFC 9420 §5.1.2) ---------------------------------------------

    def generate_signature_key_pair(self, rng: Rng) -> tuple[bytes, bytes]:
        """A fresh signature (private, public) pair drawn from ``rng``."""
        return self.signature.generate_key_pair(rng)

    def signature_public_key(self, private_key: bytes) -> bytes:
        """The serialized signature public key of a serialized private key."""
        return self.signature.public_key(private_key)


@cache
def suite(suite_id: int) -> CipherSuite:
    """The :class:`CipherSuite` for a registered id; unknown ids are unsupported."""
    try:
        known = CipherSuiteId(suite_id)
    except ValueError:
        raise UnsupportedError(f"cipher suite 0x{suite_id:04x} is not supported") from None
    return CipherSuite(known)
