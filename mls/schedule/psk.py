"""The PSK secret: chaining pre-shared keys into the key schedule (RFC 9420 §8.4)."""

from __future__ import annotations

from collections.abc import Sequence

from mls.codec import Writer
from mls.crypto.suite import CipherSuite
from mls.errors import UsageError
from mls.messages.psk import PreSharedKeyID


def psk_label(psk_id: PreSharedKeyID, index: int, count: int) -> bytes:
    """``struct { PreSharedKeyID id; uint16 index; uint16 count; } PSKLabel``."""
    w = Writer()
    psk_id.encode(w)
    w.u16(index)
    w.u16(count)
    return w.getvalue()


def psk_secret(cs: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """``psk_secret`` of RFC 9420 §8.4 for PSKs in Commit / GroupSecrets order.

    ``psk_extracted_[i] = Extract(0, psk_[i])``,
    ``psk_input_[i] = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, Nh)``,
    ``psk_secret_[i] = Extract(psk_input_[i-1], psk_secret_[i-1])``, starting from the
    all-zero vector; with no PSKs the result is ``Nh`` zero bytes.
    """
    count = len(psks)
    if count > 0xFFFF:
        raise UsageError("too many PSKs: count must fit in uint16")
    zero = bytes(cs.hash_len)
    secret = zero
    for index, (psk_id, psk) in enumerate(psks):
        extracted = cs.extract(zero, psk)
        psk_input = cs.expand_with_label(extracted, b"derived psk",
                                         psk_label(psk_id, index, count), cs.hash_len)
        secret = cs.extract(psk_input, secret)
    return secret
