"""The hub side of the Matrix binding: a bot account that is the hub device of its rooms.

:class:`MatrixHubBot` turns Matrix input into hub requests and hub deliveries into
Matrix output; it is fed either by :class:`transports.matrix.sync.SyncRunner` (a plain
bot account, /sync) or by :mod:`transports.matrix.appservice` (transactions pushed by
the homeserver).

* to-device ``im.mlsbridge.request`` and the ``im.mlsbridge.send`` room events members
  post -> :meth:`HubService.handle` through :class:`transports.matrix.intake.
  RequestIntake` (admitted per sender, handled once; the requester built from the
  event's Matrix ``sender``, never from the content); the reply goes back to-device
  (``im.mlsbridge.response``, same ``request_id``), an accepted send's is the hub's
  ack (to-device to the group's Matrix members);
* invites to the bot -> join; ``m.room.member`` leaves and bans of a user who was
  joined or invited before (``unsigned.prev_content``) -> a
  :class:`~transports.interface.NetworkEvent` for :meth:`HubService.network_event`,
  saying whether the actor held the moderator role at that event (its power level in
  the room state at the event, at least the ``kick`` level);
* :meth:`MatrixHubBot.role` (the :class:`~transports.interface.RoomDirectory`): room
  roles from the room state (:mod:`transports.matrix.rooms`), cached per room and
  dropped whenever a state event of the room passes by;
* :meth:`deliver` (the :class:`~transports.interface.Deliverer`), carried out by
  :class:`transports.matrix.output.MatrixOutput`: commits, proposals and application
  messages as MLS room events carrying the log sequence number; Welcomes to-device to
  every device of the joiner (who is invited to the group's rooms); payloads over the
  event budget through the media repository;
* after a successful ``create-group`` for a Matrix room: the ``im.mlsbridge.group``
  state event (group id, cipher suite, hub user and device; knowing a group id grants
  nothing, docs/SECURITY.md);
  :meth:`MatrixHubBot.announce_group` publishes it for a room the bridge attached;
* a :class:`RoomObserver` (the bridge's relay) hears of users joining a room and of
  plain ``m.room.message`` events from anyone but the bot -- also those written with
  Megolm, decrypted when the bot runs with an olm store (:meth:`MatrixHubBot.enable_e2e`,
  :mod:`transports.matrix.e2e`); :meth:`send_message` and :meth:`put_state` post
  messages (Megolm-encrypted in a room with ``m.room.encryption``) and state (relay
  notices, ``m.bridge``). A Megolm event the bot cannot read is not dropped silently:
  the room is told (once per sender and session). MLS events are never Megolm-encrypted.

Robustness: the sync token is saved (through a :class:`CursorStore`, the hub store's
cursor API) only after a whole batch was processed; room events and requests acted on
are remembered persistently (by event id / sender+request id, :class:`SeenSet`, pruned
after a week) and never handled twice;
MLS room events only the hub posts (commits, proposals, messages) are ignored when
anyone else posts them (counted in :attr:`ignored`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import nio

from transports.fairness import (
    Admission,
    LimitObserver,
    RequestLimits,
)
from transports.interface import (
    HubService,
    Inbound,
    Kind,
    Membership,
    Network,
    NetworkEvent,
    Op,
    Outbound,
    Role,
    RoomCommands,
)
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.e2e import MEGOLM, Megolm, UnreadableNotices
from transports.matrix.errors import (
    HomeserverError,
    MalformedEvent,
    MatrixTransportError,
)
from transports.matrix.intake import RequestIntake, requester
from transports.matrix.media import MediaRepository
from transports.matrix.output import MatrixOutput
from transports.matrix.plain import send_plain
from transports.matrix.rooms import RoomState, RoomStates
from transports.matrix.seen import CursorStore, SeenSet

log = logging.getLogger(__name__)

IGNORED_KEPT = 1000  # ignored events remembered (for tests and debugging)
SEND_ATTEMPTS = 4
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {"timeline": {"limit": 100}, "ephemeral": {"not_types": ["*"]},
             "account_data": {"not_types": ["*"]}, "state": {"lazy_load_members": True}},
}

GroupSuite = Callable[[bytes], Awaitable[int]]
COMMAND = "!mls"  # a room message starting with it is a command to the bridge


class RoomObserver(Protocol):
    """Room activity that is not MLS traffic (implemented by the bridge's relay)."""

    async def member_joined(self, room_id: str, user_id: str) -> None: ...

    async def plain_message(self, room_id: str, user_id: str, event_id: str,
                            event_type: str, content: Mapping[str, Any]) -> None:
        """A plain ``m.room.message``, ``m.reaction`` or ``m.room.redaction`` (its
        ``redacts`` in ``content`` whatever the room version)."""
        ...

    def relays(self, room_id: str) -> bool:
        """Whether the room is relayed (only those are told of unreadable messages)."""
        ...


PLAIN_EVENTS = frozenset({ns.MESSAGE_EVENT, "m.reaction", "m.room.redaction"})


def _nobody(user_id: str) -> bool:
    return False


class MatrixHubBot:
    """The hub's Matrix presence (see the module docstring); a ``Deliverer`` and a
    ``RoomDirectory``."""

    def __init__(self, client: nio.AsyncClient, cursors: CursorStore, *,
                 hub: HubService | None = None, media: MediaRepository | None = None,
                 group_suite: GroupSuite | None = None,
                 limits: RequestLimits | None = None) -> None:
        self.client = client
        self.cursors = cursors
        self.hub = hub
        self.observer: RoomObserver | None = None
        self.commands: RoomCommands | None = None  # ``!mls ...`` in a room (the bridge)
        self.media = media or MediaRepository(client.homeserver, client.access_token)
        self.group_suite = group_suite
        self.seen = SeenSet(cursors, client.user_id)
        #: the latest ignored events, (reason, event id); :attr:`ignored_count` counts all
        self.ignored: deque[tuple[str, str]] = deque(maxlen=IGNORED_KEPT)
        self.ignored_count = 0
        self.admission = Admission(limits or RequestLimits(), "matrix-requests")
        self.intake = RequestIntake(self.admission, self.seen, self.media, self._handle,
                                    self._to_device, self._ignore)
        self._members: dict[str, frozenset[str]] = {}
        self.states = RoomStates(self._room_state)
        self.output = MatrixOutput(upload=lambda data: self.media.upload(data),
                                   to_device=self._to_device, post=self._send_plain,
                                   invite=self._invite, to_many=self._to_many)
        self._closed = False
        #: users the bridge itself controls (application-service ghosts): their events
        #: are the bridge's own -- never relayed back, never puppeted, no room role
        self.controlled: Callable[[str], bool] = _nobody
        self.unreadable = UnreadableNotices(self._notice)
        self.unreadable.wanted = lambda room_id: self.observer is not None \
            and self.observer.relays(room_id)
        self.megolm: Megolm | None = None

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id or "*")

    @property
    def identity(self) -> str:
        return events.user_uri(self.user_id)

    def attach(self, hub: HubService) -> None:
        """Set the hub (it is built with this bot as its deliverer)."""
        self.hub = hub

    def watch(self, observer: LimitObserver) -> None:
        """Report refusals, drops and queue depths to ``observer`` (the metrics)."""
        self.admission.watch(observer)

    def _ignore(self, reason: str, event_id: str) -> None:
        self.ignored.append((reason, event_id))
        self.ignored_count += 1

    async def close(self) -> None:
        """Cancel the requests still queued or running, close the media session; every
        later call fails (:class:`HomeserverError`) instead of opening a new HTTP
        session."""
        self._closed = True
        await self.admission.queue.close()
        await self.media.close()
        if self.megolm is not None:
            self.megolm.close()

    async def enable_e2e(self, password: str = "") -> Megolm:
        """Read and write Megolm (the client was built with
        :func:`transports.matrix.e2e.client_config` and is logged in); the device
        cross-signed (``password``: for the homeserver's user-interactive auth)."""
        self.megolm = Megolm(self.client, self.unreadable, password=password)
        await self.megolm.start()
        return self.megolm

    async def announce_group(self, room_id: str, group_id: bytes, suite: int = 0) -> None:
        """Publish the ``im.mlsbridge.group`` state of a room the bridge attached."""
        await self._publish_group_state(room_id, group_id, suite)

    async def send_message(self, room_id: str, content: Mapping[str, Any], txn: str,
                           event_type: str = ns.MESSAGE_EVENT) -> str:
        """Post one ``m.room.message`` (or ``event_type``) as the bot (``txn`` makes a
        resend idempotent), Megolm-encrypted in a room that is; returns the event id."""
        megolm = self.megolm
        if megolm is not None and megolm.encrypted(room_id):
            response = await self._call("message", lambda: megolm.send(
                room_id, event_type, dict(content), txn), nio.RoomSendResponse)
        else:
            response = await self._send_plain(room_id, event_type, dict(content), txn)
        return str(response.event_id)

    async def redact(self, room_id: str, event_id: str, txn: str) -> None:
        """Redact one of the bot's own events."""
        await self._call("redaction", lambda: self.client.room_redact(
            room_id, event_id, tx_id=txn), nio.RoomRedactResponse)

    async def _notice(self, room_id: str, text: str, key: str) -> None:
        txn = hashlib.sha256(b"notice|" + key.encode()).hexdigest()[:32]
        await self.send_message(room_id, {"msgtype": "m.notice", "body": text}, txn)

    async def _send_plain(self, room_id: str, event_type: str, content: dict[str, Any],
                          txn: str) -> Any:
        """One room event as it is, never Megolm-encrypted (nio's ``room_send``
        encrypts whatever it sends into a room it knows as encrypted)."""
        return await self._call("room event", lambda: send_plain(
            self.client, room_id, event_type, content, txn), nio.RoomSendResponse)

    async def put_state(self, room_id: str, event_type: str, state_key: str,
                        content: Mapping[str, Any]) -> None:
        """Set one state event as the bot."""
        await self._call("state", lambda: self.client.room_put_state(
            room_id, event_type, dict(content), state_key=state_key), nio.RoomPutStateResponse)

    # -- Matrix calls -----------------------------------------------------------------

    async def _call(self, what: str, make: Callable[[], Awaitable[Any]],
                    ok: type[Any]) -> Any:
        """One client-server call with bounded retries on transient failures."""
        if self._closed:
            raise HomeserverError(f"{what} not sent: the bot is closed")
        last = ""
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** attempt)
            try:
                response = await make()
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if isinstance(response, ok):
                return response
            last = str(getattr(response, "message", response))
            status = str(getattr(response, "status_code", ""))
            if status in ("M_FORBIDDEN", "M_NOT_FOUND", "M_BAD_JSON", "M_TOO_LARGE"):
                break
        raise HomeserverError(f"{what} failed: {last}")

    async def _to_device(self, event_type: str, user_id: str, device_id: str,
                         content: dict[str, Any]) -> None:
        message = nio.ToDeviceMessage(event_type, user_id, device_id, content)
        txn = uuid.uuid4().hex
        await self._call("to-device", lambda: self.client.to_device(message, txn),
                         nio.ToDeviceResponse)

    async def _to_many(self, event_type: str, users: Sequence[str], content: dict[str, Any],
                       txn: str) -> None:
        """One to-device request carrying ``content`` to every device of each user."""
        messages = {"messages": {user: {"*": content} for user in users}}
        method, path, data = nio.Api.to_device(self.client.access_token, event_type,
                                               messages, txn)
        first = nio.ToDeviceMessage(event_type, users[0], "*", content)
        await self._call("to-device", lambda: self.client._send(
            nio.ToDeviceResponse, method, path, data, response_data=(first,)),
            nio.ToDeviceResponse)

    async def room_members(self, room_id: str) -> frozenset[str]:
        """The room's joined members (cached until a membership event in the room)."""
        cached = self._members.get(room_id)
        if cached is None:
            response = await self._call("joined_members",
                                        lambda: self.client.joined_members(room_id),
                                        nio.JoinedMembersResponse)
            cached = frozenset(member.user_id for member in response.members)
            self._members[room_id] = cached
        return cached

    async def join(self, room_id: str) -> None:
        await self._call("join", lambda: self.client.join(room_id), nio.JoinResponse)
        self._members.pop(room_id, None)
        self.states.forget(room_id)
        log.info("%s joined %s", self.user_id, room_id)

    # -- input: to-device requests --------------------------------------------------------

    async def on_to_device(self, event: Mapping[str, Any]) -> None:
        """One to-device event addressed to the bot. A request is admitted to its
        sender's queue (:mod:`transports.fairness`) and handled by the worker pool, not
        here: over its sender's rate it is refused ``rate-limited`` (answered in turn,
        without being handled); beyond the queue bounds it is dropped unanswered and
        counted. :meth:`settle` waits for what was admitted."""
        if event.get("type") != ns.REQUEST_TO_DEVICE:
            return
        sender, content = event.get("sender"), event.get("content")
        if not isinstance(sender, str) or not isinstance(content, Mapping):
            return
        self.intake.admit(sender, content)

    async def settle(self) -> None:
        """Wait until every admitted request was handled and answered (a sync batch
        or a transaction is acknowledged only then: see
        :class:`transports.matrix.sync.SyncRunner`)."""
        await self.intake.settle()

    @property
    def handled_requests(self) -> int:
        return self.intake.handled

    async def _handle(self, request: Inbound) -> Outbound:
        if request.event_id and request.op != Op.SEND:
            return _refuse(request, "malformed", "only a send is posted into a room")
        if self.hub is None:
            return _refuse(request, "unavailable", "the hub is not running")
        reply = await self.hub.handle(request)  # the hub authorizes (room roles: role())
        if reply.ok and request.op == Op.CREATE_GROUP and request.transport == ns.TRANSPORT_NAME:
            group_id = reply.group_id or request.group_id
            await self._publish_group_state(request.room_id, group_id, request.cipher_suite)
        return reply

    # -- room roles (RoomDirectory) -------------------------------------------------------

    async def _room_state(self, room_id: str) -> list[Mapping[str, Any]]:
        response = await self._call("room state", lambda: self.client.room_get_state(room_id),
                                    nio.RoomGetStateResponse)
        return [event for event in response.events if isinstance(event, Mapping)]

    async def role(self, room: str, identity: str) -> Role:
        """``identity``'s role in the Matrix room ``room`` now (NONE for an identity of
        another network, or a room the bot cannot read)."""
        user_id = events.uri_user(identity)
        if user_id is None or self.controlled(user_id):
            return Role.NONE
        try:
            return (await self.states.get(room)).role(user_id)
        except HomeserverError as exc:
            log.info("no room state for %s: %s", room, exc)
            return Role.NONE

    async def _moderator_at(self, room_id: str, event_id: str, user_id: str) -> bool:
        """Whether ``user_id`` had at least the ``kick`` power level in the room state at
        ``event_id`` (GET /context: the state at the event); the current state if the
        homeserver cannot say."""
        # nio drops limit=0 (it sends a limit only when truthy): build the request
        # so that no event after ours is returned, and the state is the one at ours
        path = nio.Api._build_path(["rooms", room_id, "context", event_id],
                                   {"access_token": self.client.access_token, "limit": 0})
        try:
            response = await self._call("context", lambda: self.client._send(
                nio.RoomContextResponse, "GET", path, response_data=(room_id,)),
                nio.RoomContextResponse)
            state = RoomState.from_events(event.source for event in response.state)
        except HomeserverError as exc:
            log.info("no state at %s in %s (%s); using the current state", event_id, room_id,
                     exc)
            state = await self.states.get(room_id)
        return state.power_of(user_id) >= state.kick_level()

    async def _publish_group_state(self, room_id: str, group_id: bytes, suite: int) -> None:
        if self.group_suite is not None and not suite:
            suite = await self.group_suite(group_id)
        state = events.GroupState(group_id, suite, self.identity, self.user_id, self.device_id)
        try:
            await self._call("group state", lambda: self.client.room_put_state(
                room_id, ns.GROUP_STATE, events.group_state_content(state)),
                nio.RoomPutStateResponse)
        except HomeserverError as exc:
            log.warning("could not publish the group state in %s: %s", room_id, exc)
        self.output.add_room(group_id, room_id)

    # -- input: room events ---------------------------------------------------------------

    async def on_invite(self, room_id: str) -> None:
        """The bot joins every room it is invited to."""
        try:
            await self.join(room_id)
        except HomeserverError as exc:
            log.warning("could not join %s: %s", room_id, exc)

    async def on_room_event(self, room_id: str, event: Mapping[str, Any]) -> None:
        """One timeline event of a room the bot is in (or an invite of the bot)."""
        event_type, content = event.get("type"), event.get("content")
        sender, event_id = event.get("sender"), event.get("event_id")
        if not isinstance(event_type, str) or not isinstance(content, Mapping) \
                or not isinstance(sender, str) or not isinstance(event_id, str):
            return
        if event_type == ns.ENCRYPTED_EVENT and content.get(ns.K_ALGORITHM) == MEGOLM:
            if sender != self.user_id:  # no olm store: application-service mode
                await self.unreadable.without_store(room_id, sender, content)
            return
        if event_type == ns.SEND_EVENT:
            if sender != self.user_id and not self.controlled(sender):
                self.intake.admit(sender, content, (room_id, event_id))
            return
        if events.is_mls_room_event(event_type, content) or event_type == ns.GROUP_STATE:
            if sender != self.user_id:
                self._ignore("not sent by the hub", event_id)
                log.info("ignored %s %s from %s (not the hub)", event_type, event_id, sender)
            return
        if event_type in PLAIN_EVENTS:
            if "redacts" in event and "redacts" not in content:  # room versions < 11
                content = {**content, "redacts": event["redacts"]}
            await self._on_plain_message(room_id, event_id, event_type, content, sender)
            return
        if "state_key" in event:  # membership, power levels...: roles may have changed
            self.states.forget(room_id)
            self._members.pop(room_id, None)
        if event_type != ns.MEMBER_EVENT:
            return
        key = f"ev:{event_id}"
        if await self.seen.contains(key):
            return
        await self._on_membership(room_id, event, content, sender)
        await self.seen.add(key)

    async def _on_membership(self, room_id: str, event: Mapping[str, Any],
                             content: Mapping[str, Any], sender: str) -> None:
        target, membership = event.get("state_key"), content.get("membership")
        if not isinstance(target, str) or self.controlled(target):
            return
        if target == self.user_id:
            if membership == "invite":
                await self.on_invite(room_id)
            return
        unsigned = event.get("unsigned")
        prev = unsigned.get("prev_content") if isinstance(unsigned, Mapping) else None
        if membership == "join" and self.observer is not None and not (
                isinstance(prev, Mapping) and prev.get("membership") == "join"):
            await self.observer.member_joined(room_id, target)
            return
        if membership not in ("leave", "ban") or self.hub is None:
            return
        was = prev.get("membership") if isinstance(prev, Mapping) else None
        before = Membership(was) if was in ("join", "invite", "ban") else Membership.NONE
        try:
            target_uri, _ = requester(target)
            actor_uri, _ = requester(sender)
        except MalformedEvent:
            return
        event_id = str(event["event_id"])
        moderator = sender != target and await self._moderator_at(room_id, event_id, sender)
        after = Membership.BANNED if membership == "ban" else Membership.NONE
        change = NetworkEvent(Network.MATRIX, room_id, target_uri, actor_uri, before, after,
                              moderator, event_id)
        reply = await self.hub.network_event(change)
        log.info("%s of %s in %s by %s: %s %s", membership, target, room_id, sender,
                 "acted on" if reply.ok else "refused", reply.code)

    async def on_megolm(self, room_id: str, event: nio.Event) -> None:
        """A timeline event nio's olm machine handled (:meth:`Megolm.handle`)."""
        if self.megolm is not None:
            await self.megolm.handle(room_id, event, self._on_plain_message)

    async def after_sync(self) -> None:
        """A sync batch's timelines are handled: retry the Megolm events that waited
        for their keys (:meth:`Megolm.after_sync`)."""
        if self.megolm is not None:
            await self.megolm.after_sync(self._on_plain_message)

    async def _on_plain_message(self, room_id: str, event_id: str, event_type: str,
                                content: Mapping[str, Any], sender: str) -> None:
        """A plain event (not the bot's own nor a ghost's) for the observer, once; an
        ``m.room.message`` whose body starts with ``!mls`` is a room command instead."""
        body = content.get("body")
        command = event_type == ns.MESSAGE_EVENT and isinstance(body, str) \
            and body.split(maxsplit=1)[:1] == [COMMAND]
        handler = self.commands if command else self.observer
        if sender == self.user_id or self.controlled(sender) or handler is None:
            return
        key = f"msg:{event_id}"
        if await self.seen.contains(key):
            return
        await self.seen.add(key)
        if command and isinstance(body, str):
            await self._run_command(room_id, sender, event_id, body)
        elif self.observer is not None:
            await self.observer.plain_message(room_id, sender, event_id, event_type, content)

    async def _run_command(self, room_id: str, sender: str, event_id: str, body: str
                           ) -> None:
        """``!mls <words>`` in a room: the bridge runs it (and authorizes it); its
        answer goes back to the room as an ``m.notice`` (never relayed)."""
        assert self.commands is not None
        actor, network = requester(sender)
        reply = await self.commands.room_command(network, actor, room_id, body.split()[1:])
        if not reply.text:
            return  # ignored (a flood)
        try:
            await self.send_message(room_id, {"msgtype": "m.notice", "body": reply.text},
                                    f"mls-command-{event_id}")
        except MatrixTransportError as exc:
            log.warning("answer to a command in %s not sent: %s", room_id, exc)

    # -- output: the Deliverer ----------------------------------------------------------

    async def deliver(self, message: Outbound) -> None:
        """:class:`transports.interface.Deliverer`: :class:`MatrixOutput`."""
        await self.output.deliver(message)

    async def deliver_many(self, messages: Sequence[Outbound]) -> None:
        """:class:`transports.interface.BatchDeliverer`: acks coalesced per room."""
        await self.output.deliver_many(messages)

    async def _invite(self, room_id: str, user_id: str) -> None:
        try:
            if user_id in await self.room_members(room_id):
                return
            await self._call("invite", lambda: self.client.room_invite(room_id, user_id),
                             nio.RoomInviteResponse)
        except HomeserverError as exc:  # already invited, or no right to invite
            log.info("invite of %s to %s: %s", user_id, room_id, exc)


def _refuse(request: Inbound, code: str, reason: str) -> Outbound:
    return Outbound(str(Kind.REPLY), (request.sender,), request.request_id, request.group_id,
                    ok=False, code=code, reason=reason)
