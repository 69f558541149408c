"""The one error tree of the ``mls`` package (see docs/ARCHITECTURE.md, "Errors").

Every failure the package reports is an :class:`MLSError`.  Callers choose what to do
by class:

* :class:`DecodeError` -- bytes that are not a valid encoding (RFC 9420 §2.1).
* :class:`ValidationError` and subclasses -- a remote peer broke an RFC rule.
* :class:`CryptoError` -- a signature, MAC, AEAD tag or HPKE decryption failed.
* :class:`EpochError` / :class:`GenerationError` -- a message for a stale or too-far
  epoch/generation: droppable, not an attack by itself.
* :class:`UsageError` -- the local application misused the API.
* :class:`UnsupportedError` -- a valid input we do not implement (never silently).

Messages never contain key material or plaintext.
"""

from __future__ import annotations


class MLSError(Exception):
    """Root of every error raised by ``mls``."""


class DecodeError(MLSError):
    """Malformed bytes: truncated, trailing data, non-minimal varint, bad enum value."""


class ValidationError(MLSError):
    """A remote peer's message broke a rule of RFC 9420."""


class SignatureError(ValidationError):
    """A signature did not verify (RFC 9420 §5.1.2)."""


class MembershipTagError(ValidationError):
    """A PublicMessage membership tag did not verify (RFC 9420 §6.2)."""


class ConfirmationTagError(ValidationError):
    """A confirmation tag did not match (RFC 9420 §8.1)."""


class PathSecretError(ValidationError):
    """The path secret an UpdatePath encrypted to us derives keys other than the public
    keys it announces (RFC 9420 §7.5): only a receiver can tell, not a server."""


class TreeValidationError(ValidationError):
    """A ratchet tree failed validation (RFC 9420 §7.9.2, §12.4.3.1)."""


class ProposalValidationError(ValidationError):
    """A proposal or proposal list broke RFC 9420 §12.1-§12.2."""


class CryptoError(MLSError):
    """A cryptographic operation failed: AEAD tag, HPKE open, bad key encoding."""


class EpochError(MLSError):
    """A message for an epoch we no longer (or do not yet) hold keys for."""


class GenerationError(MLSError):
    """A generation already consumed or too far ahead (RFC 9420 §9.1)."""


class UsageError(MLSError):
    """The local caller misused the API (wrong state, wrong argument)."""


class UnsupportedError(MLSError):
    """A well-formed input that this implementation does not support."""
