"""Message protection behaviour (RFC 9420 §6): tampering is rejected with a specific
error and leaves the receiver's secret tree untouched."""

from __future__ import annotations

import pytest

from mls.codec import encode
from mls.enums import ContentType, ProtocolVersion, WireFormat
from mls.errors import (
    CryptoError,
    DecodeError,
    GenerationError,
    MembershipTagError,
    SignatureError,
    UsageError,
    ValidationError,
)
from mls.framing.private import decrypt_private, protect_private, unprotect_private
from mls.framing.public import authenticate, protect_public, unprotect_public
from mls.messages.extensions import GroupContext
from mls.messages.framing import FramedContent, PrivateMessage, PublicMessage, Sender
from mls.messages.proposals import Remove
from mls.schedule.secret_tree import SecretTree
from tests.mls.fixtures import CS, make_rng

RNG = make_rng(b"framing")
GROUP_ID = b"group-under-test"
CONTEXT = encode(GroupContext(ProtocolVersion.MLS10, 1, GROUP_ID, 5, b"\x01" * 32,
                              b"\x02" * 32))
SIG_PRIV, SIG_PUB = CS.signature.generate_key_pair(RNG)
OTHER_PRIV, OTHER_PUB = CS.signature.generate_key_pair(RNG)
MEMBERSHIP_KEY = RNG(32)
ENCRYPTION_SECRET = RNG(32)
SENDER_DATA_SECRET = RNG(32)


def _content(content_type: ContentType, body: object, sender: int = 1) -> FramedContent:
    return FramedContent(GROUP_ID, 5, Sender.member(sender), b"aad", content_type, body)


def _public_proposal() -> PublicMessage:
    auth = authenticate(CS, SIG_PRIV, WireFormat.PUBLIC_MESSAGE,
                        _content(ContentType.PROPOSAL, Remove(2)), CONTEXT)
    return protect_public(CS, auth, MEMBERSHIP_KEY, CONTEXT)


def _unprotect_public(message: PublicMessage, key: bytes = MEMBERSHIP_KEY,
                      pub: bytes = SIG_PUB) -> object:
    return unprotect_public(CS, message, group_context=CONTEXT, membership_key=key,
                            signature_pub=pub)


def _private(body: bytes = b"hello", padding: int = 0,
             tree: SecretTree | None = None) -> PrivateMessage:
    auth = authenticate(CS, SIG_PRIV, WireFormat.PRIVATE_MESSAGE,
                        _content(ContentType.APPLICATION, body), CONTEXT)
    return protect_private(CS, auth, secret_tree=tree or SecretTree(CS, ENCRYPTION_SECRET, 4),
                           sender_data_secret=SENDER_DATA_SECRET, reuse_guard=RNG(4),
                           padding=padding)


def _unprotect_private(message: PrivateMessage, tree: SecretTree,
                       pub: bytes = SIG_PUB) -> object:
    return unprotect_private(CS, message, secret_tree=tree,
                             sender_data_secret=SENDER_DATA_SECRET, group_context=CONTEXT,
                             signature_key_for=lambda leaf: pub if leaf == 1 else None)


def test_public_round_trip() -> None:
    got = _unprotect_public(_public_proposal())
    assert got.content.content == Remove(2)  # type: ignore[attr-defined]


def test_public_wrong_membership_key() -> None:
    with pytest.raises(MembershipTagError):
        _unprotect_public(_public_proposal(), key=RNG(32))


def test_public_wrong_signer() -> None:
    with pytest.raises(SignatureError):
        _unprotect_public(_public_proposal(), pub=OTHER_PUB)


def test_public_tampered_content() -> None:
    message = _public_proposal()
    forged = PublicMessage(_content(ContentType.PROPOSAL, Remove(3)), message.auth,
                           message.membership_tag)
    with pytest.raises(MembershipTagError):
        _unprotect_public(forged)


def test_application_data_never_public() -> None:
    auth = authenticate(CS, SIG_PRIV, WireFormat.PUBLIC_MESSAGE,
                        _content(ContentType.APPLICATION, b"x"), CONTEXT)
    with pytest.raises(UsageError):
        protect_public(CS, auth, MEMBERSHIP_KEY, CONTEXT)


def test_private_round_trip_with_padding() -> None:
    tree = SecretTree(CS, ENCRYPTION_SECRET, 4)
    got = _unprotect_private(_private(b"secret words", padding=33), tree)
    assert got.content.content == b"secret words"  # type: ignore[attr-defined]


def test_private_replay_is_rejected_and_tree_unchanged() -> None:
    receiver = SecretTree(CS, ENCRYPTION_SECRET, 4)
    message = _private()
    _unprotect_private(message, receiver)
    before = receiver.to_bytes()
    with pytest.raises(GenerationError):
        _unprotect_private(message, receiver)
    assert receiver.to_bytes() == before


@pytest.mark.parametrize("field", ["ciphertext", "encrypted_sender_data"])
def test_private_bit_flip_is_crypto_error(field: str) -> None:
    message = _private()
    data = bytearray(getattr(message, field))
    data[len(data) // 2] ^= 0x01
    fields = {name: getattr(message, name) for name in PrivateMessage.__slots__}
    fields[field] = bytes(data)
    receiver = SecretTree(CS, ENCRYPTION_SECRET, 4)
    trial = receiver.copy()
    with pytest.raises(CryptoError):
        _unprotect_private(PrivateMessage(**fields), trial)
    assert receiver.to_bytes() == SecretTree(CS, ENCRYPTION_SECRET, 4).to_bytes()


def test_private_wrong_signer() -> None:
    with pytest.raises(SignatureError):
        _unprotect_private(_private(), SecretTree(CS, ENCRYPTION_SECRET, 4), pub=OTHER_PUB)


def test_private_blank_sender_leaf() -> None:
    message = _private()
    with pytest.raises(ValidationError):
        unprotect_private(CS, message, secret_tree=SecretTree(CS, ENCRYPTION_SECRET, 4),
                          sender_data_secret=SENDER_DATA_SECRET, group_context=CONTEXT,
                          signature_key_for=lambda leaf: None)


def test_private_nonzero_padding_is_decode_error() -> None:
    """A sender that pads with non-zero bytes is rejected as malformed (§6.3.1)."""
    sender = SecretTree(CS, ENCRYPTION_SECRET, 4)
    message = _private(b"x", padding=4, tree=sender)
    # Re-encrypt the same plaintext with a non-zero padding byte under the same key.
    receiver = SecretTree(CS, ENCRYPTION_SECRET, 4)
    key_tree = SecretTree(CS, ENCRYPTION_SECRET, 4)
    from mls.framing.private import decrypt_sender_data
    from mls.messages.framing import encode_private_content_aad
    from mls.schedule.secret_tree import RatchetKind

    sender_data = decrypt_sender_data(CS, message, SENDER_DATA_SECRET)
    key, nonce = key_tree.key_for(1, RatchetKind.APPLICATION, sender_data.generation)
    guard = sender_data.reuse_guard
    nonce = bytes(a ^ b for a, b in zip(nonce[:4], guard, strict=True)) + nonce[4:]
    aad = encode_private_content_aad(GROUP_ID, 5, ContentType.APPLICATION, b"aad")
    plaintext = bytearray(CS.aead_decrypt(key, nonce, aad, message.ciphertext))
    plaintext[-1] = 0x01
    forged_ct = CS.aead_encrypt(key, nonce, aad, bytes(plaintext))
    # The sender data key depends on the ciphertext sample: re-encrypt it too.
    from mls.messages.framing import SenderData, encode_sender_data_aad
    from mls.schedule.secret_tree import sender_data_key_nonce

    sd_key, sd_nonce = sender_data_key_nonce(CS, SENDER_DATA_SECRET, forged_ct)
    sd = CS.aead_encrypt(sd_key, sd_nonce,
                         encode_sender_data_aad(GROUP_ID, 5, ContentType.APPLICATION),
                         encode(SenderData(1, sender_data.generation, guard)))
    forged = PrivateMessage(GROUP_ID, 5, ContentType.APPLICATION, b"aad", sd, forged_ct)
    with pytest.raises(DecodeError):
        decrypt_private(CS, forged, secret_tree=receiver,
                        sender_data_secret=SENDER_DATA_SECRET)
