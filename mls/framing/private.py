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

from mls.codec import decode
from mls.crypto import CipherSuite
from mls.enums import ContentType, SenderType, WireFormat
from mls.errors import SignatureError, UsageError, ValidationError
from mls.framing.public import FRAMED_CONTENT_LABEL, verify_content_signature
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    PrivateMessage,
    Sender,
    SenderData,
    application_message_content,
    decode_application_message_content,
    decode_private_message_content,
    decode_sender_data,
    encode_private_message_content,
    encode_sender_data,
    member_application_tbs,
    private_message_aads,
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
    plaintext = encode_private_message_content(content.content_type, content.content,
                                               authenticated.auth, padding)
    return _seal(cs, secret_tree, sender_data_secret, content.group_id, content.epoch,
                 content.content_type, content.authenticated_data,
                 content.sender.leaf_index, plaintext, reuse_guard)


def protect_application(cs: CipherSuite, *, group_id: bytes, epoch: int, leaf_index: int,
                        authenticated_data: bytes, data: bytes, signature: bytes,
                        secret_tree: SecretTree, sender_data_secret: bytes,
                        reuse_guard: bytes, padding_size: int = 0) -> PrivateMessage:
    """:func:`protect_private` of member application data already signed
    (``signature`` over :func:`~mls.messages.framing.member_application_tbs`), without
    building the intermediate structs; the content is zero-padded to a multiple of
    ``padding_size`` (RFC 9420 §6.3.1)."""
    if len(reuse_guard) != REUSE_GUARD_SIZE:
        raise UsageError("reuse_guard must be 4 bytes")
    plaintext = application_message_content(data, signature, 0)
    if padding_size > 1:
        plaintext += bytes(-len(plaintext) % padding_size)
    return _seal(cs, secret_tree, sender_data_secret, group_id, epoch,
                 ContentType.APPLICATION, authenticated_data, leaf_index, plaintext,
                 reuse_guard)


def _seal(cs: CipherSuite, secret_tree: SecretTree, sender_data_secret: bytes,
          group_id: bytes, epoch: int, content_type: ContentType, authenticated_data: bytes,
          leaf_index: int, plaintext: bytes, reuse_guard: bytes) -> PrivateMessage:
    """Encrypt an encoded PrivateMessageContent with the next key of the sender's
    ratchet, then its SenderData (RFC 9420 §6.3.1, §6.3.2)."""
    generation, key, nonce = secret_tree.next_key(leaf_index, ratchet_kind(content_type))
    aad, sd_aad = private_message_aads(group_id, epoch, content_type, authenticated_data)
    ciphertext = cs.aead_encrypt(key, _guarded(nonce, reuse_guard), aad, plaintext)
    sender_data = encode_sender_data(leaf_index, generation, reuse_guard)
    sd_key, sd_nonce = sender_data_key_nonce(cs, sender_data_secret, ciphertext)
    encrypted_sender_data = cs.aead_encrypt(sd_key, sd_nonce, sd_aad, sender_data)
    return PrivateMessage(group_id, epoch, content_type, authenticated_data,
                          encrypted_sender_data, ciphertext)


def decrypt_sender_data(cs: CipherSuite, message: PrivateMessage,
                        sender_data_secret: bytes) -> SenderData:
    """Decrypt and parse the SenderData of a PrivateMessage (RFC 9420 §6.3.2)."""
    _, sd_aad = private_message_aads(message.group_id, message.epoch, message.content_type,
                                     message.authenticated_data)
    return decode(SenderData, _sender_data_plaintext(cs, message, sender_data_secret, sd_aad))


def _sender_data_plaintext(cs: CipherSuite, message: PrivateMessage,
                           sender_data_secret: bytes, sd_aad: bytes) -> bytes:
    sd_key, sd_nonce = sender_data_key_nonce(cs, sender_data_secret, message.ciphertext)
    return cs.aead_decrypt(sd_key, sd_nonce, sd_aad, message.encrypted_sender_data)


def _open(cs: CipherSuite, message: PrivateMessage, secret_tree: SecretTree,
          sender_data_secret: bytes) -> tuple[int, bytes]:
    """The sender's leaf and the decrypted PrivateMessageContent (RFC 9420 §6.3.1,
    §6.3.2); the key used is deleted from ``secret_tree``."""
    aad, sd_aad = private_message_aads(message.group_id, message.epoch,
                                       message.content_type, message.authenticated_data)
    leaf_index, generation, reuse_guard = decode_sender_data(
        _sender_data_plaintext(cs, message, sender_data_secret, sd_aad))
    if leaf_index >= secret_tree.n_leaves:
        raise ValidationError("SenderData names a leaf outside the tree")
    key, nonce = secret_tree.key_for(leaf_index, ratchet_kind(message.content_type),
                                     generation)
    plaintext = cs.aead_decrypt(key, _guarded(nonce, reuse_guard), aad, message.ciphertext)
    return leaf_index, plaintext


def decrypt_private(cs: CipherSuite, message: PrivateMessage, *, secret_tree: SecretTree,
                    sender_data_secret: bytes) -> AuthenticatedContent:
    """Decrypt a PrivateMessage into its (not yet signature-checked) content.

    Raises CryptoError (AEAD), GenerationError (replayed or too-far generation),
    DecodeError (malformed plaintext, non-zero padding).
    """
    leaf_index, plaintext = _open(cs, message, secret_tree, sender_data_secret)
    body, auth = decode_private_message_content(message.content_type, plaintext)
    content = FramedContent(message.group_id, message.epoch, Sender.member(leaf_index),
                            message.authenticated_data, message.content_type, body)
    return AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, content, auth)


def open_application(cs: CipherSuite, message: PrivateMessage, *, secret_tree: SecretTree,
                     sender_data_secret: bytes, group_context: bytes,
                     signature_key_for: Callable[[int], bytes]) -> tuple[int, bytes]:
    """:func:`unprotect_private` of an application message without building the
    intermediate structs: ``(sender leaf, application data)`` once decrypted (padding
    checked) and its signature verified (RFC 9420 §6.1, §6.3).

    ``signature_key_for(leaf_index)`` returns the sender's signature key or raises
    (ValidationError for a blank leaf).
    """
    if message.content_type != ContentType.APPLICATION:
        raise UsageError("open_application takes application messages only")
    leaf_index, plaintext = _open(cs, message, secret_tree, sender_data_secret)
    data, signature = decode_application_message_content(plaintext)
    tbs = member_application_tbs(WireFormat.PRIVATE_MESSAGE, message.group_id,
                                 message.epoch, leaf_index, message.authenticated_data,
                                 data, group_context)
    if not cs.verify_with_label(signature_key_for(leaf_index), FRAMED_CONTENT_LABEL, tbs,
                                signature):
        raise SignatureError("FramedContent signature does not verify")
    return leaf_index, data


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
