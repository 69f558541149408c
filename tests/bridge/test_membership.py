"""Network kicks become hub Remove proposals that the next commit must include;
external joins from the hub's GroupInfo and resync of a broken member state;
the KeyPackage directory."""

from __future__ import annotations

import random

from bridge.hub.policy import JoinPolicy, RoomPolicy
from bridge.hub.store import LogKind
from bridge.member import Member
from mls.codec import encode
from mls.crypto import suite
from mls.group.key_package import create_key_package
from mls.messages.framing import MLSMessage
from tests.bridge.conftest import NOW, Harness, domain
from tests.bridge.test_hub_rejections import bundle_of, refused, three
from transports.interface import Inbound, Membership, NetworkEvent, Op, Role


def identities(member: Member, group_id: bytes) -> list[str]:
    return member.roster(group_id)


async def test_kick_becomes_a_remove_the_next_commit_must_include(harness: Harness) -> None:
    group_id, alice, bob, carol = await three(harness)
    assert harness.hub is not None and harness.store is not None
    before_kick = bob.group(group_id)
    kick = NetworkEvent("xmpp", "room@mls.example.org", carol.identity, domain("moderator"),
                        Membership.JOINED, Membership.NONE, actor_moderator=True)
    reply = await harness.hub.network_event(kick)
    assert reply.ok
    again = await harness.hub.network_event(kick)
    assert again.ok and again.seq == 0  # already queued: nothing new
    queued = await harness.store.queued_proposals(group_id, 1)
    assert len(queued) == 1 and queued[0].sender == "hub"
    await harness.quiesce()

    # A commit made without the hub's proposal is refused, and changes nothing.
    staged = before_kick.commit(rng=random.Random(3).randbytes, force_path=True)
    await refused(harness, group_id, Inbound(Op.SUBMIT_COMMIT, bob.identity,
                                             **bundle_of(staged)), "proposals-not-covered")

    # Bob's next commit covers it (he received the proposal): Carol is out.
    assert await bob.commit_pending(group_id)
    await harness.quiesce()
    assert not carol.group(group_id).active
    assert identities(alice, group_id) == identities(bob, group_id) == sorted(
        [alice.identity, bob.identity])
    assert alice.group(group_id).epoch_authenticator() == bob.group(group_id).epoch_authenticator()
    assert await harness.store.queued_proposals(group_id, 2) == []
    assert [m.identity for m in await harness.store.get_members(group_id)] == [
        alice.identity, bob.identity]
    # Kicking someone who is not in the group is refused.
    reply = await harness.hub.network_event(kick)
    assert reply.code == "not-member"

    # Leaving on the network works the same way; a racing update covers it.
    await bob.leave(group_id)
    await harness.quiesce()
    await alice.update(group_id)
    await harness.quiesce()
    assert identities(alice, group_id) == [alice.identity]
    assert not bob.group(group_id).active


async def test_external_join_and_resync_of_a_broken_state(harness: Harness) -> None:
    group_id, alice, bob, carol = await three(harness)
    dave = await harness.member("dave", publish=0)
    # The room lets its members join by external commit; Dave is a member of the room.
    assert harness.hub is not None
    room = ("xmpp", "room@mls.example.org")
    harness.hub.authz.configure(RoomPolicy((room,), JoinPolicy.ROOM))
    harness.network.rooms["xmpp"].set_role(room[1], dave.identity, Role.MEMBER)
    seq = await dave.rejoin(group_id)  # a new member, by external commit
    await harness.quiesce()
    assert seq == 2 and dave.group(group_id).epoch == 2
    everyone = [alice, bob, carol, dave]
    assert len({m.group(group_id).epoch_authenticator() for m in everyone}) == 1
    sent = await dave.send_text(group_id, "hello from an external joiner")
    await harness.quiesce()
    assert [r.content for r in alice.received(group_id)] == [sent]

    # Bob's state is lost (restored from an old backup): the next commit breaks it and
    # he recovers by an external commit that replaces his old leaf.
    old_leaf = int(bob.group(group_id).own_leaf)
    stale = bob.group(group_id)
    await alice.update(group_id)
    await harness.quiesce()
    bob._slots[group_id].group = stale
    assert bob.next_seq(group_id) == alice.next_seq(group_id)  # only the group bytes are old
    await carol.update(group_id)
    await harness.quiesce()
    assert bob.group(group_id).epoch == alice.group(group_id).epoch
    assert len({m.group(group_id).epoch_authenticator() for m in everyone}) == 1
    assert identities(alice, group_id) == sorted(m.identity for m in everyone)
    assert int(bob.group(group_id).own_leaf) == old_leaf  # the resync reused his leaf
    assert harness.store is not None
    log = await harness.store.log_since(group_id, 0, 100)
    assert [e.sender for e in log if e.kind == LogKind.COMMIT][-1] == bob.identity
    greeting = await bob.send_text(group_id, "back")
    await harness.quiesce()
    assert [r.content for r in carol.received(group_id)][-1] == greeting


async def test_key_package_directory(harness: Harness) -> None:
    bob = await harness.member("bob", publish=2)
    await bob.publish_key_packages(1, last_resort=True)
    hub = harness.hub
    assert hub is not None
    listing = await harness.ask(Inbound(Op.LIST_KEY_PACKAGES, bob.identity))
    assert len(listing.key_packages) == 3
    assert sum(kp.last_resort for kp in listing.key_packages) == 1
    claimers = [await harness.member(name, publish=0) for name in ("w", "x", "y", "z")]
    groups = [await claimer.create_group() for claimer in claimers]
    claims = [await harness.ask(Inbound(Op.CLAIM_KEY_PACKAGE, claimer.identity,
                                        group_id=group_id, target=bob.identity))
              for claimer, group_id in zip(claimers, groups, strict=True)]
    assert all(reply.ok for reply in claims)
    payloads = [reply.payload for reply in claims]
    assert len(set(payloads[:3])) == 3  # never handed out twice
    assert payloads[3] == payloads[2]  # the last-resort one is kept
    nobody = await harness.ask(Inbound(Op.CLAIM_KEY_PACKAGE, claimers[0].identity,
                                       group_id=groups[0], target=domain("zed")))
    assert nobody.code == "no-key-package"

    # Only the user a KeyPackage names may publish it; garbage and expired are refused.
    rng = random.Random(4).randbytes
    cs = suite(1)
    priv, _ = cs.generate_signature_key_pair(rng)
    from mls.messages.credentials import Credential

    fresh = create_key_package(cs, Credential.basic(b"xmpp:bob@example.org"), priv, rng=rng,
                               now=NOW)
    reply = await harness.ask(Inbound(Op.PUBLISH_KEY_PACKAGE, domain("eve"),
                                     payload=encode(MLSMessage.wrap(fresh.key_package))))
    assert reply.code == "forbidden"
    reply = await harness.ask(Inbound(Op.PUBLISH_KEY_PACKAGE, bob.identity, payload=b"\x00\x01"))
    assert reply.code == "malformed"
    expired = create_key_package(cs, Credential.basic(b"xmpp:bob@example.org"), priv, rng=rng,
                                 now=NOW - 200 * 86400)
    reply = await harness.ask(Inbound(Op.PUBLISH_KEY_PACKAGE, bob.identity,
                                     payload=encode(MLSMessage.wrap(expired.key_package))))
    assert reply.code == "malformed"
    ok = await harness.ask(Inbound(Op.PUBLISH_KEY_PACKAGE, bob.identity,
                                  payload=encode(MLSMessage.wrap(fresh.key_package))))
    assert ok.ok
    dup = await harness.ask(Inbound(Op.PUBLISH_KEY_PACKAGE, bob.identity,
                                   payload=encode(MLSMessage.wrap(fresh.key_package))))
    assert dup.code == "conflict"
    # Expiry: 91 days later everything published now is gone.
    hub.clock = lambda: NOW + 91 * 86400
    assert await hub.purge_expired() == 2
    listing = await harness.ask(Inbound(Op.LIST_KEY_PACKAGES, bob.identity))
    assert listing.key_packages == ()
