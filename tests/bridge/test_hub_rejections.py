"""Bad input to the hub gets a specific refusal and changes nothing in the store."""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Any

from bridge.hub import Hub
from bridge.hub.store import Store
from bridge.member import Member
from mls.codec import encode
from mls.crypto import suite
from mls.group.commit import StagedCommit
from mls.group.group import Group
from mls.group.key_package import create_key_package
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage, PublicMessage
from tests.bridge.conftest import NOW, Harness, domain
from transports.interface import Inbound, Op, Outbound


def bundle_of(staged: StagedCommit, *, group_info: MLSMessage | None = None) -> dict[str, Any]:
    """The submit-commit fields for a staged commit (as Member sends them)."""
    return {
        "payload": encode(staged.message),
        "welcome": encode(staged.welcome) if staged.welcome else b"",
        "group_info": encode(group_info or MLSMessage.wrap(staged.group_info)),
    }


async def snapshot(store: Store, group_id: bytes) -> tuple[object, ...]:
    record = await store.get_group(group_id)
    return (record, await store.log_since(group_id, 0, 1000),
            await store.queued_proposals(group_id, record.epoch),
            await store.get_members(group_id), await store.group_rooms(group_id))


async def three(harness: Harness) -> tuple[bytes, Member, Member, Member]:
    alice = await harness.member("alice")
    bob = await harness.member("bob")
    carol = await harness.member("carol")
    group_id = await alice.create_group(
        transport="xmpp", room_id=harness.room("room@mls.example.org", alice))
    await alice.add_members(group_id, [bob.identity, carol.identity])
    await harness.quiesce()
    return group_id, alice, bob, carol


async def refused(harness: Harness, group_id: bytes, request: Inbound, code: str) -> Outbound:
    assert harness.hub is not None and harness.store is not None
    before = await snapshot(harness.store, group_id)
    reply = await harness.ask(request)
    assert not reply.ok and reply.code == code, (reply.code, reply.reason)
    assert reply.reason
    assert await snapshot(harness.store, group_id) == before
    return reply


async def test_bad_input_is_refused_specifically_and_changes_nothing(
        harness: Harness) -> None:
    group_id, alice, bob, _ = await three(harness)
    rng = random.Random(5).randbytes
    hub = harness.hub
    assert isinstance(hub, Hub)

    def commit_request(sender: str, **fields: Any) -> Inbound:
        return Inbound(Op.SUBMIT_COMMIT, sender, group_id=group_id, **fields)

    # Garbage bytes.
    await refused(harness, group_id, commit_request(alice.identity, payload=os.urandom(200)),
                  "malformed")
    await refused(harness, group_id, Inbound(Op.SEND, alice.identity, group_id=group_id,
                                             payload=b"\x00\x01garbage"), "malformed")
    await refused(harness, group_id, Inbound(Op.SEND, alice.identity, payload=b""),
                  "malformed")
    # An unknown request kind.
    await refused(harness, group_id, Inbound("frobnicate", alice.identity), "unsupported")

    # A well-formed commit for a group the hub does not serve.
    cs = suite(1)
    signature_priv, _ = cs.generate_signature_key_pair(rng)
    stranger = Group.create(create_key_package(cs, Credential.basic(b"xmpp:eve@example.org"),
                                               signature_priv, rng=rng, now=NOW),
                            group_id=b"\x07" * 32, rng=rng)
    await refused(harness, group_id, Inbound(
        Op.SUBMIT_COMMIT, "xmpp:eve@example.org", **bundle_of(stranger.commit(rng=rng))),
        "unknown-group")
    await refused(harness, group_id, Inbound(Op.FETCH_LOG, alice.identity,
                                             group_id=b"\x07" * 32), "unknown-group")

    # A member's valid commit submitted by someone else; a message from a non-member.
    staged = alice.group(group_id).commit(rng=rng, force_path=True)
    await refused(harness, group_id, commit_request(domain("mallory"), **bundle_of(staged)),
                  "not-member")
    _, message = alice.group(group_id).encrypt(b"hello", rng=rng)
    await refused(harness, group_id, Inbound(Op.SEND, domain("mallory"), group_id=group_id,
                                             payload=encode(message)), "not-member")
    await refused(harness, group_id, Inbound(Op.FETCH_LOG, domain("mallory"),
                                             group_id=group_id), "not-member")
    # Bob claiming to be the committer of Alice's commit.
    await refused(harness, group_id, commit_request(bob.identity, **bundle_of(staged)),
                  "not-member")

    # A broken signature; a GroupInfo of the wrong epoch.
    body = staged.message.body
    assert isinstance(body, PublicMessage)
    bad_auth = dataclasses.replace(body.auth, signature=bytes(len(body.auth.signature)))
    forged = MLSMessage.wrap(dataclasses.replace(body, auth=bad_auth))
    await refused(harness, group_id, commit_request(
        alice.identity, **{**bundle_of(staged), "payload": encode(forged)}), "bad-signature")
    current_info = MLSMessage.wrap(alice.group(group_id).group_info())
    await refused(harness, group_id, commit_request(
        alice.identity, **bundle_of(staged, group_info=current_info)), "invalid-commit")

    # Oversized.
    big = Inbound(Op.SEND, alice.identity, group_id=group_id,
                  payload=os.urandom(hub.config.max_payload + 1))
    await refused(harness, group_id, big, "too-large")

    # Wrong epoch: Bob's commit lands first, Alice's (same epoch) is refused.
    stale_alice = alice.group(group_id)
    await bob.update(group_id)
    await harness.quiesce()
    reply = await refused(harness, group_id, commit_request(alice.identity,
                                                            **bundle_of(staged)), "wrong-epoch")
    assert reply.epoch == 2 and reply.reason == "wrong epoch (current 2)"

    # An application message two epochs old (the hub relays one epoch of lag).
    await bob.update(group_id)
    await harness.quiesce()
    _, old_message = stale_alice.encrypt(b"late", rng=rng)
    await refused(harness, group_id, Inbound(Op.SEND, alice.identity, group_id=group_id,
                                             payload=encode(old_message)), "stale-epoch")

    # The group still works for everyone.
    await alice.send_text(group_id, "still fine")
    await harness.quiesce()
    assert [r.content.body for r in bob.received(group_id)] == ["still fine"]


async def test_group_registration_checks(harness: Harness) -> None:
    alice = await harness.member("alice")
    group_id = await alice.create_group()
    info = alice.group(group_id).group_info()
    request = Inbound(Op.CREATE_GROUP, alice.identity,
                      group_info=encode(MLSMessage.wrap(info)))
    await refused(harness, group_id, request, "conflict")
    assert harness.hub is not None
    # Somebody else registering Alice's group (GroupInfo signed by Alice's leaf).
    reply = await harness.ask(dataclasses.replace(request, sender=domain("eve")))
    assert (reply.ok, reply.code) == (False, "forbidden")
    # A group that does not list the hub as external sender.
    rng = random.Random(9).randbytes
    cs = suite(1)
    signature_priv, _ = cs.generate_signature_key_pair(rng)
    plain = Group.create(create_key_package(cs, Credential.basic(b"xmpp:eve@example.org"),
                                            signature_priv, rng=rng, now=NOW),
                         group_id=b"\x09" * 32, rng=rng)
    reply = await harness.ask(Inbound(
        Op.CREATE_GROUP, "xmpp:eve@example.org",
        group_info=encode(MLSMessage.wrap(plain.group_info()))))
    assert (reply.ok, reply.code) == (False, "invalid-group")
    assert harness.store is not None
    reply = await harness.ask(Inbound(Op.FETCH_LOG, "xmpp:eve@example.org",
                                             group_id=b"\x09" * 32))
    assert reply.code == "unknown-group"
