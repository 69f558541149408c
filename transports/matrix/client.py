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
from collections.abc import Mapping
from typing import Any

import aiohttp
import nio

from transports.interface import DeliverySink, Inbound, Op, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.errors import (
    HomeserverError,
    MatrixLinkError,
    MatrixTransportError,
)
from transports.matrix.media import MediaRepository, pack

log = logging.getLogger(__name__)

MEMBER_SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {"timeline": {"limit": 100}, "ephemeral": {"not_types": ["*"]},
             "account_data": {"not_types": ["*"]}, "state": {"lazy_load_members": True}},
}

_Item = tuple[str, str, Mapping[str, Any]]  # (source, event type, content)


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
        self.high_water: dict[bytes, int] = {}
        self.synced = asyncio.Event()
        self.online = False  # whether the last /sync succeeded
        self.status = "connecting"  # for a client to show: what the last /sync did
        self._pending: dict[str, asyncio.Future[Mapping[str, Any]]] = {}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
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
            message = nio.ToDeviceMessage(ns.REQUEST_TO_DEVICE, self.hub_user,
                                          self.hub_device, content)
            sent = await self.client.to_device(message, uuid.uuid4().hex)
            if not isinstance(sent, nio.ToDeviceResponse):
                raise MatrixLinkError(f"request not sent: {getattr(sent, 'message', sent)}")
            reply_content = await asyncio.wait_for(future, self.request_timeout)
            return await events.parse_response(reply_content, self.media.read_blob)
        except TimeoutError as exc:
            raise MatrixLinkError(f"no reply to {request.op} within "
                                  f"{self.request_timeout} s") from exc
        except (aiohttp.ClientError, MatrixTransportError) as exc:
            if isinstance(exc, MatrixLinkError):
                raise
            raise MatrixLinkError(f"{request.op}: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)

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
        for event in response.to_device_events:
            self._on_to_device(event.source)
        for room_id, info in response.rooms.invite.items():
            await self._on_invite(room_id, info)
        for room_id, room in response.rooms.join.items():
            for event in room.timeline.events:
                self._on_room_event(room_id, event.source)

    def _on_to_device(self, event: Mapping[str, Any]) -> None:
        event_type, content = event.get("type"), event.get("content")
        if not isinstance(content, Mapping) or event.get("sender") != self.hub_user:
            if isinstance(event_type, str) and event_type.startswith(ns.PREFIX):
                self.ignored.append(("to-device not from the hub", str(event_type)))
            return
        if event_type == ns.RESPONSE_TO_DEVICE:
            request_id = content.get(ns.K_REQUEST_ID)
            future = self._pending.get(request_id) if isinstance(request_id, str) else None
            if future is not None and not future.done():
                future.set_result(content)
        elif event_type in (ns.WELCOME_TO_DEVICE, ns.DELIVERY_TO_DEVICE):
            self._queue.put_nowait(("to-device", event_type, content))

    async def _on_invite(self, room_id: str, info: Any) -> None:
        inviter = next((event.sender for event in getattr(info, "invite_state", [])
                        if isinstance(event, nio.InviteMemberEvent)
                        and event.state_key == self.client.user_id), None)
        if not self.auto_join or inviter != self.hub_user:
            return
        joined = await self.client.join(room_id)
        if not isinstance(joined, nio.JoinResponse):
            log.warning("could not join %s: %s", room_id, getattr(joined, "message", joined))

    def _on_room_event(self, room_id: str, event: Mapping[str, Any]) -> None:
        event_type, content = event.get("type"), event.get("content")
        if not isinstance(event_type, str) or not isinstance(content, Mapping) \
                or not events.is_mls_room_event(event_type, content):
            return
        if event.get("sender") != self.hub_user:
            self.ignored.append(("not sent by the hub", str(event.get("event_id"))))
            return
        self._queue.put_nowait(("room", event_type, content))

    async def _worker(self) -> None:
        while True:
            source, event_type, content = await self._queue.get()
            try:
                await self._hand_over(source, event_type, content)
            except (MatrixTransportError, aiohttp.ClientError) as exc:
                log.warning("%s: dropped a %s: %s", self.identity, event_type, exc)
            finally:
                self._queue.task_done()

    async def _hand_over(self, source: str, event_type: str,
                         content: Mapping[str, Any]) -> None:
        read = self.media.read_blob
        if event_type == ns.WELCOME_TO_DEVICE:
            welcome = await events.parse_welcome(content, read)
            self.high_water[welcome.group_id] = max(welcome.seq,
                                                    self.high_water.get(welcome.group_id, 0))
            await self._to_sink(welcome)
            return
        if source == "room":
            entry = await events.parse_room_event(event_type, content, read)
        else:
            entry = await events.parse_delivery(content, read)
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
