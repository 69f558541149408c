"""Membership events (bridge/member/events.py): every change of a group's membership,
with who, by whom and how, on every member -- added, joined by external commit, removed
by a member or by the hub (with the reason its Remove proposal signs: a kick, by whom,
in which room), left, updated, and our own removal."""

from __future__ import annotations

from bridge.member import Member
from bridge.member.events import HUB_ACTOR, EventKind, MembershipEvent
from tests.bridge.conftest import Harness, domain
from transports.interface import Membership, NetworkEvent

ROOM = "room@mls.example.org"


def seen(member: Member, group_id: bytes, since: int = 0) -> list[tuple[str, ...]]:
    """(kind, subject, actor[, reason, by, room]) of the member's events from ``since``."""
    return [(e.kind.value, e.subject, e.actor) + ((e.reason, e.initiator, e.room)
                                                  if e.reason else ())
            for e in member.events(group_id)[since:]]


def counts(*members: Member, group_id: bytes) -> dict[str, int]:
    return {m.identity: len(m.events(group_id)) for m in members}


async def test_every_membership_change_raises_an_event(harness: Harness) -> None:
    told: list[MembershipEvent] = []
    alice = await harness.member("alice", on_event=told.append)
    bob = await harness.member("bob")
    carol = await harness.member("carol")
    dave = await harness.member("dave")
    a, b, c, d = alice.identity, bob.identity, carol.identity, dave.identity
    group_id = await alice.create_group(transport="xmpp", room_id=harness.room(ROOM, alice))

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

    # a moderator kicks carol from the room: the hub proposes her Remove, saying so
    moderator = domain("moderator")
    assert harness.hub is not None
    kicked = await harness.hub.network_event(NetworkEvent(
        "xmpp", ROOM, c, moderator, Membership.JOINED, Membership.NONE,
        actor_moderator=True))
    assert kicked.ok
    await harness.quiesce()
    before = counts(alice, bob, carol, dave, group_id=group_id)
    await bob.commit_pending(group_id)
    await harness.quiesce()
    why = (c, HUB_ACTOR, "kick", moderator, f"xmpp:{ROOM}")
    for member in (alice, bob, dave):
        assert seen(member, group_id, before[member.identity]) == [
            ("removed", *why), ("updated", b, b)]
    assert seen(carol, group_id, before[c]) == [("removed_self", *why)]
    assert carol.events(group_id)[-1].describe() == (
        f"{c} (we) were removed by hub because of a kick by {moderator} in xmpp:{ROOM}")

    # dave leaves (his own leave request): the hub's Remove says he left
    await dave.leave(group_id)
    await harness.quiesce()
    before = counts(alice, bob, dave, group_id=group_id)
    await alice.commit_pending(group_id)
    await harness.quiesce()
    assert seen(bob, group_id, before[b])[0][:5] == ("left", d, HUB_ACTOR, "leave", d)
    assert seen(dave, group_id, before[d])[0][:5] == ("removed_self", d, HUB_ACTOR,
                                                      "leave", d)

    # a member removes another by value (alice administers the room)
    await alice.remove_members(group_id, [b])
    await harness.quiesce()
    assert seen(alice, group_id)[-2:] == [("removed", b, a), ("updated", a, a)]
    assert seen(bob, group_id)[-1] == ("removed_self", b, a)
    assert told == alice.events(group_id)
    assert all(e.group_id == group_id for e in told)
    assert [e.epoch for e in told] == sorted(e.epoch for e in told)


def test_events_read_as_sentences() -> None:
    left = MembershipEvent(b"g", EventKind.LEFT, "xmpp:d@x", HUB_ACTOR, 3, 9, "leave",
                           "xmpp:d@x")
    assert left.describe() == "xmpp:d@x left (removed by hub because of a leave)"
    joined = MembershipEvent(b"g", EventKind.JOINED, "xmpp:c@x", "xmpp:c@x", 4, 10,
                             resync=True)
    assert joined.describe() == "xmpp:c@x joined by external commit (resync of its own leaf)"
    added = MembershipEvent(b"g", EventKind.ADDED, "xmpp:b@x", "xmpp:a@x", 1, 1)
    assert added.describe() == "xmpp:b@x was added by xmpp:a@x"
