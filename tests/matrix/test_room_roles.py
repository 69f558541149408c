"""Room roles on Matrix from the room state (transports/matrix/rooms.py): membership
join/invite makes a member, the kick level a moderator, the power to change the power
levels an admin; without a power-levels event the creator has 100; from room version
12 the creators outrank every level."""

from __future__ import annotations

from typing import Any

from transports.interface import Membership, Role
from transports.matrix.rooms import RoomState


def member(user: str, membership: str) -> dict[str, Any]:
    return {"type": "m.room.member", "state_key": user, "sender": user,
            "content": {"membership": membership}}


def create(creator: str, version: str = "10", extra: tuple[str, ...] = ()
           ) -> dict[str, Any]:
    content: dict[str, Any] = {"room_version": version}
    if extra:
        content["additional_creators"] = list(extra)
    return {"type": "m.room.create", "state_key": "", "sender": creator, "content": content}


def powers(**content: Any) -> dict[str, Any]:
    return {"type": "m.room.power_levels", "state_key": "", "sender": "@a:x",
            "content": content}


def test_roles_from_membership_and_power_levels() -> None:
    state = RoomState.from_events([
        create("@a:x"), member("@a:x", "join"), member("@m:x", "join"),
        member("@j:x", "join"), member("@i:x", "invite"), member("@l:x", "leave"),
        member("@b:x", "ban"), member("@p:x", "leave"),
        powers(users={"@a:x": 100, "@m:x": 40, "@p:x": 100}, users_default=0, kick=30,
               state_default=50, events={"m.room.power_levels": 100})])
    assert state.role("@a:x") == Role.ADMIN
    assert state.role("@m:x") == Role.MODERATOR  # 40 >= kick 30, < 100
    assert (state.role("@j:x"), state.role("@i:x")) == (Role.MEMBER, Role.MEMBER)
    # power without membership is nothing: left, banned, never there
    assert [state.role(u) for u in ("@l:x", "@b:x", "@p:x", "@x:x")] == [Role.NONE] * 4
    assert state.membership("@b:x") == Membership.BANNED
    assert state.membership("@i:x").in_room and not state.membership("@l:x").in_room


def test_defaults_without_power_levels_and_for_missing_keys() -> None:
    state = RoomState.from_events([create("@a:x"), member("@a:x", "join"),
                                   member("@u:x", "join")])
    assert (state.role("@a:x"), state.role("@u:x")) == (Role.ADMIN, Role.MEMBER)
    state = RoomState.from_events([create("@a:x"), member("@u:x", "join"),
                                   powers(users_default=50)])  # kick 50, state 50
    assert state.role("@u:x") == Role.ADMIN
    state = RoomState.from_events([member("@u:x", "join"),
                                   powers(users={"@u:x": "100"}, kick=True)])
    assert state.role("@u:x") == Role.MEMBER  # malformed levels count as absent


def test_creators_outrank_levels_from_room_version_12() -> None:
    events = [create("@a:x", "12", ("@c:x",)), member("@a:x", "join"),
              member("@c:x", "join"), powers(users={}, kick=50)]
    state = RoomState.from_events(events)
    assert state.role("@a:x") == state.role("@c:x") == Role.ADMIN
    older = RoomState.from_events([create("@a:x", "11"), *events[1:]])
    assert older.role("@a:x") == Role.MEMBER  # levels rule before version 12
