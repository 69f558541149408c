"""The MLS key schedule (RFC 9420 §8, §8.3, §8.5-§8.7) as pure functions.

Nothing here holds state: callers pass the previous epoch's ``init_secret`` and the
inputs of the new epoch and receive the new epoch's secrets.  All secrets are bytes
of length ``KDF.Nh`` unless stated otherwise.  A zero-length ``commit_secret`` or
``psk_secret`` stands for the all-zero vector of length ``KDF.Nh`` (the ``0`` of the
§8 diagram).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto.suite import CipherSuite, Rng
from mls.errors import UsageError


@dataclass(frozen=True, slots=True)
class EpochSecrets:
    """The secrets derived from one epoch's ``epoch_secret`` (RFC 9420 §8, table
    "Epoch-Derived Secrets"), plus ``init_secret``, the next epoch's init secret.

    Every field is secret: none appears in ``repr``.
    """

    sender_data_secret: bytes = field(repr=False)
    encryption_secret: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    epoch_authenticator: bytes = field(repr=False)
    external_secret: bytes = field(repr=False)
    confirmation_key: bytes = field(repr=False)
    membership_key: bytes = field(repr=False)
    resumption_psk: bytes = field(repr=False)
    init_secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "EpochSecrets(<redacted>)"


def _nh_or_zero(cs: CipherSuite, secret: bytes, what: str) -> bytes:
    """The ``0`` convention of RFC 9420 §8: empty means ``KDF.Nh`` zero bytes."""
    if not secret:
        return bytes(cs.hash_len)
    if len(secret) != cs.hash_len:
        raise UsageError(f"{what} must be {cs.hash_len} bytes, got {len(secret)}")
    return secret


def derive_joiner_secret(cs: CipherSuite, init_secret: bytes, commit_secret: bytes,
                         group_context: bytes) -> bytes:
    """``joiner_secret = ExpandWithLabel(Extract(init_secret_[n-1], commit_secret),
    "joiner", GroupContext_[n], Nh)`` (RFC 9420 §8).

    ``group_context`` is the encoded GroupContext of the *new* epoch.
    """
    commit = _nh_or_zero(cs, commit_secret, "commit_secret")
    prk = cs.extract(init_secret, commit)
    return cs.expand_with_label(prk, b"joiner", group_context, cs.hash_len)


def _member_secret(cs: CipherSuite, joiner_secret: bytes, psk_secret: bytes) -> bytes:
    return cs.extract(joiner_secret, _nh_or_zero(cs, psk_secret, "psk_secret"))


def derive_welcome_secret(cs: CipherSuite, joiner_secret: bytes, psk_secret: bytes) -> bytes:
    """``welcome_secret = DeriveSecret(Extract(joiner_secret, psk_secret), "welcome")``
    (RFC 9420 §8): what a joiner needs before it can read the GroupContext."""
    return cs.derive_secret(_member_secret(cs, joiner_secret, psk_secret), b"welcome")


def epoch_from_joiner(cs: CipherSuite, joiner_secret: bytes, psk_secret: bytes,
                      group_context: bytes) -> tuple[bytes, EpochSecrets]:
    """The lower half of the §8 diagram, shared by members and joiners.

    ``member_secret = Extract(joiner_secret, psk_secret)``;
    ``welcome_secret = DeriveSecret(member_secret, "welcome")``;
    ``epoch_secret = ExpandWithLabel(member_secret, "epoch", GroupContext_[n], Nh)``
    and every epoch-derived secret of RFC 9420 §8.  Returns
    ``(welcome_secret, secrets)``.
    """
    member_secret = _member_secret(cs, joiner_secret, psk_secret)
    welcome_secret = cs.derive_secret(member_secret, b"welcome")
    epoch_secret = cs.expand_with_label(member_secret, b"epoch", group_context, cs.hash_len)

    def derive(label: bytes) -> bytes:
        return cs.derive_secret(epoch_secret, label)

    secrets = EpochSecrets(
        sender_data_secret=derive(b"sender data"),
        encryption_secret=derive(b"encryption"),
        exporter_secret=derive(b"exporter"),
        epoch_authenticator=derive(b"authentication"),
        external_secret=derive(b"external"),
        confirmation_key=derive(b"confirm"),
        membership_key=derive(b"membership"),
        resumption_psk=derive(b"resumption"),
        init_secret=derive(b"init"),
    )
    return welcome_secret, secrets


def advance_epoch(cs: CipherSuite, init_secret: bytes, commit_secret: bytes,
                  psk_secret: bytes, group_context: bytes
                  ) -> tuple[bytes, bytes, EpochSecrets]:
    """One full step of the key schedule (RFC 9420 §8).

    ``init_secret`` is the previous epoch's (or, for a new group, a fresh random
    value, RFC 9420 §11); ``group_context`` is the encoded GroupContext of the new
    epoch.  Returns ``(joiner_secret, welcome_secret, secrets)``.
    """
    joiner_secret = derive_joiner_secret(cs, init_secret, commit_secret, group_context)
    welcome_secret, secrets = epoch_from_joiner(cs, joiner_secret, psk_secret, group_context)
    return joiner_secret, welcome_secret, secrets


def welcome_key_nonce(cs: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """``welcome_key``/``welcome_nonce`` (RFC 9420 §12.4.3.1):
    ``ExpandWithLabel(welcome_secret, "key"/"nonce", "", Nk/Nn)``."""
    key = cs.expand_with_label(welcome_secret, b"key", b"", cs.key_size)
    nonce = cs.expand_with_label(welcome_secret, b"nonce", b"", cs.nonce_size)
    return key, nonce


def export_secret(cs: CipherSuite, exporter_secret: bytes, label: bytes, context: bytes,
                  length: int) -> bytes:
    """MLS-Exporter (RFC 9420 §8.5): ``ExpandWithLabel(DeriveSecret(exporter_secret,
    Label), "exported", Hash(Context), Length)``."""
    if not 0 <= length <= 0xFFFF:
        raise UsageError("exported secret length must fit in uint16")
    derived = cs.derive_secret(exporter_secret, label)
    return cs.expand_with_label(derived, b"exported", cs.hash(context), length)


def external_key_pair(cs: CipherSuite, external_secret: bytes) -> tuple[bytes, bytes]:
    """``external_priv, external_pub = KEM.DeriveKeyPair(external_secret)``
    (RFC 9420 §8).  Returns serialized ``(private, public)``."""
    return cs.derive_key_pair(external_secret)


#: The HPKE exporter label of RFC 9420 §8.3 (full label, no prefix added).
EXTERNAL_INIT_EXPORT_LABEL = b"MLS 1.0 external init secret"


def external_init_sender(cs: CipherSuite, external_pub: bytes,
                         rng: Rng) -> tuple[bytes, bytes]:
    """The joiner's side of ExternalInit (RFC 9420 §8.3):
    ``kem_output, context = SetupBaseS(external_pub, "")``;
    ``init_secret = context.export("MLS 1.0 external init secret", KDF.Nh)``.
    Returns ``(kem_output, init_secret)``; the ephemeral key comes from ``rng``."""
    return cs.kem.setup_export_sender(external_pub, b"", EXTERNAL_INIT_EXPORT_LABEL,
                                      cs.hash_len, rng)


def external_init_receiver(cs: CipherSuite, external_priv: bytes, kem_output: bytes) -> bytes:
    """The members' side of ExternalInit (RFC 9420 §8.3): ``SetupBaseR(kem_output,
    external_priv, "")`` and the same export; CryptoError on a malformed kem_output."""
    return cs.kem.export_receiver(external_priv, b"", kem_output, EXTERNAL_INIT_EXPORT_LABEL,
                                  cs.hash_len)
