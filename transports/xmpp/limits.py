"""What the component keeps for its users, bounded (docs/SECURITY.md, "Limits").

Anyone may enter a component room, create an ad-hoc one (XEP-0045 §10.1: its first
occupant owns it, persistently), and drop out without ``<leave/>`` (a departure that
waits ``leave_grace`` seconds). :class:`RoomLimits` bounds each per bare JID:

* presences are handled at most :data:`PRESENCE_RATE` per second (:data:`PRESENCE_BURST`
  at once) per bare JID -- each entry is written to the store -- except ``unavailable``
  ones, which only shrink what is kept; the others are ignored (counted);
* one bare JID occupies at most :data:`ROOMS_PER_USER` rooms at once, and owns at most
  :data:`ROOMS_CREATED` rooms it created; an entry beyond either is refused with the
  presence error ``resource-constraint`` (XEP-0045 §7.2.9 lets a service refuse
  entry; the condition says why);
* at most :data:`LEAVES_PER_USER` implicit departures of one bare JID wait out their
  grace; beyond that one is reported at once (what the grace would have come to).

Held Welcomes are bounded in :mod:`transports.xmpp.welcomes`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from slixmpp import JID

from transports.fairness import Clock, LimitObserver, NullObserver, RateLimiter
from transports.xmpp import namespace as ns
from transports.xmpp.rooms import Affiliations

PRESENCE_RATE = 5.0
PRESENCE_BURST = 30
ROOMS_PER_USER = 64
ROOMS_CREATED = 32
LEAVES_PER_USER = 64


class RoomLimits:
    """The component's per-user bounds on rooms (see the module docstring)."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.observer: LimitObserver = NullObserver()
        self._presences = RateLimiter(PRESENCE_RATE, PRESENCE_BURST, clock=clock)

    def presence(self, bare: str, kind: str) -> bool:
        """Whether to handle a presence of ``bare`` now (``unavailable``: always)."""
        if kind == "unavailable" or self._presences.allow(bare):
            return True
        self.observer.dropped("xmpp-presence", "rate")
        return False

    def may_enter(self, occupants: Mapping[str, Mapping[str, str]], room: str, bare: str,
                  affiliations: Affiliations) -> bool:
        """Whether ``bare`` may enter ``room`` (already in it: yes): within the rooms
        it may occupy, and, if its entry creates the room, within the rooms it may own
        by creation."""
        if any(JID(o).bare == bare for o in occupants.get(room, {})):
            return True
        rooms = sum(1 for members in occupants.values()
                    if any(JID(o).bare == bare for o in members))
        refused = rooms >= ROOMS_PER_USER or (
            affiliations.creates(room) and affiliations.owned(ns.URI_SCHEME + bare)
            >= ROOMS_CREATED)
        if refused:
            self.observer.dropped("xmpp-rooms", "quota")
        return not refused

    def may_wait(self, pending: Iterable[tuple[str, str]], bare: str) -> bool:
        """Whether another implicit departure of ``bare`` may wait out its grace."""
        if sum(1 for _, who in pending if who == bare) < LEAVES_PER_USER:
            return True
        self.observer.dropped("xmpp-leaves", "quota")
        return False


__all__ = ["LEAVES_PER_USER", "PRESENCE_BURST", "PRESENCE_RATE", "ROOMS_CREATED",
           "ROOMS_PER_USER", "RoomLimits"]
