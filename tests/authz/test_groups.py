"""Creating groups and binding them to rooms (docs/SECURITY.md A2-A4), tried as a
stranger, as a member of the room and from the other network. The finding: a stranger
created the group of a configured pair's XMPP room before its owners did."""

from __future__ import annotations

import pytest

from bridge.hub.policy import RoomPolicy
from bridge.hub.store import UnknownGroup
from tests.authz.conftest import MATRIX_ROOM, XMPP_ROOM, AuthzBench, who
from transports.interface import Inbound, Role


def create(bench: AuthzBench, name: str, transport: str = "", room: str = "") -> Inbound:
    """A create-group request for a fresh group of ``name``'s."""
    return bench.new_group(name, transport, room)[1]


async def rooms_of(bench: AuthzBench, request: Inbound) -> list[tuple[str, str]]:
    return [(r.transport, r.room_id) for r in await bench.store.group_rooms(request.group_id)]


async def test_a_group_without_a_room_is_anyones(bench: AuthzBench) -> None:
    """A4: strangers of either network, and members, create room-less groups."""
    for name in ("mallory", "eve", "bob", "carol"):
        request = create(bench, name)
        await bench.accepted(request)
        assert await rooms_of(bench, request) == []


async def test_an_unconfigured_room_is_its_moderators(bench: AuthzBench) -> None:
    """A3: only a moderator of the room, on the requester's own network."""
    room = "adhoc@mls.example.org"
    bench.role("xmpp", room, "bob", Role.MEMBER)
    bench.role("xmpp", room, "alice", Role.MODERATOR)
    bench.role("matrix", "!adhoc:example.org", "carol", Role.MODERATOR)
    await bench.refused(create(bench, "mallory", "xmpp", room), "not-moderator")
    await bench.refused(create(bench, "bob", "xmpp", room), "not-moderator")
    # a Matrix moderator may not bind an XMPP room (nor the other way round)
    await bench.refused(create(bench, "carol", "xmpp", room), "forbidden")
    await bench.refused(create(bench, "eve", "xmpp", room), "forbidden")
    await bench.refused(create(bench, "alice", "matrix", "!adhoc:example.org"), "forbidden")
    request = create(bench, "alice", "xmpp", room)
    await bench.accepted(request)
    assert await rooms_of(bench, request) == [("xmpp", room)]
    matrix = create(bench, "carol", "matrix", "!adhoc:example.org")
    await bench.accepted(matrix)
    assert await rooms_of(bench, matrix) == [("matrix", "!adhoc:example.org")]
    # the room carries a group now: another moderator cannot take it over, and the
    # refused group is not registered either
    bench.role("xmpp", room, "bob", Role.ADMIN)
    taken = create(bench, "bob", "xmpp", room)
    await bench.refused(taken, "conflict")
    with pytest.raises(UnknownGroup):
        await bench.store.get_group(taken.group_id)


async def test_a_configured_pair_is_the_configurations(bench: AuthzBench) -> None:
    """A2: a configured pair's group is created by a moderator of one of its rooms on
    the requester's own network (the configured admins included); the first comer
    gets nothing -- not even as an owner of an XMPP room nobody entered yet."""
    pair = (("xmpp", "pair@mls.example.org"), ("matrix", "!pair:example.org"))
    bench.hub.authz.configure(RoomPolicy(pair, admins=frozenset({who("alice")})))
    bench.role("xmpp", "pair@mls.example.org", "mallory", Role.MEMBER)
    bench.role("matrix", "!pair:example.org", "carol", Role.MODERATOR)
    for name, (transport, room) in (("mallory", pair[0]), ("eve", pair[0]),
                                    ("mallory", pair[1]), ("eve", pair[1]),
                                    ("bob", pair[0])):
        await bench.refused(create(bench, name, transport, room), "not-moderator")
    # carol moderates the pair's Matrix room: she may create its group, even naming
    # its XMPP room (the bridge attaches the other room; tests/authz_servers)
    request = create(bench, "carol", *pair[0])
    await bench.accepted(request)
    assert await rooms_of(bench, request) == [pair[0]]
    # the configured admin may create it (here: the room is taken already)
    await bench.refused(create(bench, "alice", *pair[0]), "conflict")
    second = create(bench, "alice", *pair[1])
    await bench.accepted(second)


async def test_attached_rooms_of_the_bench_group_are_not_taken_over(bench: AuthzBench
                                                                    ) -> None:
    """A room that carries a group is never bound to another one."""
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM),
                       admins=frozenset({who("alice"), who("carol")}))
    await bench.refused(create(bench, "alice", "xmpp", XMPP_ROOM), "conflict")
    await bench.refused(create(bench, "carol", "matrix", MATRIX_ROOM), "conflict")
    assert sorted(r.room_id for r in await bench.store.group_rooms(bench.group_id)) == [
        MATRIX_ROOM, XMPP_ROOM]
