"""Room roles on Matrix, from the room state: who is in a room and with what power.

The hub asks each network what an identity is in a room (a
:class:`transports.interface.RoomDirectory`); on Matrix the answer comes from the room
state the homeserver holds (Matrix client-server API, ``m.room.member`` and
``m.room.power_levels``, and the room version's rules on creators):

* MEMBER: membership ``join`` or ``invite``;
* MODERATOR: a member whose power level is at least the room's ``kick`` level
  (default 50) -- the power that lets it remove people on Matrix;
* ADMIN: a member whose power level is at least the level needed to change the power
  levels (``events["m.room.power_levels"]``, else ``state_default``, default 50).

Power levels: ``users[user]``, else ``users_default`` (0). A room without an
``m.room.power_levels`` event gives its creator 100. From room version 12 the creators
(the ``m.room.create`` sender and ``additional_creators``) outrank every level.

:class:`RoomStates` caches one :class:`RoomState` per room; the bot drops a room's
entry whenever a state event of that room passes by (membership, power levels...).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transports.interface import Membership, Role

MEMBER_EVENT = "m.room.member"
POWER_EVENT = "m.room.power_levels"
CREATE_EVENT = "m.room.create"


def _level(value: object, default: float) -> float:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True, slots=True)
class RoomState:
    """The parts of one room's state that decide roles."""

    memberships: Mapping[str, str] = field(default_factory=dict)
    power: Mapping[str, Any] | None = None  # the m.room.power_levels content, if any
    creators: frozenset[str] = frozenset()
    creators_outrank: bool = False  # room version 12 and later

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> RoomState:
        memberships: dict[str, str] = {}
        power: Mapping[str, Any] | None = None
        creators: set[str] = set()
        outrank = False
        for event in events:
            kind, content = event.get("type"), event.get("content")
            if not isinstance(content, Mapping):
                continue
            if kind == MEMBER_EVENT and isinstance(event.get("state_key"), str):
                memberships[event["state_key"]] = str(content.get("membership", ""))
            elif kind == POWER_EVENT and event.get("state_key") == "":
                power = content
            elif kind == CREATE_EVENT and event.get("state_key") == "":
                creators.add(str(content.get("creator") or event.get("sender") or ""))
                extra = content.get("additional_creators")
                if isinstance(extra, list):
                    creators.update(str(c) for c in extra if isinstance(c, str))
                version = str(content.get("room_version", "1"))
                outrank = version.isdigit() and int(version) >= 12
        return cls(memberships, power, frozenset(creators - {""}), outrank)

    def membership(self, user_id: str) -> Membership:
        value = self.memberships.get(user_id, "")
        return Membership(value) if value in ("join", "invite", "ban") else Membership.NONE

    def power_of(self, user_id: str) -> float:
        if self.creators_outrank and user_id in self.creators:
            return math.inf
        if self.power is None:
            return 100.0 if user_id in self.creators else 0.0
        users = self.power.get("users")
        default = _level(self.power.get("users_default"), 0.0)
        return _level(users.get(user_id), default) if isinstance(users, Mapping) else default

    def kick_level(self) -> float:
        return 50.0 if self.power is None else _level(self.power.get("kick"), 50.0)

    def admin_level(self) -> float:
        if self.power is None:
            return 100.0
        state_default = _level(self.power.get("state_default"), 50.0)
        events = self.power.get("events")
        return _level(events.get(POWER_EVENT), state_default) \
            if isinstance(events, Mapping) else state_default

    def role(self, user_id: str) -> Role:
        if not self.membership(user_id).in_room:
            return Role.NONE
        power = self.power_of(user_id)
        if power >= self.admin_level():
            return Role.ADMIN
        return Role.MODERATOR if power >= self.kick_level() else Role.MEMBER


Fetch = Callable[[str], Awaitable[list[Mapping[str, Any]]]]


class RoomStates:
    """One :class:`RoomState` per room, fetched on first use, dropped on change."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._cache: dict[str, RoomState] = {}

    async def get(self, room_id: str) -> RoomState:
        state = self._cache.get(room_id)
        if state is None:
            state = self._cache[room_id] = RoomState.from_events(await self._fetch(room_id))
        return state

    def forget(self, room_id: str) -> None:
        self._cache.pop(room_id, None)


__all__ = ["RoomState", "RoomStates"]
