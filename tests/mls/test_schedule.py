"""Behaviour of the key schedule, PSKs, secret tree and transcript hashes
(RFC 9420 §8, §9).  Exact values are covered by the official vectors; these tests
check the rules around them: ratchet windows, deletion, laziness, atomicity."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mls.crypto import suite
from mls.crypto.suite import CipherSuite
from mls.enums import CipherSuiteId, PSKType
from mls.errors import ConfirmationTagError, DecodeError, GenerationError, UsageError
from mls.messages.psk import PreSharedKeyID
from mls.schedule import (
    EpochSecrets,
    RatchetKind,
    SecretTree,
    advance_epoch,
    confirmation_tag,
    epoch_from_joiner,
    export_secret,
    psk_secret,
    verify_confirmation_tag,
    welcome_key_nonce,
)

APP = RatchetKind.APPLICATION
HS = RatchetKind.HANDSHAKE


@pytest.fixture
def cs() -> CipherSuite:
    return suite(CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)


def _secret(cs: CipherSuite, seed: int = 1) -> bytes:
    return bytes((seed + i) % 256 for i in range(cs.hash_len))


def _tree(cs: CipherSuite, n: int = 8, **kwargs: int) -> SecretTree:
    return SecretTree(cs, _secret(cs), n, **kwargs)


def _sent_keys(cs: CipherSuite, leaf: int, count: int, n: int = 8) -> list[tuple[bytes, bytes]]:
    """What the sender at ``leaf`` uses for generations 0..count-1."""
    sender = _tree(cs, n)
    keys = []
    for expected in range(count):
        generation, key, nonce = sender.next_key(leaf, APP)
        assert generation == expected
        keys.append((key, nonce))
    return keys


# -- secret tree: receiving ---------------------------------------------------------


def test_in_order_receive_matches_sender(cs: CipherSuite) -> None:
    sent = _sent_keys(cs, 3, 5)
    receiver = _tree(cs)
    assert [receiver.key_for(3, APP, g) for g in range(5)] == sent


def test_out_of_order_within_window(cs: CipherSuite) -> None:
    sent = _sent_keys(cs, 2, 6)
    receiver = _tree(cs, out_of_order_window=8)
    for generation in (5, 1, 0, 3, 4, 2):
        assert receiver.key_for(2, APP, generation) == sent[generation]
    assert receiver.retained_generations(2, APP) == ()


def test_replayed_generation_is_rejected(cs: CipherSuite) -> None:
    receiver = _tree(cs)
    receiver.key_for(0, APP, 2)
    with pytest.raises(GenerationError):
        receiver.key_for(0, APP, 2)
    receiver.key_for(0, APP, 0)  # skipped, still held
    with pytest.raises(GenerationError):
        receiver.key_for(0, APP, 0)


def test_skipped_generation_beyond_window_is_dropped(cs: CipherSuite) -> None:
    receiver = _tree(cs, out_of_order_window=2)
    receiver.key_for(1, HS, 6)
    assert receiver.retained_generations(1, HS) == (4, 5)
    with pytest.raises(GenerationError):
        receiver.key_for(1, HS, 3)
    receiver.key_for(1, HS, 9)  # moving on drops 4 and 5 too
    assert receiver.retained_generations(1, HS) == (7, 8)


def test_max_forward_distance(cs: CipherSuite) -> None:
    receiver = _tree(cs, max_forward_distance=10)
    before = receiver.to_bytes()
    with pytest.raises(GenerationError):
        receiver.key_for(4, APP, 11)
    assert receiver.to_bytes() == before  # a failed call leaves the tree untouched
    receiver.key_for(4, APP, 10)
    with pytest.raises(GenerationError):
        receiver.key_for(4, APP, 22)
    receiver.key_for(4, APP, 21)


def test_ratchets_are_independent(cs: CipherSuite) -> None:
    receiver = _tree(cs)
    hs_key = receiver.key_for(5, HS, 0)
    app_key = receiver.key_for(5, APP, 0)
    assert hs_key != app_key
    assert receiver.next_generation(5, HS) == 1
    assert receiver.next_generation(6, HS) == 0


def test_consumed_keys_are_gone_from_state(cs: CipherSuite) -> None:
    receiver = _tree(cs, out_of_order_window=8)
    key3, nonce3 = receiver.key_for(7, APP, 3)
    state = receiver.to_bytes()
    assert key3 not in state and nonce3 not in state
    assert receiver.retained_generations(7, APP) == (0, 1, 2)
    key1, nonce1 = receiver.key_for(7, APP, 1)
    assert receiver.retained_generations(7, APP) == (0, 2)
    state = receiver.to_bytes()
    assert key1 not in state and nonce1 not in state

    sender = _tree(cs)
    _, key, nonce = sender.next_key(7, APP)
    state = sender.to_bytes()
    assert key not in state and nonce not in state
    assert sender.retained_generations(7, APP) == ()


def test_parent_secrets_are_deleted(cs: CipherSuite) -> None:
    tree = _tree(cs, 4)  # nodes 0..6, root 3
    encryption_secret = _secret(cs)
    tree.key_for(0, APP, 0)
    assert not tree.holds_node_secret(3)  # root: both children derived
    assert not tree.holds_node_secret(1)
    assert not tree.holds_node_secret(0)  # leaf secret: ratchets initialised
    assert tree.holds_node_secret(2) and tree.holds_node_secret(5)
    assert encryption_secret not in tree.to_bytes()
    tree.key_for(1, APP, 0)
    assert not tree.holds_node_secret(2)
    assert tree.node_secret_count() == 1


def test_lazy_derivation_is_logarithmic(cs: CipherSuite, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    labels: list[bytes] = []
    original = CipherSuite.expand_with_label

    def counting(self: CipherSuite, secret: bytes, label: bytes, context: bytes,
                 length: int) -> bytes:
        labels.append(label)
        return original(self, secret, label, context, length)

    monkeypatch.setattr(CipherSuite, "expand_with_label", counting)
    depth = 14
    tree = SecretTree(cs, _secret(cs), 1 << depth)
    assert labels == []  # construction derives nothing
    tree.key_for(12345, APP, 0)
    assert labels.count(b"tree") == 2 * depth  # two children per level of the path
    assert len(labels) <= 2 * depth + 5  # + 2 ratchet roots, key, nonce, next secret
    assert tree.node_secret_count() == depth  # the copath, nothing else
    labels.clear()
    tree.key_for(12344, APP, 0)  # sibling leaf: its secret is already held
    assert labels.count(b"tree") == 0
    tree.key_for(0, APP, 0)
    assert labels.count(b"tree") == 2 * (depth - 1)


def test_single_leaf_tree_and_bad_leaf(cs: CipherSuite) -> None:
    tree = SecretTree(cs, _secret(cs), 1)
    assert tree.next_key(0, HS)[0] == 0
    with pytest.raises(UsageError):
        tree.key_for(1, HS, 0)
    with pytest.raises(UsageError):
        SecretTree(cs, _secret(cs), 0)


def test_copy_is_independent(cs: CipherSuite) -> None:
    tree = _tree(cs)
    tree.key_for(2, APP, 1)
    trial = tree.copy()
    before = tree.to_bytes()
    key = trial.key_for(2, APP, 0)
    trial.key_for(3, APP, 4)
    assert tree.to_bytes() == before
    assert tree.key_for(2, APP, 0) == key


def test_serialization_round_trip(cs: CipherSuite) -> None:
    tree = _tree(cs, 8, out_of_order_window=5, max_forward_distance=50)
    tree.key_for(1, APP, 4)
    tree.next_key(6, HS)
    data = tree.to_bytes()
    restored = SecretTree.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored.out_of_order_window == 5 and restored.max_forward_distance == 50
    assert restored.key_for(1, APP, 2) == tree.key_for(1, APP, 2)
    assert restored.next_key(6, HS) == tree.next_key(6, HS)
    assert restored.key_for(0, HS, 3) == tree.key_for(0, HS, 3)
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(data[:-1])
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(data + b"\x00")


def test_reprs_hold_no_secrets(cs: CipherSuite) -> None:
    _, _, secrets = advance_epoch(cs, _secret(cs, 9), b"", b"", b"context")
    text = repr(secrets)
    for name in EpochSecrets.__dataclass_fields__:
        value = getattr(secrets, name)
        assert value.hex() not in text and repr(value) not in text
    tree = _tree(cs)
    tree.key_for(0, APP, 3)
    text = repr(tree)
    assert _secret(cs).hex() not in text and "b'" not in text and "\\x" not in text


# -- key schedule, PSKs, transcript ---------------------------------------------------


def _epoch_chain(cs: CipherSuite) -> Iterator[bytes]:
    init = _secret(cs, 3)
    for epoch in range(3):
        _, _, secrets = advance_epoch(cs, init, _secret(cs, epoch), b"", bytes([epoch]))
        yield secrets.encryption_secret
        init = secrets.init_secret


def test_zero_length_inputs_mean_zero_vector(cs: CipherSuite) -> None:
    zero = bytes(cs.hash_len)
    init = _secret(cs)
    assert advance_epoch(cs, init, b"", b"", b"gc") == advance_epoch(cs, init, zero, zero, b"gc")
    assert psk_secret(cs, []) == zero
    with pytest.raises(UsageError):
        advance_epoch(cs, init, b"short", b"", b"gc")


def test_joiner_and_member_agree(cs: CipherSuite) -> None:
    joiner, welcome, secrets = advance_epoch(cs, _secret(cs), _secret(cs, 2),
                                             _secret(cs, 5), b"group context")
    assert epoch_from_joiner(cs, joiner, _secret(cs, 5), b"group context") == (welcome, secrets)
    key, nonce = welcome_key_nonce(cs, welcome)
    assert (len(key), len(nonce)) == (cs.key_size, cs.nonce_size)
    chain = list(_epoch_chain(cs))
    assert len(set(chain)) == len(chain)


def test_exporter_depends_on_label_context_length(cs: CipherSuite) -> None:
    secret = _secret(cs)
    base = export_secret(cs, secret, b"label", b"ctx", 32)
    assert len(base) == 32
    assert export_secret(cs, secret, b"label2", b"ctx", 32) != base
    assert export_secret(cs, secret, b"label", b"ctx2", 32) != base
    assert export_secret(cs, secret, b"label", b"ctx", 16) != base[:16]  # length is bound
    assert len(export_secret(cs, secret, b"label", b"ctx", 100)) == 100


def test_psk_order_and_binding(cs: CipherSuite) -> None:
    a = (PreSharedKeyID(PSKType.EXTERNAL, psk_nonce=b"n" * 32, psk_id=b"a"), b"k1")
    b = (PreSharedKeyID(PSKType.EXTERNAL, psk_nonce=b"m" * 32, psk_id=b"b"), b"k2")
    assert psk_secret(cs, [a, b]) != psk_secret(cs, [b, a])
    assert psk_secret(cs, [a]) != psk_secret(cs, [(a[0], b"other")])
    assert len(psk_secret(cs, [a, b])) == cs.hash_len


def test_confirmation_tag_verification(cs: CipherSuite) -> None:
    key = _secret(cs)
    tag = confirmation_tag(cs, key, b"transcript")
    verify_confirmation_tag(cs, key, b"transcript", tag)
    with pytest.raises(ConfirmationTagError):
        verify_confirmation_tag(cs, key, b"transcript!", tag)


@pytest.mark.parametrize("suite_id", range(1, 8))
def test_external_init_sender_and_receiver_agree(suite_id: int) -> None:
    """RFC 9420 §8.3: joiner and members derive the same init_secret from kem_output,
    and a different external key pair does not."""
    from mls.crypto import suite
    from mls.errors import CryptoError
    from mls.schedule import external_init_receiver, external_init_sender, external_key_pair

    cs = suite(suite_id)
    priv, pub = external_key_pair(cs, bytes(range(cs.hash_len)))
    kem_output, init_secret = external_init_sender(cs, pub, os.urandom)
    assert len(init_secret) == cs.hash_len
    assert external_init_receiver(cs, priv, kem_output) == init_secret
    other_priv, _ = external_key_pair(cs, bytes(cs.hash_len))
    assert external_init_receiver(cs, other_priv, kem_output) != init_secret
    with pytest.raises(CryptoError):
        external_init_receiver(cs, priv, kem_output[:-1])
