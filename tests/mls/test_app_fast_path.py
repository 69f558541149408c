"""The application-message fast path (RFC 9420 §6.1, §6.3, §9.1): its fixed-layout
encodings are byte-identical to the generic Writer encodings, its key derivations
equal the generic ExpandWithLabel/DeriveTreeSecret, and messages it builds or opens
interoperate with the generic protect/unprotect functions."""

from __future__ import annotations

import hmac

import pytest

from mls.codec import Writer, encode
from mls.crypto import suite
from mls.enums import CipherSuiteId, ContentType, WireFormat
from mls.errors import DecodeError, GenerationError, SignatureError, UsageError
from mls.framing.private import open_application, protect_application, unprotect_private
from mls.framing.public import authenticate
from mls.group.config import GroupConfig
from mls.group.events import ApplicationEvent
from mls.group.group import Group
from mls.group.state import GroupState
from mls.messages.framing import (
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    Sender,
    SenderData,
    application_message_content,
    decode_application_message_content,
    decode_private_message_content,
    decode_sender_data,
    encode_sender_data,
    framed_content_tbs,
    member_application_tbs,
    private_message_aads,
)
from mls.schedule.secret_tree import SecretTree
from mls.tree.math import LeafIndex
from tests.mls.fixtures import NOW, make_member, make_rng

SUITES = [suite(int(suite_id)) for suite_id in CipherSuiteId]
CONTEXT = b"\x00\x01serialized group context"


def _writer_tbs(wire_format: WireFormat, content: FramedContent, context: bytes) -> bytes:
    w = Writer()
    w.u16(1)
    w.u16(wire_format)
    content.encode(w)
    w.raw(context)
    return w.getvalue()


@pytest.mark.parametrize("data", [b"", b"x" * 63, b"y" * 64, b"z" * 20000])
@pytest.mark.parametrize("wire_format", [WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE])
def test_member_application_tbs_matches_the_writer_encoding(data: bytes,
                                                            wire_format: WireFormat) -> None:
    content = FramedContent(b"group id" * 9, 2**40 + 3, Sender.member(70000), b"a" * 70,
                            ContentType.APPLICATION, data)
    expected = _writer_tbs(wire_format, content, CONTEXT)
    assert member_application_tbs(wire_format, content.group_id, content.epoch, 70000,
                                  content.authenticated_data, data, CONTEXT) == expected
    assert framed_content_tbs(wire_format, content, CONTEXT) == expected


def test_member_application_tbs_rejects_out_of_range_fields() -> None:
    with pytest.raises(UsageError):
        member_application_tbs(WireFormat.PRIVATE_MESSAGE, b"g", 2**64, 0, b"", b"", CONTEXT)
    with pytest.raises(UsageError):
        member_application_tbs(WireFormat.PRIVATE_MESSAGE, b"g", 0, 2**32, b"", b"", CONTEXT)


@pytest.mark.parametrize("padding", [0, 1, 200])
def test_application_content_round_trip_and_padding_check(padding: int) -> None:
    data, signature = b"d" * 100, b"s" * 64
    w = Writer()
    w.opaque(data)
    w.opaque(signature)
    w.raw(bytes(padding))
    encoded = application_message_content(data, signature, padding)
    assert encoded == w.getvalue()
    assert decode_application_message_content(encoded) == (data, signature)
    body, auth = decode_private_message_content(ContentType.APPLICATION, encoded)
    assert (body, auth) == (data, FramedContentAuthData(signature))
    if padding:
        tampered = encoded[:-1] + b"\x01"
        with pytest.raises(DecodeError):
            decode_application_message_content(tampered)
        with pytest.raises(DecodeError):
            decode_private_message_content(ContentType.APPLICATION, tampered)


def test_sender_data_and_aads_match_the_struct_encodings() -> None:
    assert encode_sender_data(7, 2**32 - 1, b"abcd") == encode(SenderData(7, 2**32 - 1, b"abcd"))
    assert decode_sender_data(encode_sender_data(7, 9, b"abcd")) == (7, 9, b"abcd")
    for bad in (bytes(11), bytes(13)):
        with pytest.raises(DecodeError):
            decode_sender_data(bad)
    with pytest.raises(UsageError):
        encode_sender_data(1, 1, b"abc")
    w = Writer()
    w.opaque(b"g" * 70)
    w.u64(5)
    w.u8(ContentType.APPLICATION)
    head = w.getvalue()
    w.opaque(b"ad")
    assert private_message_aads(b"g" * 70, 5, ContentType.APPLICATION, b"ad") == (
        w.getvalue(), head)


@pytest.mark.parametrize("cs", SUITES, ids=lambda cs: cs.id.name)
def test_shared_key_derivations_equal_the_generic_ones(cs: object) -> None:
    from mls.crypto.suite import CipherSuite

    assert isinstance(cs, CipherSuite)
    rng = make_rng(5)
    secret = rng(cs.hash_len)
    for key in (b"", rng(cs.hash_len), rng(200)):  # 200 bytes: longer than any block
        messages = (b"", b"one", rng(300))
        assert cs.kdf.hmac_many(key, messages) == [
            hmac.digest(key, message, cs.hash_name) for message in messages]
    for generation in (0, 1, 2**32 - 1):
        key, nonce, next_secret = cs.ratchet_step(secret, generation.to_bytes(4, "big"))
        assert key == cs.derive_tree_secret(secret, b"key", generation, cs.key_size)
        assert nonce == cs.derive_tree_secret(secret, b"nonce", generation, cs.nonce_size)
        assert next_secret == cs.derive_tree_secret(secret, b"secret", generation, cs.hash_len)
    for sample in (b"", b"c" * 16, b"c" * cs.hash_len):
        assert cs.key_and_nonce(secret, sample) == (
            cs.expand_with_label(secret, b"key", sample, cs.key_size),
            cs.expand_with_label(secret, b"nonce", sample, cs.nonce_size))


def test_fast_and_generic_protection_interoperate() -> None:
    cs = suite(1)
    rng = make_rng(9)
    signature_priv, signature_pub = cs.generate_signature_key_pair(rng)
    sender_data_secret, encryption_secret = rng(32), rng(32)
    sender_tree, receiver_tree = (SecretTree(cs, encryption_secret, 4) for _ in range(2))
    content = FramedContent(b"g", 3, Sender.member(2), b"ad", ContentType.APPLICATION, b"hi")
    signed = authenticate(cs, signature_priv, WireFormat.PRIVATE_MESSAGE, content, CONTEXT)
    fast = protect_application(
        cs, group_id=b"g", epoch=3, leaf_index=2, authenticated_data=b"ad", data=b"hi",
        signature=signed.auth.signature, secret_tree=sender_tree,
        sender_data_secret=sender_data_secret, reuse_guard=b"rgrd", padding_size=32)
    opened = unprotect_private(cs, fast, secret_tree=receiver_tree,
                               sender_data_secret=sender_data_secret, group_context=CONTEXT,
                               signature_key_for=lambda leaf: signature_pub)
    assert opened == signed
    second = protect_application(
        cs, group_id=b"g", epoch=3, leaf_index=2, authenticated_data=b"ad", data=b"hi",
        signature=signed.auth.signature, secret_tree=sender_tree,
        sender_data_secret=sender_data_secret, reuse_guard=b"rgrd")
    assert open_application(cs, second, secret_tree=receiver_tree,
                            sender_data_secret=sender_data_secret, group_context=CONTEXT,
                            signature_key_for=lambda leaf: signature_pub) == (2, b"hi")
    with pytest.raises(GenerationError):  # the key of that generation is gone
        open_application(cs, second, secret_tree=receiver_tree,
                         sender_data_secret=sender_data_secret, group_context=CONTEXT,
                         signature_key_for=lambda leaf: signature_pub)


def _pair(config: GroupConfig | None = None) -> tuple[Group, Group]:
    rng = make_rng(11)
    bundles = [make_member(name, rng) for name in (b"alice", b"bob")]
    alice = Group.create(bundles[0], group_id=b"fast path", rng=rng, config=config)
    staged = alice.commit(rng=rng, add=[bundles[1].key_package], now=NOW)
    assert staged.welcome is not None
    return alice.merge(staged), Group.join(staged.welcome, bundles[1], now=NOW, config=config)


def test_group_round_trip_and_rejections_leave_state_unchanged() -> None:
    rng = make_rng(12)
    alice, bob = _pair(GroupConfig(padding_size=48))
    before_send = alice.to_bytes()
    alice_next, message = alice.encrypt(b"payload", rng=rng, authenticated_data=b"ad")
    assert alice.to_bytes() == before_send and alice_next.to_bytes() != before_send
    body = message.body
    assert isinstance(body, PrivateMessage)
    assert (len(body.ciphertext) - 16) % 48 == 0
    before = bob.to_bytes()
    forged_signature = _forge_signature(alice, body)
    with pytest.raises(SignatureError):
        bob.process(MLSMessage(1, WireFormat.PRIVATE_MESSAGE, forged_signature))
    assert bob.to_bytes() == before
    bob_next, event = bob.process(encode(message))
    assert bob.to_bytes() == before
    assert event == ApplicationEvent(LeafIndex(0), b"payload", b"ad", bob.epoch)
    with pytest.raises(GenerationError):
        bob_next.process(message)
    with pytest.raises(UsageError):
        alice.encrypt("text", rng=rng)  # type: ignore[arg-type]


def _forge_signature(sender: Group, genuine: PrivateMessage) -> PrivateMessage:
    """The same generation as ``genuine`` re-encrypted with a wrong signature (the
    sender's keys, so only the signature check can fail)."""
    state: GroupState = sender.state
    tree = state.secret_tree.copy()
    return protect_application(
        state.cs, group_id=state.group_id, epoch=state.epoch, leaf_index=state.own_leaf,
        authenticated_data=genuine.authenticated_data, data=b"payload",
        signature=bytes(64), secret_tree=tree,
        sender_data_secret=state.secrets.sender_data_secret, reuse_guard=b"\x00" * 4,
        padding_size=state.config.padding_size)


def test_with_secret_tree_copies_every_other_field() -> None:
    alice, _ = _pair()
    state = alice.state
    tree = state.secret_tree.copy()
    swapped = state.with_secret_tree(tree, (b"fingerprint",))
    assert swapped == state.replace(secret_tree=tree, sent_messages=(b"fingerprint",))
    assert swapped.secret_tree is tree and state.secret_tree is not tree
    kept = state.with_secret_tree(tree)
    assert kept == state.replace(secret_tree=tree) and kept.sent_messages is state.sent_messages
