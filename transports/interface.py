"""The interface between the bridge and its transports (XMPP, Matrix, in-memory).

Transports never import ``mls``: everything that crosses this interface is bytes,
strings and integers (and tuples of them). MLS messages are opaque ``bytes`` in their
RFC 9420 wire form (``MLSMessage``).

Two directions, one pair of value types:

* :class:`Inbound` -- a request to the hub: a member submits a commit bundle, sends an
  application message, publishes or claims a KeyPackage, asks for the log..., or the
  transport reports a network event (a member left or was kicked from the room).
* :class:`Outbound` -- what the hub sends: the reply to a request (``kind="reply"``)
  and deliveries (commits, proposals, application messages in sequence order, and
  Welcomes to new members).

Four roles, as :class:`typing.Protocol` classes:

* :class:`HubService` -- implemented by :class:`bridge.hub.Hub` (and by
  :class:`bridge.app.services.bridge.BridgeService`, one hub for both networks); the
  hub-side transport (an XMPP component, a Matrix bot) calls ``handle`` for every
  request it receives, with ``sender`` set to the network-authenticated identity (a URI
  such as ``xmpp:alice@example.org``), and sends the returned reply back to the
  requester.
* :class:`Deliverer` -- implemented by the hub-side transport: carry an
  :class:`Outbound` delivery to each of its ``recipients`` (the groupchat messages /
  room events of the wire binding), preserving the order of calls per recipient
  (:class:`bridge.app.services.bridge.RoutingDeliverer` routes among several).
* :class:`HubLink` -- implemented by the client-side transport (XMPP client plugin,
  Matrix helper): send one request to the hub and return its reply; raise
  :class:`transports.errors.LinkError` when the reply cannot be obtained.
* :class:`DeliverySink` -- implemented by :class:`bridge.member.Member`; the client-side
  transport calls ``deliver`` for each delivery it receives. ``deliver`` only enqueues:
  it never blocks on the member's work.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Op(enum.StrEnum):
    """What an :class:`Inbound` asks of the hub."""

    HUB_INFO = "hub-info"  # reply payload: HubInfo (external sender, CA certificate)
    ATTEST = "attest"  # payload=AttestRequest -> reply payload: an X.509 Credential
    CREATE_GROUP = "create-group"  # group_info (epoch 0), ratchet_tree; transport+room_id
    ATTACH_ROOM = "attach-room"  # group_id, transport, room_id
    SUBMIT_COMMIT = "submit-commit"  # payload=commit, welcome, group_info, ratchet_tree
    SEND = "send"  # payload = application message or proposal
    FETCH_LOG = "fetch-log"  # group_id, after_seq, limit -> reply entries
    GET_GROUP_INFO = "get-group-info"  # -> reply payload=GroupInfo, ratchet_tree
    PUBLISH_KEY_PACKAGE = "publish-key-package"  # payload=KeyPackage, device, last_resort
    CLAIM_KEY_PACKAGE = "claim-key-package"  # target=user, cipher_suite, device (optional)
    LIST_KEY_PACKAGES = "list-key-packages"  # target=user -> reply key_packages
    FETCH_WELCOMES = "fetch-welcomes"  # -> reply entries (Welcomes not yet delivered)
    LEAVE = "leave"  # the sender left the room (network event)
    KICK = "kick"  # target was removed from the room by the network (network event)


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

    ``sender`` is the identity the network authenticated, never a value the client
    chose; ``request_id`` is echoed in the reply. Empty bytes/strings mean "absent".
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
    code such as ``wrong-epoch``) and ``reason``; ``epoch`` is then the group's current
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


class HubService(Protocol):
    """The hub as transports see it."""

    async def handle(self, request: Inbound) -> Outbound:
        """Process one request; return the reply (never raises for bad input)."""
        ...


class Deliverer(Protocol):
    """The hub-side transport: carries deliveries to their recipients, in call order."""

    async def deliver(self, message: Outbound) -> None:
        """Send ``message`` to every identity in ``message.recipients``."""
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
