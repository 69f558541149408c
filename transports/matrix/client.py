"""The member side of the Matrix binding: a matrix-nio account as an MLS member transport.

:class:`MatrixMemberLink` wraps a logged-in :class:`nio.AsyncClient`:

* it is a :class:`transports.interface.HubLink`: :meth:`request` sends one
  ``im.mlsbridge.request`` to-device to the hub's device and waits (with a timeout) for
  the ``im.mlsbridge.response`` with the same ``request_id``; the identity is the
  account's ``matrix:u/...`` URI, which is what the hub sees as the network sender;
* it feeds a :class:`transports.interface.DeliverySink` (a :class:`bridge.member.Member`):
  room events of the binding in timeline order (only those sent by the hub user; any
  other sender is ignored and counted in :attr:`ignored`), Welcomes and deliveries
  to-device (again only from the hub);
* a ``send`` for a group with a Matrix room is posted into that room as an
  ``im.mlsbridge.send`` event (one homeserver write: everyone in the room reads it at
  once); the hub logs it and confirms it with an ``im.mlsbridge.ack`` naming the event,
  to-device to the group's Matrix members, which is the reply (a refusal comes
  to-device too). Send events from anyone are kept (bounded) until an ack of the hub
  names them; only then are they handed over, in the ack's order and with its seq --
  a send event no ack names is never delivered, and an ack whose event was not seen (or
  was posted by someone else, or elsewhere, than the ack says) is read from the hub's
  log instead. A sync batch's deliveries are handed over in log order, whichever
  stream (timeline, to-device) brought them;
* it tracks the highest sequence number per group: duplicates are dropped and a gap is
  filled from the hub's log (``fetch-log``) before the next entry is handed over;
* invites sent by the hub user (after a Welcome) are accepted when ``auto_join``.

One sync task receives everything; a separate worker task parses and hands over
deliveries (so a gap fetch can wait for its response while the sync task runs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import aiohttp
import nio

from transports.interface import DeliverySink, Inbound, Kind, Op, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.errors import (
    HomeserverError,
    MatrixLinkError,
    MatrixTransportError,
)
from transports.matrix.media import MediaRepository, pack
from transports.matrix.plain import send_plain

log = logging.getLogger(__name__)

MEMBER_SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {"timeline": {"limit": 100}, "ephemeral": {"not_types": ["*"]},
             "account_data": {"not_types": ["*"]}, "state": {"lazy_load_members": True}},
}

_Item = tuple[str, str, Mapping[str, Any], str]  # (source, event type, content, room id)
SENDS_KEPT = 4096  # send events remembered until an ack names them


def _log_order(item: _Item) -> int:
    """Where an item of one sync batch goes in the hub's log (0: no place, first)."""
    content = item[2]
    seq = content.get(ns.K_SEQ)
    if isinstance(seq, int):
        return seq
    entries = content.get(ns.K_ENTRIES)
    first = entries[0] if isinstance(entries, list) and entries else None
    seq = first.get(ns.K_SEQ) if isinstance(first, Mapping) else None
    return seq if isinstance(seq, int) else 0


class MatrixMemberLink:
    """A Matrix account as one member's link to the hub (see the module docstring)."""

    def __init__(self, client: nio.AsyncClient, hub_user: str, *, hub_device: str = "*",
                 sink: DeliverySink | None = None, request_timeout: float = 30.0,
                 sync_timeout_ms: int = 5000, auto_join: bool = True,
                 fill_gaps: bool = True, media: MediaRepository | None = None) -> None:
        self.client = client
        self.hub_user = hub_user
        self.hub_device = hub_device
        self.sink = sink
        self.request_timeout = request_timeout
        self.sync_timeout_ms = sync_timeout_ms
        self.auto_join = auto_join
        self.fill_gaps = fill_gaps
        self.media = media or MediaRepository(client.homeserver, client.access_token)
        self.ignored: list[tuple[str, str]] = []  # (reason, event id)
        self.delivered: list[Outbound] = []  # every delivery handed to the sink, in order
        self.acked: list[events.Ack] = []  # every ack of the hub handed over, in order
        self.high_water: dict[bytes, int] = {}
        self.synced = asyncio.Event()
        self.online = False  # whether the last /sync succeeded
        self.status = "connecting"  # for a client to show: what the last /sync did
        self._pending: dict[str, asyncio.Future[Mapping[str, Any]]] = {}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        #: group id -> its Matrix room (from Welcomes, the hub's room events, create-group)
        self.group_rooms: dict[bytes, str] = {}
        #: send events seen, by event id: (room id, Matrix sender, content)
        self._sends: OrderedDict[str, tuple[str, str, Mapping[str, Any]]] = OrderedDict()
        self._posted: dict[str, str] = {}  # our send events waiting for an ack -> request
        self._tasks: list[asyncio.Task[None]] = []
        self._next_batch: str | None = None

    # -- HubLink -------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return events.user_uri(str(self.client.user_id))

    async def request(self, request: Inbound) -> Outbound:
        """Send ``request`` to the hub; its reply, or :class:`MatrixLinkError`."""
        request_id = request.request_id or uuid.uuid4().hex
        request = dataclasses.replace(request, request_id=request_id, sender=self.identity)
        future: asyncio.Future[Mapping[str, Any]] = \
            asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            content = await pack(events.request_content(request, str(self.client.device_id)),
                                 self.media.upload)
            room_id = self.group_rooms.get(request.group_id) if request.op == Op.SEND \
                else None
            posted = room_id is not None and await self._post(room_id, content, request_id)
            if not posted:
                await self._send_to_hub(content)
            reply_content = await asyncio.wait_for(future, self.request_timeout)
            reply = await events.parse_response(reply_content, self.media.read_blob)
            if reply.ok and request.op == Op.CREATE_GROUP \
                    and request.transport == ns.TRANSPORT_NAME:
                self.group_rooms[reply.group_id or request.group_id] = request.room_id
            return reply
        except TimeoutError as exc:
            raise MatrixLinkError(f"no reply to {request.op} within "
                                  f"{self.request_timeout} s") from exc
        except (aiohttp.ClientError, MatrixTransportError) as exc:
            if isinstance(exc, MatrixLinkError):
                raise
            raise MatrixLinkError(f"{request.op}: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)
            for event_id in [e for e, r in self._posted.items() if r == request_id]:
                del self._posted[event_id]

    async def _send_to_hub(self, content: dict[str, Any]) -> None:
        message = nio.ToDeviceMessage(ns.REQUEST_TO_DEVICE, self.hub_user, self.hub_device,
                                      content)
        sent = await self.client.to_device(message, uuid.uuid4().hex)
        if not isinstance(sent, nio.ToDeviceResponse):
            raise MatrixLinkError(f"request not sent: {getattr(sent, 'message', sent)}")

    async def _post(self, room_id: str, content: dict[str, Any], request_id: str) -> bool:
        """A send posted into the group's room as it is (:func:`send_plain`); whether
        the homeserver took it (not when we are not in the room yet, or no
        more: the request then goes to-device)."""
        sent = await send_plain(self.client, room_id, ns.SEND_EVENT, content,
                                uuid.uuid4().hex)
        if not isinstance(sent, nio.RoomSendResponse):
            log.info("%s: send not posted in %s (%s); sent to the hub instead",
                     self.identity, room_id, getattr(sent, "message", sent))
            return False
        self._posted[str(sent.event_id)] = request_id
        return True

    # -- lifecycle -----------------------------------------------------------------------

    def attach(self, sink: DeliverySink) -> None:
        self.sink = sink

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sync_loop()), loop.create_task(self._worker())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.media.close()

    async def idle(self) -> None:
        """Wait until every delivery received so far was handed to the sink."""
        await self._queue.join()

    # -- receiving -----------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                response = await self.client.sync(timeout=self.sync_timeout_ms,
                                                  sync_filter=MEMBER_SYNC_FILTER,
                                                  since=self._next_batch)
            except (aiohttp.ClientError, TimeoutError) as exc:
                response = nio.SyncError(f"{type(exc).__name__}: {exc}")
            if not isinstance(response, nio.SyncResponse):
                self.online = False
                self.status = (f"{getattr(response, 'message', response)}; "
                               f"retrying in {delay:.1f} s")
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)
                continue
            delay = 0.2
            self.online, self.status = True, "connected"
            await self._process(response)
            self._next_batch = response.next_batch
            self.synced.set()

    async def _process(self, response: nio.SyncResponse) -> None:
        """One batch: room timelines first (the send events an ack of this batch may
        name), then to-device; what the hub sent is handed over in log order (a room
        event and a to-device ack of one batch come by two streams)."""
        for room_id, info in response.rooms.invite.items():
            await self._on_invite(room_id, info)
        items: list[_Item] = []
        for room_id, room in response.rooms.join.items():
            for event in room.timeline.events:
                items += self._on_room_event(room_id, event.source)
        for event in response.to_device_events:
            items += self._on_to_device(event.source)
        items.sort(key=_log_order)
        for item in items:
            self._queue.put_nowait(item)

    def _on_to_device(self, event: Mapping[str, Any]) -> list[_Item]:
        event_type, content = event.get("type"), event.get("content")
        if not isinstance(content, Mapping) or event.get("sender") != self.hub_user:
            if isinstance(event_type, str) and event_type.startswith(ns.PREFIX):
                self.ignored.append(("to-device not from the hub", str(event_type)))
            return []
        if event_type == ns.RESPONSE_TO_DEVICE:
            request_id = content.get(ns.K_REQUEST_ID)
            future = self._pending.get(request_id) if isinstance(request_id, str) else None
            if future is not None and not future.done():
                future.set_result(content)
        elif event_type == ns.ACK_TO_DEVICE:
            self._answer_acked(content)
            return [("to-device", event_type, content, "")]
        elif event_type in (ns.WELCOME_TO_DEVICE, ns.DELIVERY_TO_DEVICE):
            return [("to-device", event_type, content, "")]
        return []

    async def _on_invite(self, room_id: str, info: Any) -> None:
        inviter = next((event.sender for event in getattr(info, "invite_state", [])
                        if isinstance(event, nio.InviteMemberEvent)
                        and event.state_key == self.client.user_id), None)
        if not self.auto_join or inviter != self.hub_user:
            return
        joined = await self.client.join(room_id)
        if not isinstance(joined, nio.JoinResponse):
            log.warning("could not join %s: %s", room_id, getattr(joined, "message", joined))

    def _on_room_event(self, room_id: str, event: Mapping[str, Any]) -> list[_Item]:
        event_type, content = event.get("type"), event.get("content")
        sender, event_id = event.get("sender"), event.get("event_id")
        if not isinstance(event_type, str) or not isinstance(content, Mapping) \
                or not isinstance(sender, str) or not isinstance(event_id, str):
            return []
        if event_type == ns.SEND_EVENT:  # held until the hub's ack names it
            self._sends[event_id] = (room_id, sender, content)
            while len(self._sends) > SENDS_KEPT:
                self._sends.popitem(last=False)
            return []
        if not events.is_mls_room_event(event_type, content):
            return []
        if sender != self.hub_user:
            self.ignored.append(("not sent by the hub", event_id))
            return []
        return [("room", event_type, content, room_id)]

    def _answer_acked(self, content: Mapping[str, Any]) -> None:
        """Our own sends an ack confirms: their requests are answered."""
        try:
            acks = events.parse_ack(content)
        except MatrixTransportError:
            return
        for ack in acks:
            request_id = self._posted.pop(ack.event_id, None)
            send = self._sends.get(ack.event_id)
            if request_id is None and send is not None and send[1] == self.client.user_id:
                found = send[2].get(ns.K_REQUEST_ID)  # acked before our post returned
                request_id = found if isinstance(found, str) else None
            future = self._pending.get(request_id) if request_id is not None else None
            if future is not None and not future.done():
                future.set_result(events.response_content(Outbound(
                    str(Kind.REPLY), request_id=str(request_id), group_id=ack.group_id,
                    seq=ack.seq, epoch=ack.epoch)))

    async def _worker(self) -> None:
        while True:
            source, event_type, content, room_id = await self._queue.get()
            try:
                if event_type == ns.ACK_TO_DEVICE:
                    await self._hand_over_acked(content)
                else:
                    await self._hand_over(source, event_type, content, room_id)
            except (MatrixTransportError, aiohttp.ClientError) as exc:
                log.warning("%s: dropped a %s: %s", self.identity, event_type, exc)
            finally:
                self._queue.task_done()

    async def _hand_over(self, source: str, event_type: str, content: Mapping[str, Any],
                         room_id: str) -> None:
        read = self.media.read_blob
        if event_type == ns.WELCOME_TO_DEVICE:
            welcome = await events.parse_welcome(content, read)
            self.high_water[welcome.group_id] = max(welcome.seq,
                                                    self.high_water.get(welcome.group_id, 0))
            for transport, room in welcome.rooms:
                if transport == ns.TRANSPORT_NAME:
                    self.group_rooms[welcome.group_id] = room
            await self._to_sink(welcome)
            return
        if event_type == ns.BATCH_EVENT:
            entries = await events.parse_batch(content, read)
        elif source == "room":
            entries = [await events.parse_room_event(event_type, content, read)]
        else:
            entries = [await events.parse_delivery(content, read)]
        for entry in entries:
            if source == "room":
                self.group_rooms[entry.group_id] = room_id
            await self._in_order(entry)

    async def _hand_over_acked(self, content: Mapping[str, Any]) -> None:
        """The send events an ack confirms, as log entries in its order; one that was
        not seen here, or not posted in the ack's room by whom the ack names, is read
        from the log."""
        for ack in events.parse_ack(content):
            self.acked.append(ack)
            self.group_rooms[ack.group_id] = ack.room_id
            send = self._sends.pop(ack.event_id, None)
            if send is None or send[0] != ack.room_id \
                    or events.user_uri(send[1]) != ack.sender \
                    or send[2].get(ns.K_GROUP_ID) != events.b64encode(ack.group_id):
                await self._from_log(ack.group_id, ack.seq)
                continue
            try:
                payload = await self.media.read_blob(send[2].get(ns.K_PAYLOAD))
            except MatrixTransportError:
                await self._from_log(ack.group_id, ack.seq)
                continue
            await self._in_order(Outbound(ack.kind, group_id=ack.group_id, seq=ack.seq,
                                          epoch=ack.epoch, sender=ack.sender,
                                          payload=payload))

    async def _from_log(self, group_id: bytes, seq: int) -> None:
        """Entry ``seq`` (and any gap before it) from the hub's log."""
        last = self.high_water.get(group_id, seq - 1)
        if seq > last and self.fill_gaps:
            await self._fill_gap(group_id, last, seq + 1)

    async def _in_order(self, entry: Outbound) -> None:
        """Hand one log entry over in sequence order: a duplicate dropped, a gap before
        it filled from the log first."""
        last = self.high_water.get(entry.group_id)
        if last is not None and entry.seq <= last:
            return  # a duplicate (or history from before we joined)
        if last is not None and entry.seq > last + 1 and self.fill_gaps:
            await self._fill_gap(entry.group_id, last, entry.seq)
        self.high_water[entry.group_id] = max(entry.seq,
                                              self.high_water.get(entry.group_id, 0))
        await self._to_sink(entry)

    async def _fill_gap(self, group_id: bytes, last: int, upto: int) -> None:
        """Fetch entries ``last+1 .. upto-1`` from the hub's log and hand them over."""
        try:
            reply = await self.request(Inbound(str(Op.FETCH_LOG), self.identity,
                                               group_id=group_id, after_seq=last,
                                               limit=upto - last - 1))
        except MatrixLinkError as exc:
            log.warning("%s: gap %d..%d not fetched: %s", self.identity, last + 1, upto - 1,
                        exc)
            return
        if not reply.ok:
            log.info("%s: gap fetch refused: %s", self.identity, reply.code)
            return
        for entry in reply.entries:
            if last < entry.seq < upto:
                self.high_water[group_id] = max(entry.seq, self.high_water.get(group_id, 0))
                await self._to_sink(entry)

    async def _to_sink(self, message: Outbound) -> None:
        self.delivered.append(message)
        if self.sink is not None:
            await self.sink.deliver(message)

    # -- conveniences for tests and tools --------------------------------------------------

    async def group_state(self, room_id: str) -> events.GroupState:
        """The room's ``im.mlsbridge.group`` state (which group, which hub)."""
        response = await self.client.room_get_state_event(room_id, ns.GROUP_STATE, "")
        if not isinstance(response, nio.RoomGetStateEventResponse):
            raise HomeserverError(f"no group state in {room_id}: "
                                  f"{getattr(response, 'message', response)}")
        return events.parse_group_state(response.content)

    def deliveries(self, kind: str | None = None) -> list[Outbound]:
        return [m for m in self.delivered if kind is None or m.kind == kind]
