"""PrivateMessage protection (RFC 9420 §6.3).

Content is encrypted with a key and nonce from the sender's ratchet in the secret tree
(handshake ratchet for proposals and commits, application ratchet for application
data, RFC 9420 §9.1); the nonce is XORed with a fresh 4-byte reuse guard (§6.3.1).
The SenderData is encrypted under keys derived from the sender data secret and a
sample of the content ciphertext (§6.3.2).

Both directions mutate the :class:`~mls.schedule.SecretTree` they are given (a used
key is deleted at once).  Callers that must leave state untouched on failure pass a
copy and keep it only on success.
"""

from __future__ import annotations

from collections.abc import Callable

from mls.codec import decode, encode
from mls.crypto import CipherSuite
from mls.enums import ContentType, SenderType, WireFormat
from mls.errors import UsageError, ValidationError
from mls.framing.public import verify_content_signature
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    PrivateMessage,
    Sender,
    SenderData,
    decode_private_message_content,
    encode_private_content_aad,
    encode_private_message_content,
    encode_sender_data_aad,
)
from mls.schedule.secret_tree import RatchetKind, SecretTree, sender_data_key_nonce

REUSE_GUARD_SIZE = 4


def ratchet_kind(content_type: ContentType) -> RatchetKind:
    """Application data uses the application ratchet, everything else the handshake
    ratchet (RFC 9420 §9.1)."""
    if content_type == ContentType.APPLICATION:
        return RatchetKind.APPLICATION
    return RatchetKind.HANDSHAKE


def _guarded(nonce: bytes, reuse_guard: bytes) -> bytes:
    """XOR the reuse guard into the first four bytes of the nonce (RFC 9420 §6.3.1)."""
    if len(reuse_guard) != REUSE_GUARD_SIZE or len(nonce) < REUSE_GUARD_SIZE:
        raise UsageError("reuse_guard must be 4 bytes and the nonce at least 4")
    head = int.from_bytes(nonce[:REUSE_GUARD_SIZE], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(REUSE_GUARD_SIZE, "big") + nonce[REUSE_GUARD_SIZE:]


def protect_private(cs: CipherSuite, authenticated: AuthenticatedContent, *,
                    secret_tree: SecretTree, sender_data_secret: bytes,
                    reuse_guard: bytes, padding: int = 0) -> PrivateMessage:
    """Encrypt a member's AuthenticatedContent into a PrivateMessage (RFC 9420 §6.3).

    ``reuse_guard`` is 4 fresh random bytes from the caller's rng; ``padding`` is the
    number of zero bytes appended to the content (§6.3.1).
    """
    content = authenticated.content
    if authenticated.wire_format != WireFormat.PRIVATE_MESSAGE:
        raise UsageError("content was signed for a different wire format")
    if content.sender.sender_type != SenderType.MEMBER:
        raise UsageError("only members can send PrivateMessage (RFC 9420 §6.3.2)")
    if len(reuse_guard) != REUSE_GUARD_SIZE:
        raise UsageError("reuse_guard must be 4 bytes")
    leaf = content.sender.leaf_index
    generation, key, nonce = secret_tree.next_key(leaf, ratchet_kind(content.content_type))
    plaintext = encode_private_message_content(content.content_type, content.content,
                                               authenticated.auth, padding)
    aad = encode_private_content_aad(content.group_id, content.epoch, content.content_type,
                                     content.authenticated_data)
    ciphertext = cs.aead_encrypt(key, _guarded(nonce, reuse_guard), aad, plaintext)
    sender_data = encode(SenderData(leaf, generation, reuse_guard))
    sd_key, sd_nonce = sender_data_key_nonce(cs, sender_data_secret, ciphertext)
    sd_aad = encode_sender_data_aad(content.group_id, content.epoch, content.content_type)
    encrypted_sender_data = cs.aead_encrypt(sd_key, sd_nonce, sd_aad, sender_data)
    return PrivateMessage(content.group_id, content.epoch, content.content_type,
                          content.authenticated_data, encrypted_sender_data, ciphertext)


def decrypt_sender_data(cs: CipherSuite, message: PrivateMessage,
                        sender_data_secret: bytes) -> SenderData:
    """Decrypt and parse the SenderData of a PrivateMessage (RFC 9420 §6.3.2)."""
    sd_key, sd_nonce = sender_data_key_nonce(cs, sender_data_secret, message.ciphertext)
    sd_aad = encode_sender_data_aad(message.group_id, message.epoch, message.content_type)
    plaintext = cs.aead_decrypt(sd_key, sd_nonce, sd_aad, message.encrypted_sender_data)
    return decode(SenderData, plaintext)


def decrypt_private(cs: CipherSuite, message: PrivateMessage, *, secret_tree: SecretTree,
                    sender_data_secret: bytes) -> AuthenticatedContent:
    """Decrypt a PrivateMessage into its (not yet signature-checked) content.

    Raises CryptoError (AEAD), GenerationError (replayed or too-far generation),
    DecodeError (malformed plaintext, non-zero padding).
    """
    sender_data = decrypt_sender_data(cs, message, sender_data_secret)
    if sender_data.leaf_index >= secret_tree.n_leaves:
        raise ValidationError("SenderData names a leaf outside the tree")
    key, nonce = secret_tree.key_for(sender_data.leaf_index,
                                     ratchet_kind(message.content_type),
                                     sender_data.generation)
    aad = encode_private_content_aad(message.group_id, message.epoch, message.content_type,
                                     message.authenticated_data)
    plaintext = cs.aead_decrypt(key, _guarded(nonce, sender_data.reuse_guard), aad,
                                message.ciphertext)
    body, auth = decode_private_message_content(message.content_type, plaintext)
    content = FramedContent(message.group_id, message.epoch,
                            Sender.member(sender_data.leaf_index),
                            message.authenticated_data, message.content_type, body)
    return AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, content, auth)


def unprotect_private(cs: CipherSuite, message: PrivateMessage, *, secret_tree: SecretTree,
                      sender_data_secret: bytes, group_context: bytes,
                      signature_key_for: Callable[[int], bytes | None]
                      ) -> AuthenticatedContent:
    """Decrypt a PrivateMessage and verify its signature (RFC 9420 §6.3).

    ``signature_key_for(leaf_index)`` returns the signature key of a non-blank leaf
    or None; a blank leaf is a validation failure (§6.3.2).
    """
    authenticated = decrypt_private(cs, message, secret_tree=secret_tree,
                                    sender_data_secret=sender_data_secret)
    leaf = authenticated.content.sender.leaf_index
    signature_pub = signature_key_for(leaf)
    if signature_pub is None:
        raise ValidationError(f"PrivateMessage sender leaf {leaf} is blank")
    verify_content_signature(cs, signature_pub, authenticated, group_context)
    return authenticated
