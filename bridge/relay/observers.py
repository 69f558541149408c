"""Legacy room activity into the relay: the two transports' room observers
(:class:`transports.xmpp.component.RoomObserver`,
:class:`transports.matrix.bot.RoomObserver`) for relayed rooms. They only enqueue, per
legacy user: the relay's worker does the MLS work, each user's in order
(:class:`LegacyInput`). The XMPP observer also answers, at once, which nicknames a room
reserves (:meth:`LegacyInput.reserved`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from slixmpp import JID

from bridge.relay.files import LegacyFile, legacy_file
from bridge.relay.mapping import Legacy, from_matrix
from transports.matrix import events as matrix_events
from transports.matrix import namespace as matrix_ns
from transports.xmpp import namespace as xmpp_ns
from transports.xmpp.markup import Markup
from transports.xmpp.nicks import Reservation

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

    def relays(self, transport: str, room: str) -> bool:
        """Whether the room is relayed now."""
        ...

    async def legacy_event(self, transport: str, room: str, identity: str, event: Legacy,
                           occupant: str = "") -> None: ...

    def reserved(self, room: str) -> Reservation:
        """The nicknames the XMPP room keeps (answered at once, from memory)."""
        ...


class XmppObserver:
    """:class:`transports.xmpp.component.RoomObserver` for the relay (enqueue only)."""

    def __init__(self, relay: LegacyInput) -> None:
        self.relay = relay

    async def occupant_joined(self, room: str, occupant: str, nick: str,
                              mls_client: bool) -> None:
        self.relay.queue(xmpp_identity(occupant),
                         lambda: self.relay.xmpp_joined(room, occupant, mls_client),
                         f"join of {occupant} in {room}")

    async def plain_message(self, room: str, occupant: str, nick: str, body: str,
                            markup: Markup) -> None:
        identity = xmpp_identity(occupant)
        event = Legacy(markup.id, body, markup.replaces, markup.reply_to, markup.retracts,
                       markup.reacts_to, markup.reactions, whole_set=True,
                       file=shared_file(body, markup))
        self.relay.queue(identity, lambda: self.relay.legacy_event(XMPP, room, identity,
                                                                   event, occupant),
                         f"message from {identity} in {room}")

    def reserved(self, room: str) -> Reservation:
        return self.relay.reserved(room)


class MatrixObserver:
    """:class:`transports.matrix.bot.RoomObserver` for the relay (enqueue only)."""

    def __init__(self, relay: LegacyInput) -> None:
        self.relay = relay

    async def member_joined(self, room_id: str, user_id: str) -> None:
        self.relay.queue(matrix_events.user_uri(user_id),
                         lambda: self.relay.matrix_joined(room_id, user_id),
                         f"join of {user_id} in {room_id}")

    async def plain_message(self, room_id: str, user_id: str, event_id: str,
                            event_type: str, content: Mapping[str, Any]) -> None:
        event = from_matrix(event_id, event_type, content)
        if event is None:
            return
        identity = matrix_events.user_uri(user_id)
        self.relay.queue(identity, lambda: self.relay.legacy_event(MATRIX, room_id,
                                                                   identity, event),
                         f"message {event_id} from {identity} in {room_id}")

    def relays(self, room_id: str) -> bool:
        return self.relay.relays(MATRIX, room_id)


def shared_file(body: str, markup: Markup) -> LegacyFile | None:
    """The file an XMPP message shares: XEP-0447 ``<file-sharing/>``, or an XEP-0066
    OOB URL that is the whole body (or the body is empty), as Conversations, Gajim and
    Dino send after an XEP-0363 upload. An OOB URL beside other text is a link: the
    text is relayed as it is."""
    if not markup.url or markup.replaces or markup.retracts:
        return None
    info = markup.file
    if info is None:
        return legacy_file(markup.url) if body.strip() in ("", markup.url) else None
    return legacy_file(markup.url, info.name, info.media_type, info.size, info.sha256)


def xmpp_identity(occupant: str) -> str:
    """The identity URI of an XMPP occupant (its bare JID)."""
    return xmpp_ns.URI_SCHEME + JID(occupant).bare


__all__ = ["MATRIX", "XMPP", "Job", "LegacyInput", "MatrixObserver", "XmppObserver",
           "shared_file", "xmpp_identity"]
