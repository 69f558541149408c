"""Hub deliveries as Matrix output: the bot's :class:`transports.interface.Deliverer`
half (:class:`transports.matrix.bot.MatrixHubBot` delegates ``deliver`` here).

* commits and proposals as ``im.mlsbridge.commit`` / ``.proposal`` room events,
  application messages as ``m.room.encrypted`` with algorithm ``im.mlsbridge.mls.v1``,
  all carrying the log sequence number, into every Matrix room of the group (the rooms
  a delivery names, else the last ones named for the group); never Megolm-encrypted;
  a message its sender posted into the group's only Matrix room (``origin``: an
  ``im.mlsbridge.send``) is not copied there: an ``im.mlsbridge.ack`` naming that
  event goes to-device to the group's Matrix members instead -- handed several
  (:meth:`MatrixOutput.deliver_many`), the acks for one room go in one message,
  and consecutive small messages in one ``im.mlsbridge.batch`` room event;
  a group with no Matrix room: to-device to each Matrix recipient;
* Welcomes to-device to every device of the joiner, who is invited to the group's
  rooms (and told them when the hub names none);
* payloads over the event budget through the media repository (:func:`pack`); a room
  event's transaction id is derived from (group, seq, room), so a resend is idempotent
  (the homeserver deduplicates per device, and the bot's device id is fixed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from transports.interface import Kind, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.errors import HomeserverError, MatrixLinkError, MatrixTransportError
from transports.matrix.media import Uploader, pack

log = logging.getLogger(__name__)

ROOM_KINDS = frozenset({Kind.COMMIT, Kind.PROPOSAL, Kind.APPLICATION})
BATCH_ENTRIES = 32  # log entries in one batch event at most
BATCH_PAYLOAD = 2048  # bytes: a larger message goes alone (one event, media if need be)

#: (event type, user id, device id, content): one to-device message
ToDevice = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
#: (event type, user ids, content, transaction id): one to-device message to every
#: device of each user, in one request
ToMany = Callable[[str, Sequence[str], dict[str, Any], str], Awaitable[None]]
#: (room id, event type, content, transaction id): one room event as it is
Post = Callable[[str, str, dict[str, Any], str], Awaitable[Any]]
#: (room id, user id): invite unless joined (failures logged, not raised)
Invite = Callable[[str, str], Awaitable[None]]


class MatrixOutput:
    """Carries hub deliveries into Matrix (see the module docstring) through the
    bot's calls: ``upload`` (media), ``to_device``, ``post``, ``invite``."""

    def __init__(self, *, upload: Uploader, to_device: ToDevice, post: Post,
                 invite: Invite, to_many: ToMany) -> None:
        self._upload = upload
        self._to_device = to_device
        self._to_many = to_many
        self._post = post
        self._invite = invite
        self._group_rooms: dict[bytes, tuple[str, ...]] = {}

    async def deliver(self, message: Outbound) -> None:
        """Carry one hub delivery; :class:`MatrixLinkError` if any part failed."""
        try:
            if message.kind == Kind.WELCOME:
                await self._deliver_welcome(message)
            elif message.kind in ROOM_KINDS:
                await self._deliver_entry(message)
            else:
                log.warning("nothing to deliver for kind %r", message.kind)
        except MatrixTransportError as exc:
            raise MatrixLinkError(f"delivery of {message.kind} seq {message.seq} failed: "
                                  f"{exc}") from exc

    async def deliver_many(self, messages: Sequence[Outbound]) -> None:
        """Consecutive deliveries of one group, in order (the fan-out's batch): the
        acks for one room in one message (:meth:`_ack_room`), consecutive messages
        for the group's rooms in one ``im.mlsbridge.batch`` event each
        (:meth:`_batchable`), the rest one by one."""
        run: list[Outbound] = []
        run_key = ""
        for message in messages:
            key = self._ack_room(message)
            key = f"ack {key}" if key else ("batch" if self._batchable(message) else "")
            if run and (key != run_key or len(run) >= BATCH_ENTRIES):
                await self._flush(run_key, run)
                run = []
            if key:
                run_key = key
                run.append(message)
            else:
                await self.deliver(message)
        if run:
            await self._flush(run_key, run)

    def _batchable(self, message: Outbound) -> bool:
        return message.kind in (Kind.APPLICATION, Kind.PROPOSAL) \
            and len(message.payload) <= BATCH_PAYLOAD and bool(self._matrix_rooms(message))

    async def _flush(self, key: str, run: list[Outbound]) -> None:
        if key.startswith("ack "):
            await self._send_acks(key.removeprefix("ack "), run)
        elif len(run) == 1:
            await self.deliver(run[0])
        else:
            await self._post_batch(run)

    async def _post_batch(self, run: list[Outbound]) -> None:
        first, last = run[0].seq, run[-1].seq
        failures = []
        for room_id in self._matrix_rooms(run[-1]):
            packed = await pack(events.batch_content(run), self._upload)
            txn = hashlib.sha256(b"batch|%s|%d-%d|%s" % (run[0].group_id, first, last,
                                                         room_id.encode())).hexdigest()[:32]
            try:
                await self._post(room_id, ns.BATCH_EVENT, packed, txn)
            except MatrixTransportError as exc:
                failures.append(f"{room_id}: {exc}")
        if failures:
            raise MatrixLinkError(f"batch of seq {first}..{last} failed: "
                                  + "; ".join(failures))

    def _ack_room(self, message: Outbound) -> str:
        """The room of a delivery that needs nothing but an ack there (a send posted
        into the group's only Matrix room); "" otherwise."""
        if message.kind not in ROOM_KINDS or message.kind == Kind.COMMIT \
                or message.origin[:1] != (ns.TRANSPORT_NAME,):
            return ""
        rooms = self._matrix_rooms(message)
        return rooms[0] if rooms == (message.origin[1],) else ""

    async def _send_acks(self, room_id: str, messages: list[Outbound]) -> None:
        """One ack, to-device, to every Matrix member of the group (the sender's reply,
        the others' order): cheaper for the homeserver than a room event, which it
        would persist, evaluate push rules for and hand to everyone in the room."""
        first, last = messages[0].seq, messages[-1].seq
        users = sorted({user for m in messages for user in _matrix_users(m.recipients)})
        if not users:
            return
        txn = hashlib.sha256(b"ack|%s|%d-%d|%s" % (messages[0].group_id, first, last,
                                                   room_id.encode())).hexdigest()[:32]
        try:
            await self._to_many(ns.ACK_TO_DEVICE, users, events.ack_content(messages, room_id),
                                txn)
        except MatrixTransportError as exc:
            raise MatrixLinkError(f"ack of seq {first}..{last} failed: {exc}") from exc

    def add_room(self, group_id: bytes, room_id: str) -> None:
        """The group was announced in ``room_id``: deliveries naming no room go there
        too."""
        self._group_rooms[group_id] = tuple(sorted({*self._group_rooms.get(group_id, ()),
                                                    room_id}))

    def _matrix_rooms(self, message: Outbound) -> tuple[str, ...]:
        rooms = tuple(room for transport, room in message.rooms
                      if transport == ns.TRANSPORT_NAME)
        if message.rooms:
            self._group_rooms[message.group_id] = rooms
        return rooms or self._group_rooms.get(message.group_id, ())

    async def _deliver_entry(self, message: Outbound) -> None:
        rooms = self._matrix_rooms(message)
        if not rooms:  # no Matrix room: each Matrix recipient gets it to-device
            for user_id in _matrix_users(message.recipients):
                content = await pack(events.delivery_content(message), self._upload)
                await self._to_device(ns.DELIVERY_TO_DEVICE, user_id, "*", content)
            return
        ack_room = self._ack_room(message)
        if ack_room:  # posted by its sender into the group's room: confirmed, not copied
            await self._send_acks(ack_room, [message])
            return
        failures = []
        for room_id in rooms:
            event_type, content = events.room_event(message)
            packed = await pack(content, self._upload)
            txn = hashlib.sha256(b"%s|%d|%s" % (message.group_id, message.seq,
                                               room_id.encode())).hexdigest()[:32]
            try:
                await self._post(room_id, event_type, packed, txn)
            except HomeserverError as exc:
                failures.append(f"{room_id}: {exc}")
        if failures:
            raise HomeserverError("; ".join(failures))

    async def _deliver_welcome(self, message: Outbound) -> None:
        rooms = self._matrix_rooms(message)
        if rooms and not message.rooms:  # the hub names none: tell the joiner ours
            message = dataclasses.replace(
                message, rooms=tuple((ns.TRANSPORT_NAME, room) for room in rooms))
        content = await pack(events.welcome_content(message), self._upload)
        for user_id in _matrix_users(message.recipients):
            await self._to_device(ns.WELCOME_TO_DEVICE, user_id, "*", content)
            for room_id in rooms:
                await self._invite(room_id, user_id)


def _matrix_users(recipients: tuple[str, ...]) -> list[str]:
    return [user for user in map(events.uri_user, recipients) if user is not None]


__all__ = ["ROOM_KINDS", "MatrixOutput"]
