"""The chat client's Matrix account: matrix-nio with :class:`MatrixMemberLink`
(:mod:`transports.matrix.client`) as the member's link. The device id is kept in the
device store, so a restart logs in as the same Matrix device (its to-device messages,
Welcomes among them, wait for it). Rooms are Matrix rooms with the bridge's bot in them
(``/create`` makes one and invites the bot); files go through the media repository,
whose limit is ``m.upload.size`` of ``/media/config``. The link's sync loop retries with
backoff; :meth:`MatrixSession.connect` turns its state into status lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import nio

from bridge.chat.session import SessionError, Status, StatusHook
from transports.errors import TransportError
from transports.interface import DeliverySink, HubLink
from transports.matrix import namespace as ns
from transports.matrix.client import MatrixMemberLink
from transports.matrix.media import MediaRef
from transports.xmpp.stanzas import UploadRef
from transports.xmpp.upload import LOOPBACK_HOSTS, Uploader

LOGIN_TIMEOUT = 30.0
HUB_JOIN_TIMEOUT = 30.0
WATCH_INTERVAL = 0.2
NAME_ATTEMPTS = 6  # reads of a room's name while we may not have joined it yet (~8 s)


class MatrixSession:
    """One Matrix account (see the module docstring)."""

    network = ns.TRANSPORT_NAME

    def __init__(self, user_id: str, password: str, *, homeserver: str, hub_user: str,
                 device_id: str = "", http_hosts: frozenset[str] = frozenset()) -> None:
        if not user_id.startswith("@") or ":" not in user_id:
            raise SessionError(f"not a Matrix user id: {user_id!r} "
                               f"(expected @user:server)")
        self.user_id = user_id
        self.client = nio.AsyncClient(homeserver, user_id, device_id=device_id or None)
        self.password = password
        self.hub_user = hub_user
        self.matrix_link: MatrixMemberLink | None = None
        self._sink: DeliverySink | None = None
        self._watch: asyncio.Task[None] | None = None
        self._limit: int | None = None
        self._http = Uploader(None, domain="", allowed_hosts=LOOPBACK_HOSTS | http_hosts)

    @property
    def identity(self) -> str:
        return "matrix:u/" + self.user_id.removeprefix("@")

    @property
    def device_id(self) -> str:
        return str(self.client.device_id or "")

    @property
    def link(self) -> HubLink:
        return self._link()

    def _link(self) -> MatrixMemberLink:
        if self.matrix_link is None:
            self.matrix_link = MatrixMemberLink(self.client, self.hub_user,
                                                sync_timeout_ms=5000, sink=self._sink)
        return self.matrix_link

    def attach(self, sink: DeliverySink) -> None:
        self._sink = sink
        self._link().attach(sink)

    # -- connection --------------------------------------------------------------------

    async def connect(self, on_status: StatusHook) -> None:
        on_status(Status(False, f"logging in to {self.client.homeserver}"))
        try:
            response = await asyncio.wait_for(self.client.login(
                self.password, device_name="mls-bridge chat",
            ), LOGIN_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError) as exc:
            await self.client.close()  # type: ignore[no-untyped-call]
            raise SessionError(f"cannot reach {self.client.homeserver}: "
                               f"{type(exc).__name__}") from exc
        if not isinstance(response, nio.LoginResponse):
            await self.client.close()  # type: ignore[no-untyped-call]
            raise SessionError(f"{self.client.user_id}: login refused: "
                               f"{getattr(response, 'message', response)}")
        link = self._link()
        link.media.access_token = self.client.access_token  # the link predates the login
        link.start()
        try:
            await asyncio.wait_for(link.synced.wait(), LOGIN_TIMEOUT)
        except TimeoutError:
            await self.close()
            raise SessionError(f"no sync from {self.client.homeserver} within "
                               f"{LOGIN_TIMEOUT:.0f} s") from None
        on_status(Status(True, f"connected as {self.client.user_id}"))
        self._watch = asyncio.ensure_future(self._watch_link(link, on_status))

    async def _watch_link(self, link: MatrixMemberLink, on_status: StatusHook) -> None:
        shown = (True, "connected")
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = (link.online, link.status)
            if now != shown:
                shown = now
                on_status(Status(link.online, link.status if not link.online
                                 else f"connected as {self.client.user_id}"))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.matrix_link is not None:
            await self.matrix_link.stop()
        with contextlib.suppress(Exception):  # best effort: the server may be gone
            await self.client.close()  # type: ignore[no-untyped-call]

    # -- rooms -------------------------------------------------------------------------

    def room_address(self, text: str) -> str:
        text = text.strip()
        room_id = text.startswith("!") and len(text) > 1  # v12 room ids name no server
        if " " in text or not (room_id or (text.startswith("#") and ":" in text)):
            raise SessionError(f"{text!r} is not a Matrix room (use !id or "
                               f"#alias:server)")
        return text

    async def enter_room(self, address: str) -> str:
        address = self.room_address(address)
        response = await self.client.join(address)
        if not isinstance(response, nio.JoinResponse):
            raise SessionError(f"cannot enter {address}: "
                               f"{getattr(response, 'message', response)}")
        return str(response.room_id)

    async def room_name(self, room_id: str) -> str:
        """The room's name (and the start of its id), else its id. The homeserver
        shows a room's state only once our account joined it, and the Welcome that
        makes us a member of its group can come first: refused as forbidden, the
        read is retried a few times (bounded, NAME_ATTEMPTS)."""
        for attempt in range(NAME_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.25 * 2 ** attempt)
            response = await self.client.room_get_state_event(room_id, "m.room.name", "")
            content = getattr(response, "content", None)
            if not isinstance(content, dict):
                content = {}
            # matrix-nio 0.26 returns a refusal as a RoomGetStateEventResponse whose
            # content is the error body ({"errcode": ..., "error": ...})
            errcode = content.get("errcode") or getattr(response, "status_code", None)
            if errcode is None and isinstance(response, nio.RoomGetStateEventResponse):
                name = content.get("name")
                if isinstance(name, str) and name.strip():
                    return f"{name.strip()} ({room_id[:10]}…)"
                return room_id
            if errcode != "M_FORBIDDEN":
                return room_id  # no name, or an error waiting will not cure
        return room_id

    async def attach_room(self, room_id: str, group_id: bytes) -> None:
        return None  # the room's events reach the link once we are joined

    async def create_room(self, name: str) -> str:
        """A private room named ``name`` with the bridge's bot in it at the power level
        it needs to publish the group's state."""
        created = await self.client.room_create(
            name=name, invite=[self.hub_user],
            power_level_override={"users": {self.hub_user: 50}})
        if not isinstance(created, nio.RoomCreateResponse):
            raise SessionError(f"cannot create a Matrix room: "
                               f"{getattr(created, 'message', created)}")
        room_id = str(created.room_id)
        deadline = time.monotonic() + HUB_JOIN_TIMEOUT
        while time.monotonic() < deadline:
            members = await self.client.joined_members(room_id)
            if isinstance(members, nio.JoinedMembersResponse) and \
                    self.hub_user in {m.user_id for m in members.members}:
                return room_id
            await asyncio.sleep(0.2)
        raise SessionError(f"the bridge ({self.hub_user}) did not join {room_id}")

    async def leave_room(self, room_id: str) -> None:
        await self.client.room_leave(room_id)

    async def relayed(self, room_id: str) -> bool:
        response = await self.client.room_get_state(room_id)
        if not isinstance(response, nio.RoomGetStateResponse):
            raise SessionError(f"the state of {room_id} is not readable: "
                               f"{getattr(response, 'status_code', '') or 'no answer'}")
        for event in response.events:
            if isinstance(event, Mapping) and event.get("type") == ns.BRIDGE_STATE:
                relay = event.get("content", {}).get(ns.RELAY_KEY)
                if isinstance(relay, Mapping) and relay.get("relay") is True:
                    return True
        return False

    # -- files -------------------------------------------------------------------------

    async def upload_limit(self) -> int:
        if self._limit is None:
            self._limit = await self._media_config()
        return self._limit

    async def _media_config(self) -> int:
        url = f"{self.client.homeserver}/_matrix/client/v1/media/config"
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        try:
            async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
                body: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SessionError(f"no media configuration: {type(exc).__name__}") from exc
        size = body.get("m.upload.size") if isinstance(body, dict) else None
        return size if type(size) is int and size > 0 else 50 * 1024 * 1024

    async def upload(self, data: bytes) -> str:
        try:
            return (await self._link().media.upload(data)).url
        except TransportError as exc:
            raise SessionError(f"upload failed: {exc}") from exc

    async def download(self, url: str, size: int, sha256: bytes) -> bytes:
        try:
            if url.startswith("mxc://"):
                return await self._link().media.download(MediaRef(url, sha256, size))
            return await self._http.download(UploadRef(url, sha256.hex(), size))
        except TransportError as exc:
            raise SessionError(f"download failed: {exc}") from exc
