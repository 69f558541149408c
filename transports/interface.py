"""The interface between the bridge and its transports (XMPP, Matrix, in-memory).

Transports never import ``mls``: everything that crosses this interface is bytes,
strings and integers (and tuples of them). MLS messages are opaque ``bytes`` in their
RFC 9420 wire form (``MLSMessage``).

Two directions, one pair of value types:

* :class:`Inbound` -- a request to the hub: a member submits a commit bundle, sends an
  application message, publishes or claims a KeyPackage, asks for the log, reports a
  commit it could not process...; its ``sender`` and ``network`` are set by the
  transport from what the network authenticated, never from the request's content.
* :class:`Outbound` -- what the hub sends: the reply to a request (``kind="reply"``)
  and deliveries (commits, proposals, application messages in sequence order, and
  Welcomes to new members).

A room membership change that a hub-side transport observes (someone left, was kicked
or banned) is not a request: it is a :class:`NetworkEvent`, handed to the hub through
its own entry point, :meth:`HubService.network_event`. Clients cannot send one.

Seven roles, as :class:`typing.Protocol` classes:

* :class:`HubService` -- implemented by :class:`bridge.hub.Hub` (and by
  :class:`bridge.app.services.bridge.BridgeService`, one hub for both networks); the
  hub-side transport (an XMPP component, a Matrix bot) calls ``handle`` for every
  request it receives, with ``sender`` set to the network-authenticated identity (a URI
  such as ``xmpp:alice@example.org``), and sends the returned reply back to the
  requester.
* :class:`RoomDirectory` -- implemented by each hub-side transport: the :class:`Role`
  an identity holds in one of its rooms (Matrix membership and power levels, XMPP
  affiliations), which the hub's authorization asks (``docs/SECURITY.md``);
* :class:`RoomCommands` -- implemented by the bridge: room administration commands
  (bridge, unbridge, relay, status) that a hub-side transport received, answered with a
  :class:`CommandReply`;
* :class:`MediaSource` -- implemented by a hub-side transport whose network keeps
  files behind a login (Matrix): fetch one for a member of the other network;
* :class:`Deliverer` -- implemented by the hub-side transport: carry an
  :class:`Outbound` delivery to each of its ``recipients`` (the groupchat messages /
  room events of the wire binding), preserving the order of calls per recipient
  (:class:`bridge.app.services.bridge.RoutingDeliverer` routes among several);
  a :class:`BatchDeliverer` also takes several at once.
* :class:`HubLink` -- implemented by the client-side transport (XMPP client plugin,
  Matrix helper): send one request to the hub and return its reply; raise
  :class:`transports.errors.LinkError` when the reply cannot be obtained.
* :class:`DeliverySink` -- implemented by :class:`bridge.member.Member`; the client-side
  transport calls ``deliver`` for each delivery it receives. ``deliver`` only enqueues:
  it never blocks on the member's work.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Network(enum.StrEnum):
    """Who authenticated a requester: the name of the transport (also the ``transport``
    of its rooms), or ``local`` for the bridge's own in-process clients (relay
    puppets)."""

    XMPP = "xmpp"
    MATRIX = "matrix"
    LOCAL = "local"


#: The identity URI scheme each network authenticates (``xmpp:alice@example.org``,
#: ``matrix:u/alice:example.org``); an identity of one never arrives over another.
IDENTITY_SCHEMES: dict[str, str] = {Network.XMPP: "xmpp:", Network.MATRIX: "matrix:u/"}


def network_of(identity: str) -> str:
    """The network whose scheme ``identity`` uses (``""`` if none)."""
    for network, scheme in IDENTITY_SCHEMES.items():
        if identity.startswith(scheme):
            return network
    return ""


class Op(enum.StrEnum):
    """What an :class:`Inbound` asks of the hub."""

    HUB_INFO = "hub-info"  # reply payload: HubInfo (external sender, CA certificate)
    ATTEST = "attest"  # payload=AttestRequest -> reply payload: an X.509 Credential
    CREATE_GROUP = "create-group"  # group_info (epoch 0), ratchet_tree; transport+room_id
    ATTACH_ROOM = "attach-room"  # refused (forbidden): rooms are attached by configuration
    SUBMIT_COMMIT = "submit-commit"  # payload=commit, welcome, group_info, ratchet_tree
    SEND = "send"  # payload = application message or proposal
    FETCH_LOG = "fetch-log"  # group_id, after_seq, limit -> reply entries
    GET_GROUP_INFO = "get-group-info"  # group_id, or transport+room_id -> reply group_id,
    #                                     payload=GroupInfo, ratchet_tree
    PUBLISH_KEY_PACKAGE = "publish-key-package"  # payload=KeyPackage, device, last_resort
    CLAIM_KEY_PACKAGE = "claim-key-package"  # target=user, cipher_suite, device (optional)
    LIST_KEY_PACKAGES = "list-key-packages"  # target=user -> reply key_packages
    FETCH_WELCOMES = "fetch-welcomes"  # -> reply entries (Welcomes not yet delivered)
    LEAVE = "leave"  # the sender leaves the group (only itself; target empty or itself)
    KICK = "kick"  # refused (forbidden): kicks are network events, never requests
    REPORT = "report"  # group_id, seq (a commit the sender could not process), reason
    FETCH_MEDIA = "fetch-media"  # group_id, target=URL of another network's media store,
    #                              limit=its size, payload=its SHA-256 -> reply payload


#: The ``code`` of an accepted reply to a request the hub had acted on before (a send
#: it had logged: answered with its first seq, not delivered again). A transport that
#: lets the delivery answer a request (a Matrix member's posted send, answered by the
#: ack in its room) answers this one itself.
AGAIN = "again"


class Kind(enum.StrEnum):
    """What an :class:`Outbound` carries."""

    REPLY = "reply"
    COMMIT = "commit"
    PROPOSAL = "proposal"
    APPLICATION = "application"
    WELCOME = "welcome"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request to the hub (see :class:`Op` for which fields each op uses).

    ``sender`` is the identity the network authenticated and ``network`` the
    :class:`Network` that did (both set by the transport, never values the client
    chose); ``request_id`` is echoed in the reply. Empty bytes/strings mean "absent".
    ``seq`` names one entry of the group's log (a report's commit) and ``reason`` is a
    short code saying why (a report's fault: ``membership-tag``...). A request a member
    posted into one of the group's rooms (a Matrix member's SEND as a room event) names
    that room (``transport``, ``room_id``) and the network's ``event_id`` for it: the
    room holds the message already, so the hub's delivery there only confirms it.
    """

    op: str
    sender: str
    request_id: str = ""
    group_id: bytes = b""
    payload: bytes = field(default=b"", repr=False)
    welcome: bytes = field(default=b"", repr=False)
    group_info: bytes = field(default=b"", repr=False)
    ratchet_tree: bytes = field(default=b"", repr=False)
    target: str = ""
    device: str = ""
    transport: str = ""
    room_id: str = ""
    cipher_suite: int = 0
    after_seq: int = 0
    limit: int = 0
    last_resort: bool = False
    seq: int = 0
    reason: str = ""
    network: str = ""
    event_id: str = ""

    def size(self) -> int:
        """Bytes carried (for the hub's payload limit)."""
        return (len(self.payload) + len(self.welcome) + len(self.group_info)
                + len(self.ratchet_tree))


@dataclass(frozen=True, slots=True)
class KeyPackageListing:
    """Directory metadata of one published KeyPackage (reply to LIST_KEY_PACKAGES)."""

    ref: bytes
    user: str
    device: str
    cipher_suite: int
    expires_at: int
    last_resort: bool


@dataclass(frozen=True, slots=True)
class Outbound:
    """A reply or a delivery from the hub.

    Replies: ``ok`` and, when refused, ``code`` (a :class:`bridge.errors.Rejection`
    code such as ``wrong-epoch``) and ``reason`` (accepted: ``code`` is "" or
    :data:`AGAIN`); ``epoch`` is then the group's current
    epoch when known. Deliveries: ``seq`` is the entry's place in the group's log (1, 2,
    3... shared by commits, proposals and application messages), ``epoch`` the epoch it
    was sent in (for a Welcome: the epoch it joins), ``sender`` the identity that sent
    it, ``rooms`` the (transport, room id) pairs the group is attached to.
    """

    kind: str
    recipients: tuple[str, ...] = ()
    request_id: str = ""
    group_id: bytes = b""
    seq: int = 0
    epoch: int = 0
    sender: str = ""
    payload: bytes = field(default=b"", repr=False)
    ratchet_tree: bytes = field(default=b"", repr=False)
    ok: bool = True
    code: str = ""
    reason: str = ""
    rooms: tuple[tuple[str, str], ...] = ()
    entries: tuple[Outbound, ...] = field(default=(), repr=False)
    key_packages: tuple[KeyPackageListing, ...] = ()
    origin: tuple[str, ...] = ()  # (transport, room id, event id) or ()


class Role(enum.IntEnum):
    """What an identity is in one room (ordered: each role includes the ones below).

    MEMBER: in the room's membership (Matrix ``join``/``invite``; XMPP affiliation
    member or above); MODERATOR: may remove people (Matrix power level at least the
    room's ``kick`` level; XMPP admin); ADMIN: may administer the room (Matrix power
    to change the power levels; XMPP owner)."""

    NONE = 0
    MEMBER = 1
    MODERATOR = 2
    ADMIN = 3


class Membership(enum.StrEnum):
    """A room membership before or after a :class:`NetworkEvent` (a leave is NONE)."""

    NONE = "none"
    INVITED = "invite"
    JOINED = "join"
    BANNED = "ban"

    @property
    def in_room(self) -> bool:
        return self in (Membership.INVITED, Membership.JOINED)


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    """A membership change the hub-side transport observed in one of its rooms.

    ``actor`` changed ``target``'s membership from ``before`` to ``after`` (a leave:
    actor is the target); ``actor_moderator`` says whether the actor held the
    moderator role in the room at that event (checked by the transport on its network);
    ``event_id`` names the event for logs and deduplication."""

    network: str
    room: str
    target: str
    actor: str
    before: Membership
    after: Membership
    actor_moderator: bool = False
    event_id: str = ""


class HubService(Protocol):
    """The hub as transports see it."""

    async def handle(self, request: Inbound) -> Outbound:
        """Process one request; return the reply (never raises for bad input)."""
        ...

    async def network_event(self, event: NetworkEvent) -> Outbound:
        """Act on a room membership change (a refusal reply when it changes nothing)."""
        ...


class RoomDirectory(Protocol):
    """A hub-side transport's knowledge of its rooms, for authorization."""

    async def role(self, room: str, identity: str) -> Role:
        """``identity``'s role in ``room`` now (NONE when unknown or unreachable)."""
        ...


class RoomCommands(Protocol):
    """Room administration commands people give a hub-side transport (the Matrix bot's
    ``!mls ...``, the XMPP component's XEP-0050 ad-hoc commands), carried out by the
    bridge, which authorizes them."""

    async def room_command(self, network: str, actor: str, room: str,
                           words: Sequence[str]) -> CommandReply:
        """Run ``words`` (``("bridge", other_room)``, ``("relay", "on")``...) for
        ``actor`` (the identity its network authenticated) about ``room`` (a room of
        ``network``); what to tell the actor."""
        ...


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The answer to a room command: ``ok`` (done, or understood and waiting) or
    refused, and a text for the person who gave it ("": ignored, say nothing where
    saying costs something -- a flood)."""

    ok: bool
    text: str


class MediaSource(Protocol):
    """A hub-side transport whose network keeps files behind its own login (the Matrix
    media repository: ``mxc://``), fetching one for a member of another network. It
    returns the bytes only (it stores nothing)."""

    def owns(self, url: str) -> bool:
        """Whether ``url`` names media of this transport's own server."""
        ...

    async def fetch(self, url: str, size: int, sha256: bytes) -> bytes:
        """Exactly ``size`` bytes hashing to ``sha256`` (:class:`TransportError` otherwise;
        the download stops past ``size``)."""
        ...


class Deliverer(Protocol):
    """The hub-side transport: carries deliveries to their recipients, in call order."""

    async def deliver(self, message: Outbound) -> None:
        """Send ``message`` to every identity in ``message.recipients``."""
        ...


class BatchDeliverer(Deliverer, Protocol):
    """A deliverer that may also carry several consecutive deliveries of one group at
    once, in order, coalescing what its wire allows (the Matrix bot: the acks for one
    room in one event); the hub's fan-out hands it what waits in a lane together."""

    async def deliver_many(self, messages: Sequence[Outbound]) -> None:
        """Send ``messages`` (one group's, in log order) as :meth:`deliver` would."""
        ...


class HubLink(Protocol):
    """The client-side transport: one member's connection to the hub."""

    @property
    def identity(self) -> str:
        """The identity the network authenticates this link as."""
        ...

    async def request(self, request: Inbound) -> Outbound:
        """Send ``request`` and return the hub's reply; :class:`LinkError` if it cannot."""
        ...


class DeliverySink(Protocol):
    """Where the client-side transport hands deliveries (a :class:`bridge.member.Member`)."""

    async def deliver(self, message: Outbound) -> None:
        """Accept one delivery (enqueue only; never waits for processing)."""
        ...
