"""The chat client's XMPP account: slixmpp with the ``mls_client`` plugin
(:mod:`transports.xmpp.client`) as the member's link, rooms on the bridge's component
(``room@mls.example.org``), files through XEP-0363 (the plugin's
:class:`transports.xmpp.upload.Uploader`: the service and its ``max-file-size`` found by
disco), and a reconnect with exponential backoff whenever the stream drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

from bridge.chat.session import SessionError, Status, StatusHook
from transports.errors import TransportError
from transports.interface import DeliverySink, HubLink
from transports.xmpp import namespace as ns
from transports.xmpp.client import MLSClientPlugin, register
from transports.xmpp.stanzas import UploadRef
from transports.xmpp.upload import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

LOGIN_TIMEOUT = 30.0
BACKOFF_MAX = 30.0


class XmppSession:
    """One XMPP account (see the module docstring)."""

    network = ns.TRANSPORT_NAME

    def __init__(self, jid: str, password: str, *, resource: str, hub: str = "",
                 host: str = "", port: int = 5222, cafile: str = "", tls: bool = True,
                 upload_hosts: frozenset[str] = frozenset()) -> None:
        bare = JID(jid)
        if not bare.user or not bare.domain:
            raise SessionError(f"not an XMPP address: {jid!r} (expected user@domain)")
        self.host, self.port = host, port
        client = ClientXMPP(f"{bare.bare}/{resource}", password)
        client.enable_direct_tls = False
        if tls:
            client.enable_starttls = True
            if cafile:
                client.ca_certs = Path(cafile)
        else:  # loopback test servers only
            client.enable_starttls = False
            client.enable_plaintext = True
            mechanisms = client.plugin["feature_mechanisms"]
            mechanisms.unencrypted_scram = mechanisms.unencrypted_plain = True
        self._bind(client, hub or f"mls.{bare.domain}", upload_hosts)
        for name, handler in (("session_start", self._started),
                              ("failed_auth", self._failed_auth),
                              ("disconnected", self._disconnected),
                              ("connection_failed", self._connection_failed)):
            self.client.add_event_handler(name, handler)

    def _bind(self, client: ClientXMPP, hub: str, upload_hosts: frozenset[str]) -> None:
        """Make ``client`` the session's: the ``mls_client`` plugin on it as the link
        (also for a client another program logged in: :mod:`bridge.poezio`)."""
        self.hub = hub
        self.client = client
        client.register_plugin("xep_0030")
        domain = client.boundjid.domain
        hosts = LOOPBACK_HOSTS | upload_hosts | {domain, f"upload.{domain}"}
        self.plugin: MLSClientPlugin = register(client, hub, upload_hosts=hosts)
        self._on_status: StatusHook = lambda status: None
        self._closing = False
        self._delay = 1.0
        self._first: asyncio.Future[None] | None = None
        self._retry: asyncio.Task[None] | None = None

    @property
    def identity(self) -> str:
        return self.plugin.identity

    @property
    def link(self) -> HubLink:
        return self.plugin

    @property
    def device_id(self) -> str:
        return str(self.client.boundjid.resource)

    def attach(self, sink: DeliverySink) -> None:
        self.plugin.attach(sink)

    # -- connection --------------------------------------------------------------------

    async def connect(self, on_status: StatusHook) -> None:
        self._on_status = on_status
        self._first = asyncio.get_running_loop().create_future()
        self._on_status(Status(False, f"connecting to {self.client.boundjid.domain}"))
        self._connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._first), LOGIN_TIMEOUT)
        except TimeoutError:
            await self.close()
            raise SessionError(f"could not log in as {self.client.boundjid.bare} within "
                               f"{LOGIN_TIMEOUT:.0f} s") from None
        except SessionError:
            await self.close()
            raise

    def _connect(self) -> None:
        if self.host:
            self.client.connect(host=self.host, port=self.port)
        else:
            self.client.connect()

    def _started(self, _event: Any) -> None:
        self._delay = 1.0
        self.client.send_presence()
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        self._on_status(Status(True, f"connected as {self.client.boundjid.bare}"))

    def _failed_auth(self, _event: Any) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_exception(SessionError(
                f"{self.client.boundjid.bare}: the server refused the password"))

    def _connection_failed(self, reason: Any) -> None:
        self._on_status(Status(False, f"connection failed ({reason}); retrying"))

    def _disconnected(self, reason: Any) -> None:
        if self._closing or (self._first is not None and not self._first.done()):
            return
        delay = self._delay
        self._delay = min(BACKOFF_MAX, self._delay * 2)
        self._on_status(Status(False, f"disconnected ({reason or 'connection lost'}); "
                                      f"reconnecting in {delay:.0f} s"))
        self._retry = asyncio.ensure_future(self._reconnect(delay))

    async def _reconnect(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._closing:
            self._on_status(Status(False, "reconnecting"))
            self._connect()

    async def close(self) -> None:
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
        with contextlib.suppress(Exception):  # best effort: the stream may be gone
            await self.client.disconnect(wait=1.0)

    # -- rooms -------------------------------------------------------------------------

    def room_address(self, text: str) -> str:
        text = text.strip()
        room = JID(text if "@" in text else f"{text}@{self.hub}")
        if not room.user or room.domain != self.hub:
            raise SessionError(f"{text!r} is not a room of the bridge ({self.hub}): use "
                               f"name or name@{self.hub}")
        return room.bare

    async def enter_room(self, address: str) -> str:
        room = self.room_address(address)
        try:
            await self.plugin.join_room(room)
        except TransportError as exc:
            raise SessionError(f"cannot enter {room}: {exc}") from exc
        return room

    async def room_name(self, room_id: str) -> str:
        return room_id

    async def attach_room(self, room_id: str, group_id: bytes) -> None:
        try:
            await self.plugin.join_room(room_id, group_id)
        except TransportError as exc:
            log.warning("cannot enter %s: %s", room_id, exc)

    async def create_room(self, name: str) -> str:
        """Enter the new room first: its first occupant becomes its owner (XEP-0045
        §10.1), the role the bridge asks of whoever binds a room to a group."""
        return await self.enter_room(name)

    async def leave_room(self, room_id: str) -> None:
        self.plugin.leave_room(room_id)

    async def relayed(self, room_id: str) -> bool:
        disco = self.client.plugin["xep_0030"]
        try:
            info = await disco.get_info(jid=JID(room_id), timeout=10)
        except IqTimeout as exc:
            raise SessionError(f"{room_id} did not answer disco#info") from exc
        except IqError:
            return False  # the room answered: it does not describe itself as relayed
        return ns.FEATURE_RELAY in info["disco_info"]["features"]

    # -- files -------------------------------------------------------------------------

    async def upload_limit(self) -> int:
        service = await self.plugin.uploader.service()
        if service is None:
            return 0
        return service.max_size or 100 * 1024 * 1024

    async def upload(self, data: bytes) -> str:
        try:
            return (await self.plugin.uploader.upload(data)).url
        except TransportError as exc:
            raise SessionError(f"upload failed: {exc}") from exc

    async def download(self, url: str, size: int, sha256: bytes) -> bytes:
        if not url.startswith(("http://", "https://")):
            raise SessionError("the file is stored on a Matrix media repository: only "
                               "the bridge can fetch it (ChatClient.downloader)")
        try:
            return await self.plugin.uploader.download(UploadRef(url, sha256.hex(), size))
        except TransportError as exc:
            raise SessionError(f"download failed: {exc}") from exc
