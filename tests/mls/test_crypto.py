"""Tests of the HPKE and signature layer (RFC 9180 base mode; RFC 9420 §5.1)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import x448

from mls.crypto.hpke import HpkeKem, kem_for_suite, pure_kem_for_suite
from mls.crypto.signature import scheme_for_suite
from mls.crypto.suite import suite
from mls.enums import CipherSuiteId
from mls.errors import CryptoError, UnsupportedError
from mls.vectors import vectors_dir
from tests.mls.fixtures import make_rng

SUITES = list(CipherSuiteId)
X448_SUITES = [CipherSuiteId.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448,
               CipherSuiteId.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448]
ECDSA_SUITES = [CipherSuiteId.MLS_128_DHKEMP256_AES128GCM_SHA256_P256,
                CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521,
                CipherSuiteId.MLS_256_DHKEMP384_AES256GCM_SHA384_P384]
INFO = b"EncryptContext for the test"
PLAINTEXT = b"a path secret of thirty-two byte"


def flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes((data[-1] ^ 1,))


def key_pair(kem: HpkeKem, name: str) -> tuple[bytes, bytes]:
    return kem.derive_key_pair(hashlib.sha512(name.encode()).digest())


# -- HPKE ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite_id", SUITES)
def test_hpke_round_trip_and_sizes(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    priv, pub = kem.generate_key_pair(os.urandom)
    assert (len(priv), len(pub)) == (kem.n_sk, kem.n_pk)
    kem_output, ciphertext = kem.seal(pub, INFO, PLAINTEXT)
    assert len(kem_output) == kem.n_enc
    assert len(ciphertext) == len(PLAINTEXT) + 16
    assert kem.open(priv, INFO, kem_output, ciphertext) == PLAINTEXT
    assert kem.open(priv, b"", *kem.seal(pub, b"", b"")) == b""


@pytest.mark.parametrize("suite_id", SUITES)
def test_hpke_seal_is_randomised(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    _, pub = key_pair(kem, "recipient")
    assert kem.seal(pub, INFO, PLAINTEXT) != kem.seal(pub, INFO, PLAINTEXT)


@pytest.mark.parametrize("suite_id", SUITES)
def test_derive_key_pair_is_deterministic(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    ikm = bytes(range(64))
    priv, pub = kem.derive_key_pair(ikm)
    assert kem.derive_key_pair(ikm) == (priv, pub)
    assert kem.public_key(priv) == pub
    assert kem.derive_key_pair(ikm[:-1])[0] != priv
    assert pure_kem_for_suite(suite_id).derive_key_pair(ikm) == (priv, pub)


@pytest.mark.parametrize("suite_id", SUITES)
def test_generate_key_pair_uses_rng(suite_id: CipherSuiteId) -> None:
    cs = suite(suite_id)
    first = cs.generate_hpke_key_pair(make_rng(b"a"))
    assert first == cs.generate_hpke_key_pair(make_rng(b"a"))
    assert first != cs.generate_hpke_key_pair(make_rng(b"b"))
    assert cs.hpke_public_key(first[0]) == first[1]


def test_derive_key_pair_matches_official_external_pub() -> None:
    """key-schedule.json: external_pub == pk(DeriveKeyPair(external_secret))."""
    cases = json.loads((vectors_dir() / "key-schedule.json").read_text())
    checked = set()
    for case in cases:
        kem = kem_for_suite(CipherSuiteId(case["cipher_suite"]))
        for epoch in case["epochs"]:
            _, pub = kem.derive_key_pair(bytes.fromhex(epoch["external_secret"]))
            assert pub.hex() == epoch["external_pub"]
        checked.add(case["cipher_suite"])
    assert checked == {int(s) for s in SUITES}


@pytest.mark.parametrize("suite_id", SUITES)
def test_hpke_rejects_tampering(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    priv, pub = key_pair(kem, "recipient")
    other_priv, _ = key_pair(kem, "someone else")
    kem_output, ciphertext = kem.seal(pub, INFO, PLAINTEXT)
    bad_inputs = [
        (priv, INFO, kem_output, flip_last_bit(ciphertext)),
        (priv, INFO, kem_output, ciphertext[:-1]),
        (priv, INFO, kem_output, b""),
        (priv, INFO + b"!", kem_output, ciphertext),
        (other_priv, INFO, kem_output, ciphertext),
        (priv, INFO, kem_output[:-1], ciphertext),
        (priv, INFO, kem_output + b"\x00", ciphertext),
        (priv, INFO, flip_last_bit(kem_output), ciphertext),
    ]
    for args in bad_inputs:
        with pytest.raises(CryptoError):
            kem.open(*args)


@pytest.mark.parametrize("suite_id", SUITES)
def test_hpke_malformed_keys(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    priv, pub = key_pair(kem, "recipient")
    kem_output, ciphertext = kem.seal(pub, INFO, PLAINTEXT)
    for bad_public in (b"", pub[:-1], pub + b"\x00"):
        with pytest.raises(CryptoError):
            kem.seal(bad_public, INFO, PLAINTEXT)
    for bad_private in (b"", priv + b"\x00"):
        with pytest.raises(CryptoError):
            kem.open(bad_private, INFO, kem_output, ciphertext)
        with pytest.raises(CryptoError):
            kem.public_key(bad_private)
    with pytest.raises(CryptoError):  # a shorter key is another (or no) key: open fails
        kem.open(priv[:-1], INFO, kem_output, ciphertext)
    if suite_id in ECDSA_SUITES:
        # NIST-curve scalars with leading zero bytes dropped are the same key (the
        # official P-521 passive-client vectors use such keys).
        zero_led = next(p for p in (kem.derive_key_pair(i.to_bytes(4, "big"))
                                    for i in range(4096)) if p[0][0] == 0)
        short_priv, full_pub = zero_led[0][1:], zero_led[1]
        assert kem.public_key(short_priv) == full_pub
        enc, sealed = kem.seal(full_pub, INFO, PLAINTEXT)
        assert kem.open(short_priv, INFO, enc, sealed) == PLAINTEXT
    else:
        with pytest.raises(CryptoError):
            kem.public_key(priv[:-1])


@pytest.mark.parametrize("suite_id", ECDSA_SUITES)
def test_hpke_nist_key_encodings_enforced(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    priv, pub = key_pair(kem, "recipient")
    compressed = bytes((2 + (pub[-1] & 1),)) + pub[1:1 + kem.n_sk]
    off_curve = pub[:-1] + bytes((pub[-1] ^ 1,))
    for bad_public in (compressed, off_curve, bytes(kem.n_pk)):
        with pytest.raises(CryptoError):
            kem.seal(bad_public, INFO, PLAINTEXT)
    with pytest.raises(CryptoError):
        kem.open(priv, INFO, off_curve, bytes(48))
    with pytest.raises(CryptoError):
        kem.public_key(bytes(kem.n_sk))  # the zero scalar
    with pytest.raises(CryptoError):
        kem.public_key(b"\xff" * kem.n_sk)  # above the group order


@pytest.mark.parametrize("suite_id", SUITES)
def test_pure_hpke_interoperates_with_library_path(suite_id: CipherSuiteId) -> None:
    """Our RFC 9180 code and ``cryptography``'s HPKE open each other's output."""
    library, pure = kem_for_suite(suite_id), pure_kem_for_suite(suite_id)
    priv, pub = key_pair(library, "recipient")
    assert pure.open(priv, INFO, *library.seal(pub, INFO, PLAINTEXT)) == PLAINTEXT
    assert library.open(priv, INFO, *pure.seal(pub, INFO, PLAINTEXT)) == PLAINTEXT


@pytest.mark.parametrize("suite_id", X448_SUITES)
def test_x448_derive_key_pair_matches_x448(suite_id: CipherSuiteId) -> None:
    kem = kem_for_suite(suite_id)
    priv, pub = key_pair(kem, "x448")
    assert (kem.n_enc, kem.n_pk, kem.n_sk) == (56, 56, 56)
    assert x448.X448PrivateKey.from_private_bytes(priv).public_key().public_bytes_raw() == pub


@pytest.mark.parametrize("suite_id", X448_SUITES)
def test_x448_rejects_low_order_kem_output(suite_id: CipherSuiteId) -> None:
    """RFC 9180 §7.1.4: an all-zero X448 shared secret aborts decapsulation."""
    kem = kem_for_suite(suite_id)
    priv, _ = key_pair(kem, "x448")
    for low_order in (bytes(56), (1).to_bytes(56, "little")):
        with pytest.raises(CryptoError, match="all zero"):
            kem.open(priv, INFO, low_order, bytes(48))


def test_unknown_suite_is_unsupported() -> None:
    with pytest.raises(UnsupportedError):
        kem_for_suite(0x0099)
    with pytest.raises(UnsupportedError):
        scheme_for_suite(0x0099)  # type: ignore[arg-type]


# -- signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("suite_id", SUITES)
def test_signature_round_trip(suite_id: CipherSuiteId) -> None:
    scheme = scheme_for_suite(suite_id)
    priv, pub = scheme.generate_key_pair(os.urandom)
    assert scheme.public_key(priv) == pub
    signature = scheme.sign(priv, b"message")
    assert scheme.verify(pub, b"message", signature)
    assert scheme.sign(priv, b"message") == signature  # EdDSA and RFC 6979 ECDSA


@pytest.mark.parametrize("suite_id", SUITES)
def test_signature_tampering_is_false(suite_id: CipherSuiteId) -> None:
    scheme = scheme_for_suite(suite_id)
    priv, pub = scheme.generate_key_pair(make_rng(b"signer"))
    _, other_pub = scheme.generate_key_pair(make_rng(b"other"))
    signature = scheme.sign(priv, b"message")
    assert not scheme.verify(pub, b"messagE", signature)
    assert not scheme.verify(other_pub, b"message", signature)
    for bad in (flip_last_bit(signature), signature[:-1], signature + b"\x00", b"",
                b"\x30\x00", bytes(len(signature))):
        assert not scheme.verify(pub, b"message", bad)


@pytest.mark.parametrize("suite_id", SUITES)
def test_signature_malformed_keys_raise(suite_id: CipherSuiteId) -> None:
    scheme = scheme_for_suite(suite_id)
    priv, pub = scheme.generate_key_pair(make_rng(b"signer"))
    signature = scheme.sign(priv, b"message")
    for bad_public in (b"", pub[:-1], pub + b"\x00"):
        with pytest.raises(CryptoError):
            scheme.verify(bad_public, b"message", signature)
    for bad_private in (b"", priv + b"\x00"):
        with pytest.raises(CryptoError):
            scheme.sign(bad_private, b"message")
    if suite_id in ECDSA_SUITES:
        # A scalar with its leading zero bytes dropped is the same key (the official
        # P-521 message-protection vector uses one): it signs, and verifies.
        short = priv.lstrip(b"\x00") or b"\x00"
        assert scheme.verify(pub, b"m", scheme.sign(short, b"m"))
    else:
        with pytest.raises(CryptoError):
            scheme.sign(priv[:-1], b"message")


@pytest.mark.parametrize("suite_id", ECDSA_SUITES)
def test_ecdsa_key_encodings_enforced(suite_id: CipherSuiteId) -> None:
    scheme = scheme_for_suite(suite_id)
    priv, pub = scheme.generate_key_pair(make_rng(b"signer"))
    signature = scheme.sign(priv, b"message")
    half = (len(pub) - 1) // 2
    compressed = bytes((2 + (pub[-1] & 1),)) + pub[1:1 + half]
    off_curve = flip_last_bit(pub)
    for bad_public in (compressed, off_curve):
        with pytest.raises(CryptoError):
            scheme.verify(bad_public, b"message", signature)
    with pytest.raises(CryptoError):
        scheme.sign(bytes(len(priv)), b"message")


@pytest.mark.parametrize("suite_id", ECDSA_SUITES)
def test_ecdsa_key_generation_rejects_invalid_scalars(suite_id: CipherSuiteId) -> None:
    scheme = scheme_for_suite(suite_id)
    draws = [b"\x00", b"\xff"]  # zero, then (after masking) at or above the order

    def rng(n: int) -> bytes:
        return draws.pop(0) * n if draws else hashlib.shake_256(b"valid").digest(n)

    priv, pub = scheme.generate_key_pair(rng)
    assert not draws
    assert priv[1:] == hashlib.shake_256(b"valid").digest(len(priv))[1:]
    assert scheme.public_key(priv) == pub
    assert scheme.verify(pub, b"m", scheme.sign(priv, b"m"))


@pytest.mark.parametrize("suite_id", SUITES)
def test_suite_signature_helpers(suite_id: CipherSuiteId) -> None:
    cs = suite(suite_id)
    priv, pub = cs.generate_signature_key_pair(make_rng(b"suite"))
    assert cs.signature_public_key(priv) == pub
    signature = cs.sign_with_label(priv, b"LeafNodeTBS", b"content")
    assert cs.verify_with_label(pub, b"LeafNodeTBS", b"content", signature)
    assert not cs.verify_with_label(pub, b"GroupInfoTBS", b"content", signature)


# -- secrets stay out of reprs and messages --------------------------------------------


@pytest.mark.parametrize("suite_id", SUITES)
def test_no_private_key_bytes_in_repr_or_errors(suite_id: CipherSuiteId) -> None:
    cs = suite(suite_id)
    kem, scheme = cs.kem, cs.signature
    hpke_priv, hpke_pub = key_pair(kem, "recipient")
    sig_priv, _ = scheme.generate_key_pair(make_rng(b"signer"))
    kem_output, ciphertext = kem.seal(hpke_pub, INFO, PLAINTEXT)
    texts = [repr(cs), repr(kem), repr(scheme), repr(pure_kem_for_suite(suite_id))]
    failures: list[Callable[[], object]] = [
        lambda: kem.open(hpke_priv, INFO, kem_output, flip_last_bit(ciphertext)),
        lambda: kem.open(hpke_priv + b"\x01", INFO, kem_output, ciphertext),
        lambda: scheme.sign(sig_priv + b"\x01", b"m"),
    ]
    for failing in failures:
        with pytest.raises(CryptoError) as info:
            failing()
        texts.append(str(info.value))
        texts.append(repr(info.value))
    for secret in (hpke_priv, sig_priv):
        for text in texts:
            assert secret.hex() not in text.lower()
            assert repr(secret) not in text
            assert repr(secret)[2:-1] not in text


def test_library_hpke_used_wherever_cryptography_has_the_kem() -> None:
    for suite_id in SUITES:
        expected = "pure" if suite_id in X448_SUITES else "cryptography"
        assert kem_for_suite(suite_id).backend.startswith(expected)
        assert pure_kem_for_suite(suite_id).backend.startswith("pure")
