"""Secret hygiene: keys, secrets and plaintexts never reach logs, ``repr``, exception
messages or the hub's database, and consumed secrets are dropped from the state
(RFC 9420 §9.2 "Deletion Schedule", §15.3; docs/ARCHITECTURE.md "Conventions").

Python cannot zeroize memory: "dropped" is asserted on the state (what it holds and
what :meth:`GroupState.to_bytes` serializes), nothing more.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from bridge.member import Member
from bridge.member.content import Content
from mls.codec import decode, encode
from mls.errors import MLSError
from mls.group.config import GroupConfig
from mls.group.group import Group
from mls.messages.framing import MLSMessage, PrivateMessage, PublicMessage
from mls.messages.welcome import GroupSecrets
from mls.schedule.secret_tree import RatchetKind, SecretTree
from tests.bridge.conftest import Harness
from tests.hostile.conftest import NOW, bundle

SECRET_FIELDS = ("sender_data_secret", "encryption_secret", "exporter_secret",
                 "epoch_authenticator", "external_secret", "confirmation_key",
                 "membership_key", "resumption_psk", "init_secret")


def group_secrets(group: Group) -> set[bytes]:
    """Every secret a member's group state holds, plus an exported secret."""
    state = group.state
    found = {state.signature_priv, *state.hpke_keys.values()}
    found.update(getattr(state.secrets, name) for name in SECRET_FIELDS)
    found.update(past.sender_data_secret for past in state.past_epochs)
    found.update(psk for _, psk in state.resumption_psks)
    found.add(group.export_secret(b"hygiene", b"", 32))
    return {secret for secret in found if len(secret) >= 16}


def text_forms(secret: bytes) -> list[str]:
    b64 = base64.b64encode(secret).decode()
    return [secret.hex(), b64.rstrip("="), repr(secret)[2:-1], secret.decode("latin-1")]


def assert_no_secret_in_text(text: str, secrets: Iterable[bytes], where: str) -> None:
    for secret in secrets:
        for form in text_forms(secret):
            assert form not in text, f"a secret ({len(secret)} bytes) appears in {where}"


def assert_no_secret_in_bytes(data: bytes, secrets: Iterable[bytes], where: str) -> None:
    for secret in secrets:
        for form in (secret, secret.hex().encode(), base64.b64encode(secret).rstrip(b"=")):
            assert form not in data, f"a secret ({len(secret)} bytes) appears in {where}"


# -- a full life cycle through the hub --------------------------------------------------------

@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "hub.db")
    await h.start_hub()
    try:
        yield h
    finally:
        await h.close()


async def test_logs_reprs_and_hub_database_hold_no_secret(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: set[bytes] = set()
    plaintexts: list[bytes] = []
    members: list[Member] = [await harness.member(n, publish=2)
                             for n in ("alice", "bob", "carol")]
    alice, bob, carol = members

    async def step() -> None:
        await harness.quiesce()
        for member in members:
            for group_id in member.group_ids():
                secrets.update(group_secrets(member.group(group_id)))
        secrets.update(bundle_secret for member in members
                       for held, _ in member._bundles.values()
                       for bundle_secret in (held.init_priv, held.encryption_priv,
                                             held.signature_priv))

    async def say(member: Member, group_id: bytes, n: int) -> None:
        text = f"hygiene plaintext {n} {random.Random(n).randbytes(8).hex()}"
        plaintexts.append(text.encode())
        await member.send_text(group_id, text)

    group_id = await alice.create_group(
        transport="xmpp", room_id=harness.room("room@mls.example.org", alice))
    await step()
    await alice.add_members(group_id, [bob.identity, carol.identity])
    await step()
    for n, member in enumerate(members):
        await say(member, group_id, n)
    await step()
    await bob.update(group_id)
    await step()
    await say(carol, group_id, 10)
    await alice.remove_members(group_id, [carol.identity])
    await step()
    await say(bob, group_id, 11)
    await carol.leave(group_id) if carol.group(group_id).active else None
    await step()
    assert [r.content.body for r in alice.received(group_id)][-1].startswith(
        "hygiene plaintext 11")
    assert len(secrets) > 40 and plaintexts

    # Logs (every logger, DEBUG), including formatted exception text.
    log_text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "the life cycle logged nothing at all"
    assert_no_secret_in_text(log_text, secrets, "the logs")
    for plaintext in plaintexts:
        assert plaintext.decode() not in log_text

    # repr of members, their groups, states, KeyPackage bundles and received content.
    for member in members:
        texts = [repr(member), *(repr(member.group(g)) + repr(member.group(g).state)
                                 for g in member.group_ids())]
        texts.extend(repr(held) for held, _ in member._bundles.values())
        texts.extend(repr(received) for g in member.group_ids()
                     for received in member.received(g))
        for text in texts:
            assert_no_secret_in_text(text, secrets, f"a repr of {member.identity}'s objects")
            for plaintext in plaintexts:
                assert plaintext.decode() not in text

    # The hub's SQLite database, read raw (main file and write-ahead log).
    assert harness.store is not None
    await harness.stop_hub()
    files = [p for p in harness.path.parent.iterdir() if p.name.startswith(harness.path.name)]
    raw = b"".join(p.read_bytes() for p in files)
    assert len(raw) > 4096
    assert_no_secret_in_bytes(raw, secrets, "the hub's database")
    for plaintext in plaintexts:
        assert plaintext not in raw, "a plaintext appears in the hub's database"
    assert identity_in(raw, alice.identity)  # the search itself works on this file


def identity_in(raw: bytes, identity: str) -> bool:
    return identity.encode() in raw


# -- repr of every object that holds secrets ------------------------------------------------------

def _three(config: GroupConfig | None = None) -> tuple[Group, Group, Group, object]:
    rng = random.Random(41)
    bundles = [bundle(n, rng) for n in ("alice", "bob", "carol")]
    alice = Group.create(bundles[0], group_id=b"hygiene", rng=rng.randbytes, config=config)
    staged = alice.commit(rng=rng.randbytes, now=NOW, add=[b.key_package for b in bundles[1:]])
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bundles[1], now=NOW, config=config)
    carol = Group.join(staged.welcome, bundles[2], now=NOW, config=config)
    return alice.merge(staged), bob, carol, (rng, bundles, staged)


def test_repr_of_secret_holders_hides_secrets() -> None:
    alice, bob, _, extra = _three()
    rng, bundles, staged = extra  # type: ignore[misc]
    secrets = group_secrets(alice) | group_secrets(bob)
    for held in bundles:
        secrets |= {held.init_priv, held.encryption_priv, held.signature_priv}
    plain = GroupSecrets(joiner_secret=b"J" * 32, path_secret=b"P" * 32)
    secrets |= {plain.joiner_secret, b"P" * 32}
    state = alice.state
    objects = [alice, bob, state, state.secrets, state.secret_tree, state.secret_tree.copy(),
               *state.past_epochs, *bundles, plain, staged, alice.commit(rng=rng.randbytes),
               Content(b"\x01" * 16, "plaintext body"), dataclasses.replace(state)]
    for obj in objects:
        assert_no_secret_in_text(repr(obj), secrets, f"repr({type(obj).__name__})")
    assert "plaintext body" not in repr(objects[-2])


# -- exception messages on bad input -------------------------------------------------------------

def test_errors_on_bad_input_carry_no_secret() -> None:
    alice, bob, _, extra = _three()
    rng = extra[0]  # type: ignore[index]
    secrets = group_secrets(alice) | group_secrets(bob)
    alice, message = alice.encrypt(b"the plaintext", rng=rng.randbytes)
    body = message.body
    assert isinstance(body, PrivateMessage)
    staged = alice.commit(rng=rng.randbytes, force_path=True)
    public = staged.message.body
    assert isinstance(public, PublicMessage)
    bad_inputs: list[MLSMessage | bytes] = [
        MLSMessage.wrap(dataclasses.replace(body, ciphertext=body.ciphertext[:-1] + b"\x00")),
        MLSMessage.wrap(dataclasses.replace(body, encrypted_sender_data=bytes(
            len(body.encrypted_sender_data)))),
        MLSMessage.wrap(dataclasses.replace(body, epoch=body.epoch + 5)),
        MLSMessage.wrap(dataclasses.replace(public, membership_tag=bytes(32))),
        MLSMessage.wrap(dataclasses.replace(public, auth=dataclasses.replace(
            public.auth, confirmation_tag=bytes(32)))),
        encode(message)[:-3], b"\x00\x01\x00\x02" + b"\xff" * 40,
    ]
    for bad in bad_inputs:
        with pytest.raises(MLSError) as info:
            bob.process(bad)
        text = f"{info.value} {info.value!r}"
        assert_no_secret_in_text(text, secrets, f"{type(info.value).__name__}")
        assert "the plaintext" not in text
    bob, _ = bob.process(message)
    with pytest.raises(MLSError) as info:
        bob.process(message)  # replay
    assert_no_secret_in_text(str(info.value), secrets, "the replay error")
    with pytest.raises(MLSError) as info:
        decode(GroupSecrets, encode(GroupSecrets(b"S" * 32)) + b"\x00")
    assert "S" * 32 not in str(info.value) and (b"S" * 32).hex() not in str(info.value)


# -- consumed secrets are dropped ------------------------------------------------------------------

def test_consumed_generation_keys_are_dropped() -> None:
    config = GroupConfig(out_of_order_window=2)
    alice, bob, _, extra = _three(config)
    rng = extra[0]  # type: ignore[index]
    sent = []
    for n in range(6):
        alice, message = alice.encrypt(f"m{n}".encode(), rng=rng.randbytes)
        sent.append(message)
    sender = int(alice.own_leaf)
    keys = [bob.state.secret_tree.copy().key_for(sender, RatchetKind.APPLICATION, g)[0]
            for g in range(6)]
    bob, _ = bob.process(sent[1])
    tree = bob.state.secret_tree
    assert 1 not in tree.retained_generations(sender, RatchetKind.APPLICATION)
    assert tree.retained_generations(sender, RatchetKind.APPLICATION) == (0,)
    assert keys[1] not in bob.to_bytes() and keys[0] in bob.to_bytes()
    bob, _ = bob.process(sent[5])  # skips 2..4; the window keeps only the last two
    retained = bob.state.secret_tree.retained_generations(sender, RatchetKind.APPLICATION)
    assert 5 not in retained and len(retained) <= 2
    state_bytes = bob.to_bytes()
    for generation in (1, 5):
        assert keys[generation] not in state_bytes
    dropped = [g for g in range(6) if g not in retained and g not in (1, 5)]
    assert dropped, "the out-of-order window dropped nothing"
    for generation in dropped:
        assert keys[generation] not in state_bytes


def test_past_epochs_and_old_init_secrets_are_dropped() -> None:
    config = GroupConfig(max_past_epochs=1, max_resumption_psks=1)
    alice, bob, carol, extra = _three(config)
    rng = extra[0]  # type: ignore[index]
    history = [bob.state.secrets]
    for _ in range(3):
        staged = alice.commit(rng=rng.randbytes, force_path=True)
        alice = alice.merge(staged)
        bob, _ = bob.process(staged.message)
        carol, _ = carol.process(staged.message)
        history.append(bob.state.secrets)
    state = bob.state
    assert [past.epoch for past in state.past_epochs] == [state.epoch - 1]
    assert [epoch for epoch, _ in state.resumption_psks] == [state.epoch - 1]
    data = bob.to_bytes()
    for old in history[:-2]:  # epochs beyond the window: nothing of theirs is kept
        for name in SECRET_FIELDS:
            value = getattr(old, name)  # the consumed encryption_secret is b"" already
            assert not value or value not in data, f"an old epoch's {name} is kept"
    # The retained past epoch: only what late messages need (its sender data secret and
    # its secret tree).
    previous = history[-2]
    assert previous.sender_data_secret in data
    for name in ("init_secret", "exporter_secret", "membership_key", "confirmation_key",
                 "external_secret", "epoch_authenticator"):
        assert getattr(previous, name) not in data, f"the past epoch's {name} is kept"
    assert state.secrets.init_secret in data  # the next epoch's: still needed


def test_encryption_secret_is_dropped_once_the_secret_tree_holds_it() -> None:
    alice, bob, _, extra = _three()
    rng = extra[0]  # type: ignore[index]
    alice, message = alice.encrypt(b"consumed", rng=rng.randbytes)
    consumed_key = bob.state.secret_tree.copy().key_for(
        int(alice.own_leaf), RatchetKind.APPLICATION, 0)[0]
    bob, _ = bob.process(message)
    encryption_secret = bob.state.secrets.encryption_secret
    rederived = SecretTree(bob.state.cs, encryption_secret, 3).key_for(
        int(alice.own_leaf), RatchetKind.APPLICATION, 0)[0] if encryption_secret else b""
    assert rederived != consumed_key
    assert not encryption_secret or encryption_secret not in bob.to_bytes()
