"""Checker for the mlswg ``crypto-basics`` vectors (RFC 9420 §5.1-§5.2, §8, §9).

Each case exercises one cipher suite: RefHash, ExpandWithLabel, DeriveSecret,
DeriveTreeSecret, SignWithLabel/VerifyWithLabel (the given signature and a fresh one)
and EncryptWithLabel/DecryptWithLabel (the given ciphertext and a fresh one).
"""

from __future__ import annotations

from typing import Any

from mls.crypto.suite import CipherSuite, suite


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def _label(value: str) -> bytes:
    return value.encode("utf-8")


def check(case: dict[str, Any]) -> None:
    """Raise AssertionError (or an MLSError) on any mismatch with one vector case."""
    cs = suite(case["cipher_suite"])
    _check_ref_hash(cs, case["ref_hash"])
    _check_expand_with_label(cs, case["expand_with_label"])
    _check_derive_secret(cs, case["derive_secret"])
    _check_derive_tree_secret(cs, case["derive_tree_secret"])
    _check_sign_with_label(cs, case["sign_with_label"])
    _check_encrypt_with_label(cs, case["encrypt_with_label"])


def _check_ref_hash(cs: CipherSuite, v: dict[str, Any]) -> None:
    out = cs.ref_hash(_label(v["label"]), _hex(v["value"]))
    assert out == _hex(v["out"]), "ref_hash mismatch"


def _check_expand_with_label(cs: CipherSuite, v: dict[str, Any]) -> None:
    out = cs.expand_with_label(_hex(v["secret"]), _label(v["label"]), _hex(v["context"]),
                               v["length"])
    assert out == _hex(v["out"]), "expand_with_label mismatch"


def _check_derive_secret(cs: CipherSuite, v: dict[str, Any]) -> None:
    out = cs.derive_secret(_hex(v["secret"]), _label(v["label"]))
    assert out == _hex(v["out"]), "derive_secret mismatch"


def _check_derive_tree_secret(cs: CipherSuite, v: dict[str, Any]) -> None:
    out = cs.derive_tree_secret(_hex(v["secret"]), _label(v["label"]), v["generation"],
                                v["length"])
    assert out == _hex(v["out"]), "derive_tree_secret mismatch"


def _check_sign_with_label(cs: CipherSuite, v: dict[str, Any]) -> None:
    priv, pub = _hex(v["priv"]), _hex(v["pub"])
    label, content = _label(v["label"]), _hex(v["content"])
    assert cs.signature.public_key(priv) == pub, "sign_with_label: pub is not pk(priv)"
    assert cs.verify_with_label(pub, label, content, _hex(v["signature"])), \
        "sign_with_label: the vector's signature does not verify"
    fresh = cs.sign_with_label(priv, label, content)
    assert cs.verify_with_label(pub, label, content, fresh), \
        "sign_with_label: our own signature does not verify"


def _check_encrypt_with_label(cs: CipherSuite, v: dict[str, Any]) -> None:
    priv, pub = _hex(v["priv"]), _hex(v["pub"])
    label, context, plaintext = _label(v["label"]), _hex(v["context"]), _hex(v["plaintext"])
    assert cs.kem.public_key(priv) == pub, "encrypt_with_label: pub is not pk(priv)"
    opened = cs.decrypt_with_label(priv, label, context, _hex(v["kem_output"]),
                                   _hex(v["ciphertext"]))
    assert opened == plaintext, "encrypt_with_label: the vector's ciphertext mismatch"
    kem_output, ciphertext = cs.encrypt_with_label(pub, label, context, plaintext)
    reopened = cs.decrypt_with_label(priv, label, context, kem_output, ciphertext)
    assert reopened == plaintext, "encrypt_with_label: round trip mismatch"
