"""Membership events (bridge/member/events.py): every change of a group's membership,
with who, by whom and how, on every member -- added, joined by external commit, removed
by a member or by the hub (with the reason of its Remove proposal), left, updated, and
our own removal."""

from __future__ import annotations

import cbor2

from bridge.hub import HUB_SENDER
from bridge.member import Member
from bridge.member.events import HUB_ACTOR, EventKind, MembershipEvent, hub_reason
from mls.codec import encode
from mls.crypto.suite import suite
from mls.enums import WireFormat
from mls.framing.refs import proposal_ref
from mls.group.external import external_sender_proposal
from mls.messages.framing import AuthenticatedContent, PublicMessage
from mls.messages.proposals import Remove
from tests.bridge.conftest import Harness, domain
from transports.interface import Inbound, Op

CS = suite(1)


def seen(member: Member, group_id: bytes, since: int = 0) -> list[tuple[str, ...]]:
    """(kind, subject, actor, reason...) of the member's events from ``since`` on."""
    return [(e.kind.value, e.subject, e.actor) + ((e.reason, e.initiator, e.room)
                                                  if e.reason else ())
            for e in member.events(group_id)[since:]]


async def hub_remove(harness: Harness, member: Member, group_id: bytes, leaf: int,
                     reason: dict[str, str]) -> None:
    """The hub's Remove proposal with its reason in the signed authenticated_data, in
    the form the hub gives it (``{"reason", "by", "room"}`` as CBOR), queued as the hub
    queues its proposals."""
    assert harness.store is not None
    epoch = member.group(group_id).epoch
    message = external_sender_proposal(
        CS, group_id, epoch, 0, harness.identity.signature_priv(1), Remove(leaf),
        authenticated_data=cbor2.dumps(reason))
    body = message.body
    assert isinstance(body, PublicMessage)
    ref = proposal_ref(CS, AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, body.content,
                                                body.auth))
    await harness.store.queue_proposal(group_id, epoch, ref, encode(message), HUB_SENDER)


async def test_every_membership_change_raises_an_event(harness: Harness) -> None:
    told: list[MembershipEvent] = []
    alice = await harness.member("alice", on_event=told.append)
    bob = await harness.member("bob")
    carol = await harness.member("carol", publish=2)
    dave = await harness.member("dave")
    a, b, c, d = alice.identity, bob.identity, carol.identity, dave.identity
    group_id = await alice.create_group(transport="xmpp", room_id="room@mls.example.org")

    await alice.add_members(group_id, [b])  # added by a member (by value)
    await harness.quiesce()
    assert seen(alice, group_id) == seen(bob, group_id) == [("added", b, a)]
    assert [(e.epoch, e.seq) for e in bob.events(group_id)] == [(1, 1)]
    assert told == alice.events(group_id)

    await bob.add_members(group_id, [c, d])
    await harness.quiesce()
    assert seen(alice, group_id, 1) == seen(bob, group_id, 1) == [("added", c, b),
                                                                  ("added", d, b)]
    assert seen(carol, group_id) == [("added", c, b)]  # from the Welcome: by its signer

    await carol.rejoin(group_id)  # a resync: an external commit replacing her own leaf
    await harness.quiesce()
    for member in (alice, bob, carol):
        assert seen(member, group_id)[-1] == ("joined", c, c)
        assert member.events(group_id)[-1].resync

    await dave.update(group_id)
    await harness.quiesce()
    assert seen(alice, group_id)[-1] == seen(dave, group_id)[-1] == ("updated", d, d)

    # the hub removes carol because a moderator kicked her from the room
    leaf = next(int(i) for i, node in alice.group(group_id).members()
                if alice.trust.identity_of(node.credential) == c)
    kick = {"reason": "kick", "by": domain("moderator"), "room": "room@mls.example.org"}
    await hub_remove(harness, alice, group_id, leaf, kick)
    for member in (alice, bob, carol, dave):
        await member.sync(group_id)
    before = {m.identity: len(m.events(group_id)) for m in (alice, bob, carol, dave)}
    await bob.commit_pending(group_id)
    await harness.quiesce()
    kicked = (c, HUB_ACTOR, "kick", domain("moderator"), "room@mls.example.org")
    for member in (alice, bob, dave):
        assert seen(member, group_id, before[member.identity]) == [
            ("removed", *kicked), ("updated", b, b)]
    assert seen(carol, group_id, before[c]) == [("removed_self", *kicked)]
    assert "because of a kick by xmpp:moderator@example.org" in \
        carol.events(group_id)[-1].describe()

    # dave leaves the room: the hub's Remove says so
    leaf = next(int(i) for i, node in alice.group(group_id).members()
                if alice.trust.identity_of(node.credential) == d)
    await hub_remove(harness, alice, group_id, leaf, {"reason": "leave", "by": d})
    for member in (alice, bob, dave):
        await member.sync(group_id)
    await alice.commit_pending(group_id)
    await harness.quiesce()
    assert seen(bob, group_id)[-2] == ("left", d, HUB_ACTOR, "leave", d, "")
    assert seen(dave, group_id)[-1] == ("removed_self", d, HUB_ACTOR, "leave", d, "")

    # a member removes another by value; the real hub's kick (no reason given yet)
    await alice.remove_members(group_id, [b])
    await harness.quiesce()
    assert seen(alice, group_id)[-2] == ("removed", b, a)
    assert seen(bob, group_id)[-1] == ("removed_self", b, a)
    assert told == alice.events(group_id)
    assert all(e.group_id == group_id for e in told)
    assert [e.epoch for e in told] == sorted(e.epoch for e in told)


async def test_the_hubs_own_kick_is_attributed_to_the_hub(harness: Harness) -> None:
    alice = await harness.member("alice")
    bob = await harness.member("bob")
    group_id = await alice.create_group(transport="xmpp", room_id="room@mls.example.org")
    await alice.add_members(group_id, [bob.identity])
    await harness.quiesce()
    assert harness.hub is not None
    reply = await harness.hub.handle(Inbound(Op.KICK, domain("moderator"), group_id=group_id,
                                             target=bob.identity))
    assert reply.ok
    await harness.quiesce()
    await alice.commit_pending(group_id)
    await harness.quiesce()
    assert seen(alice, group_id)[-2][:3] == ("removed", bob.identity, HUB_ACTOR)
    assert seen(bob, group_id)[-1][:3] == ("removed_self", bob.identity, HUB_ACTOR)


def test_the_hubs_reason_is_parsed_tolerantly() -> None:
    good = cbor2.dumps({"reason": "kick", "by": "xmpp:m@x", "room": "r@x", "extra": 1})
    assert hub_reason(good) == ("kick", "xmpp:m@x", "r@x")
    assert hub_reason(cbor2.dumps({"reason": "fault"})) == ("fault", "", "")
    for junk in (b"", b"\xff\x00", cbor2.dumps([1, 2]), cbor2.dumps({"reason": 7}),
                 cbor2.dumps({"reason": "x\n\x1b[2J"}), cbor2.dumps({"by": "a" * 10_000}),
                 cbor2.dumps(cbor2.CBORTag(1, 0)), b"\x81" * 1000):
        reason, by, room = hub_reason(junk)
        assert "\n" not in reason and len(by) <= 256 and room == ""
    assert MembershipEvent(b"g", EventKind.LEFT, "xmpp:d@x", HUB_ACTOR, 3, 9, "leave",
                           "xmpp:d@x").describe() == "xmpp:d@x left (removed by hub " \
                                                     "because of a leave)"
