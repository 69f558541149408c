"""Legacy room activity into the relay: the two transports' room observers
(:class:`transports.xmpp.component.RoomObserver`,
:class:`transports.matrix.bot.RoomObserver`) for relayed rooms. They only enqueue, per
legacy user: the relay's worker does the MLS work, each user's in order
(:class:`LegacyInput`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from slixmpp import JID

from transports.matrix import events as matrix_events
from transports.matrix import namespace as matrix_ns
from transports.xmpp import namespace as xmpp_ns

XMPP = xmpp_ns.TRANSPORT_NAME
MATRIX = matrix_ns.TRANSPORT_NAME

Job = Callable[[], Awaitable[None]]


class LegacyInput(Protocol):
    """What the observers hand to the relay (:class:`bridge.relay.relay.Relay`)."""

    def queue(self, identity: str, job: Job, what: str = "") -> None:
        """Run ``job`` for the legacy user ``identity`` on the relay's input worker,
        after what that user queued already (within the user's rate and queue bound;
        beyond them the job is dropped and counted); ``what`` names it in logs (who and
        where, never a message's text)."""
        ...

    async def xmpp_joined(self, room: str, occupant: str, mls_client: bool) -> None: ...

    async def matrix_joined(self, room_id: str, user_id: str) -> None: ...

    async def legacy_message(self, transport: str, room: str, identity: str, text: str,
                             occupant: str = "") -> None: ...


class XmppObserver:
    """:class:`transports.xmpp.component.RoomObserver` for the relay (enqueue only)."""

    def __init__(self, relay: LegacyInput) -> None:
        self.relay = relay

    async def occupant_joined(self, room: str, occupant: str, nick: str,
                              mls_client: bool) -> None:
        self.relay.queue(xmpp_identity(occupant),
                         lambda: self.relay.xmpp_joined(room, occupant, mls_client),
                         f"join of {occupant} in {room}")

    async def plain_message(self, room: str, occupant: str, nick: str, body: str) -> None:
        identity = xmpp_identity(occupant)
        self.relay.queue(identity, lambda: self.relay.legacy_message(XMPP, room, identity,
                                                                     body, occupant),
                         f"message from {identity} in {room}")


class MatrixObserver:
    """:class:`transports.matrix.bot.RoomObserver` for the relay (enqueue only)."""

    def __init__(self, relay: LegacyInput) -> None:
        self.relay = relay

    async def member_joined(self, room_id: str, user_id: str) -> None:
        self.relay.queue(matrix_events.user_uri(user_id),
                         lambda: self.relay.matrix_joined(room_id, user_id),
                         f"join of {user_id} in {room_id}")

    async def plain_message(self, room_id: str, user_id: str, event_id: str,
                            body: str) -> None:
        identity = matrix_events.user_uri(user_id)
        self.relay.queue(identity, lambda: self.relay.legacy_message(MATRIX, room_id,
                                                                     identity, body),
                         f"message {event_id} from {identity} in {room_id}")


def xmpp_identity(occupant: str) -> str:
    """The identity URI of an XMPP occupant (its bare JID)."""
    return xmpp_ns.URI_SCHEME + JID(occupant).bare


__all__ = ["MATRIX", "XMPP", "Job", "LegacyInput", "MatrixObserver", "XmppObserver",
           "xmpp_identity"]
