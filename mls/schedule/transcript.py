"""Transcript hashes and the confirmation tag (RFC 9420 §8.2, §6.1).

The encodings of ``ConfirmedTranscriptHashInput`` and ``InterimTranscriptHashInput``
come from :mod:`mls.messages.framing`; this module only chains the hashes.
"""

from __future__ import annotations

from mls.crypto.suite import CipherSuite
from mls.errors import ConfirmationTagError


def confirmed_transcript_hash(cs: CipherSuite, interim_before: bytes,
                              confirmed_input: bytes) -> bytes:
    """``confirmed_transcript_hash_[epoch] = Hash(interim_transcript_hash_[epoch-1] ||
    ConfirmedTranscriptHashInput_[epoch])`` (RFC 9420 §8.2)."""
    return cs.hash(interim_before + confirmed_input)


def interim_transcript_hash(cs: CipherSuite, confirmed: bytes, interim_input: bytes) -> bytes:
    """``interim_transcript_hash_[epoch] = Hash(confirmed_transcript_hash_[epoch] ||
    InterimTranscriptHashInput_[epoch])`` (RFC 9420 §8.2)."""
    return cs.hash(confirmed + interim_input)


def confirmation_tag(cs: CipherSuite, confirmation_key: bytes,
                     confirmed_transcript_hash: bytes) -> bytes:
    """``confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash)``
    (RFC 9420 §6.1)."""
    return cs.mac(confirmation_key, confirmed_transcript_hash)


def verify_confirmation_tag(cs: CipherSuite, confirmation_key: bytes,
                            confirmed_transcript_hash: bytes, tag: bytes) -> None:
    """Check a received confirmation tag in constant time (RFC 9420 §6.1, §12.4.2);
    raises :class:`~mls.errors.ConfirmationTagError` on mismatch."""
    if not cs.verify_mac(confirmation_key, confirmed_transcript_hash, tag):
        raise ConfirmationTagError("confirmation tag does not match")
