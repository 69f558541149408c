"""Room commands at run time: bridge, unbridge, relay on|off, status (issue 20).

People give them on their own network -- ``!mls <command>`` in a Matrix room (the bot,
:mod:`transports.matrix.bot`), or the XEP-0050 ad-hoc commands of the XMPP component
(:mod:`transports.xmpp.adhoc`) -- and :class:`RoomCommandService` (the
:class:`transports.interface.RoomCommands` of both) carries them out on the
:class:`bridge.app.services.bridge.BridgeService`. Who may is decided by the hub's one
authorization point (:meth:`bridge.hub.authz.Authorizer.check_room_command`,
docs/SECURITY.md A5, A22):

* ``bridge <other room>``: a moderator of the room on their own network asks; the pair
  is made when a moderator of the other room asks for the same pair from the other
  network within :data:`OFFER_TTL` seconds (no identity holds a role in a room of
  another network, so this is how both rooms' moderators decide). Pairs are persisted
  in the store and loaded at start beside the configuration's (which win on conflict);
* ``unbridge``: a moderator of either room; the room on the unbridging moderator's
  network leaves the group (which carries on in the other room), relay mode ends;
* ``relay on|off``: a moderator of either room; announced in both rooms;
* ``status``: a member of either room, or an occupant of the XMPP room.

The configuration's pairs are not changed by commands. Every change is logged (who,
which rooms); offers waiting for the other side are kept in memory only (at most
:data:`OFFERS_KEPT`). A person's commands beyond :data:`COMMAND_RATE` per second
(burst :data:`COMMAND_BURST`) are ignored, unanswered in a Matrix room.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slixmpp import JID

from bridge.errors import BridgeConfigError, Rejection, StoreError
from bridge.hub import Hub
from bridge.identities import display
from transports.fairness import RateLimiter
from transports.interface import CommandReply, Network
from transports.xmpp.component import MLSComponent

log = logging.getLogger(__name__)

OFFER_TTL = 600.0  # seconds a bridge request waits for the other room's moderator
OFFERS_KEPT = 256  # bridge requests waiting, in all (the oldest dropped)
COMMAND_RATE, COMMAND_BURST = 0.2, 5  # commands per second per person (beyond: ignored)
HELP = ("Commands: !mls help | status | bridge <room@component> | unbridge | relay on|off. "
        "On XMPP the same as ad-hoc commands of the component (bridge, unbridge, relay, "
        "status). Bridging takes a moderator of each room: one asks, the other confirms "
        "from their room; unbridge and relay: a moderator of either room.")


class Pair(Protocol):
    """A room pair (:class:`bridge.app.services.bridge.RoomPair`)."""

    @property
    def xmpp_room(self) -> str: ...

    @property
    def matrix_room(self) -> str: ...

    @property
    def relay(self) -> bool: ...


class PairHost(Protocol):
    """What the commands need of the bridge service."""

    hub: Hub
    component: MLSComponent | None
    pairs: dict[tuple[str, str], Any]

    def configured(self, pair: Any) -> bool: ...

    def new_pair(self, xmpp_room: str, matrix_room: str) -> Any: ...

    async def bridge_pair(self, pair: Any, by: str) -> None: ...

    async def unbridge_pair(self, pair: Any, by: str, keep: str) -> None: ...

    async def relay_pair(self, pair: Any, on: bool, by: str) -> Any: ...

    async def relayed_users(self, pair: Any) -> int: ...


@dataclass(frozen=True, slots=True)
class _Offer:
    network: str
    actor: str
    at: float


class RoomCommandService:
    """:class:`transports.interface.RoomCommands` for the bridge (module docstring)."""

    def __init__(self, host: PairHost) -> None:
        self.host = host
        self.offers: dict[tuple[str, str], _Offer] = {}  # (xmpp room, matrix room)
        self._rate = RateLimiter(COMMAND_RATE, COMMAND_BURST)

    async def room_command(self, network: str, actor: str, room: str,
                           words: Sequence[str]) -> CommandReply:
        word = words[0].lower() if words else "help"
        if not self._rate.allow(actor):  # each answer costs a message in the room
            log.info("room commands of %s over the rate: ignored", actor,
                     extra={"flood_key": f"commands|{actor}"})
            return CommandReply(False, "")
        handlers = {"status": self._status, "bridge": self._bridge,
                    "unbridge": self._unbridge, "relay": self._relay}
        if word == "help":
            return CommandReply(True, HELP)
        handler = handlers.get(word)
        if handler is None:
            return CommandReply(False, f"Unknown command {word!r}. {HELP}")
        try:
            return await handler(network, actor, room, list(words[1:]))
        except Rejection as exc:
            log.info("room command %s by %s about %s refused: %s", word, actor, room,
                     exc.code)
            return CommandReply(False, f"Refused ({exc.code}): {exc}")
        except (BridgeConfigError, StoreError) as exc:
            log.warning("room command %s by %s about %s failed: %s", word, actor, room, exc)
            return CommandReply(False, f"Not done: {exc}")

    def _pair(self, network: str, room: str) -> Any:
        return self.host.pairs.get((network, room))

    def _occupant(self, actor: str, room: str) -> bool:
        component = self.host.component
        bare = actor.removeprefix("xmpp:")
        return component is not None and any(
            JID(o).bare == bare for o in component.occupants.get(room, {}))

    async def _status(self, network: str, actor: str, room: str, _: list[str]
                      ) -> CommandReply:
        pair = self._pair(network, room)
        rooms = [(network, room)] if pair is None else _rooms(pair)
        await self.host.hub.authz.check_room_command(
            "status", actor, rooms, present=network == Network.XMPP and
            self._occupant(actor, room))
        if pair is None:
            return CommandReply(True, f"{room} is not bridged.")
        origin = "the configuration" if self.host.configured(pair) else "a run-time command"
        relayed = await self.host.relayed_users(pair)
        mode = (f"relay mode ON: the bridge decrypts for {relayed} relayed user(s); "
                "end-to-end encryption ends at the bridge") if pair.relay else \
            "end to end (no relay)"
        return CommandReply(True, f"{pair.xmpp_room} is bridged with {pair.matrix_room} "
                                  f"(by {origin}); {mode}.")

    async def _bridge(self, network: str, actor: str, room: str, args: list[str]
                      ) -> CommandReply:
        if len(args) != 1:
            return CommandReply(False, "Usage: bridge <the other network's room>")
        xmpp_room, matrix_room = (args[0], room) if network == Network.MATRIX \
            else (room, args[0])
        problem = self._check_rooms(xmpp_room, matrix_room)
        if problem:
            return CommandReply(False, problem)
        await self.host.hub.authz.check_room_command("bridge", actor, [(network, room)])
        key, other = (xmpp_room, matrix_room), _other(network)
        offer, now = self.offers.get(key), time.monotonic()
        if offer is None or offer.network != other or now - offer.at > OFFER_TTL:
            self._remember(key, _Offer(network, actor, now))
            log.info("bridge of %s and %s asked by %s; waiting for the other room",
                     xmpp_room, matrix_room, actor)
            return CommandReply(True, "Asked. A moderator of "
                                f"{xmpp_room if other == Network.XMPP else matrix_room} "
                                f"must now confirm: {_how(other, xmpp_room, matrix_room)}")
        del self.offers[key]
        await self.host.bridge_pair(self.host.new_pair(xmpp_room, matrix_room),
                                    f"{offer.actor} and {actor}")
        return CommandReply(True, f"Bridged {xmpp_room} with {matrix_room} (end to end; "
                                  f"relay mode off). Asked by {display(offer.actor)}, "
                                  f"confirmed by {display(actor)}.")

    def _check_rooms(self, xmpp_room: str, matrix_room: str) -> str:
        component = self.host.component
        room = JID(xmpp_room) if "@" in xmpp_room else None
        if room is None or room.resource or (component is not None and
                                             room.domain != component.config.jid):
            return f"Not a room of this bridge's XMPP component: {xmpp_room!r}"
        if not matrix_room.startswith("!") or len(matrix_room) < 2 or " " in matrix_room:
            return f"Not a Matrix room id (!...): {matrix_room!r}"
        for transport, name in ((Network.XMPP, xmpp_room), (Network.MATRIX, matrix_room)):
            pair = self._pair(transport, name)
            if pair is not None:
                return f"{name} is bridged already ({pair.xmpp_room} / {pair.matrix_room})."
        return ""

    def _remember(self, key: tuple[str, str], offer: _Offer) -> None:
        self.offers.pop(key, None)
        self.offers[key] = offer
        while len(self.offers) > OFFERS_KEPT:
            del self.offers[next(iter(self.offers))]

    async def _changeable(self, command: str, network: str, actor: str, room: str
                          ) -> tuple[Any, str]:
        """The run-time pair of ``room`` and "" -- or None and why not; the actor
        authorized for ``command``."""
        pair = self._pair(network, room)
        if pair is None:
            return None, f"{room} is not bridged."
        await self.host.hub.authz.check_room_command(command, actor, _rooms(pair))
        if self.host.configured(pair):
            return None, ("This pair is in the bridge's configuration file: the "
                          "operator changes it there.")
        return pair, ""

    async def _unbridge(self, network: str, actor: str, room: str, _: list[str]
                        ) -> CommandReply:
        pair, why = await self._changeable("unbridge", network, actor, room)
        if pair is None:
            return CommandReply(False, why)
        await self.host.unbridge_pair(pair, actor, keep=_other(network))
        return CommandReply(True, f"Unbridged: {room} no longer carries the group of "
                                  f"{pair.room(_other(network))}.")

    async def _relay(self, network: str, actor: str, room: str, args: list[str]
                     ) -> CommandReply:
        if args not in (["on"], ["off"]):
            return CommandReply(False, "Usage: relay on|off")
        pair, why = await self._changeable("relay", network, actor, room)
        if pair is None:
            return CommandReply(False, why)
        on = args == ["on"]
        if pair.relay == on:
            return CommandReply(True, f"Relay mode is {args[0]} already.")
        await self.host.relay_pair(pair, on, actor)
        return CommandReply(True, f"Relay mode {args[0]} for {pair.xmpp_room} / "
                                  f"{pair.matrix_room}; both rooms are told.")


def _rooms(pair: Pair) -> list[tuple[str, str]]:
    return [(Network.XMPP, pair.xmpp_room), (Network.MATRIX, pair.matrix_room)]


def _other(network: str) -> str:
    return Network.MATRIX if network == Network.XMPP else Network.XMPP


def _how(network: str, xmpp_room: str, matrix_room: str) -> str:
    if network == Network.MATRIX:
        return f"in {matrix_room}, say: !mls bridge {xmpp_room}"
    return (f"the ad-hoc command 'bridge' of {JID(xmpp_room).domain} with room "
            f"{xmpp_room} and matrix_room {matrix_room}")


__all__ = ["HELP", "OFFER_TTL", "PairHost", "RoomCommandService"]
