"""The MLS key schedule, PSKs, secret tree and transcript hashes (RFC 9420 §8, §9)."""

from mls.schedule.key_schedule import (
    EpochSecrets,
    advance_epoch,
    derive_joiner_secret,
    derive_welcome_secret,
    epoch_from_joiner,
    export_secret,
    external_init_receiver,
    external_init_sender,
    external_key_pair,
    welcome_key_nonce,
)
from mls.schedule.psk import psk_secret
from mls.schedule.secret_tree import RatchetKind, SecretTree, sender_data_key_nonce
from mls.schedule.transcript import (
    confirmation_tag,
    confirmed_transcript_hash,
    interim_transcript_hash,
    verify_confirmation_tag,
)

__all__ = [
    "EpochSecrets",
    "RatchetKind",
    "SecretTree",
    "advance_epoch",
    "confirmation_tag",
    "confirmed_transcript_hash",
    "derive_joiner_secret",
    "derive_welcome_secret",
    "epoch_from_joiner",
    "export_secret",
    "external_init_receiver",
    "external_init_sender",
    "external_key_pair",
    "interim_transcript_hash",
    "psk_secret",
    "sender_data_key_nonce",
    "verify_confirmation_tag",
    "welcome_key_nonce",
]
