"""The member side of the XMPP binding: a slixmpp plugin that makes a ClientXMPP an MLS
member transport.

Register it on a :class:`slixmpp.ClientXMPP` with :func:`register` (or
``client.register_plugin("mls_client", module=transports.xmpp.client)``), attach a
:class:`transports.interface.DeliverySink` (a :class:`bridge.member.Member`) and hand the
plugin to the member as its :class:`transports.interface.HubLink`::

    plugin = register(client, hub="mls.example.org")
    member = Member(plugin)
    plugin.attach(member)

Requests are IQs to the hub component (a timeout gives :class:`XmppLinkError`; a bounce
because the component is down is retried with backoff for ``retry_window`` seconds,
then :class:`HubUnreachable`). Deliveries (groupchat fan-out, Welcomes, log entries)
reach the sink in order, one at a time, without duplicates; a gap in a group's sequence
numbers, a ``<sync/>`` from the hub or a reconnect makes the plugin fetch the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, ClassVar, cast
from xml.etree import ElementTree as ET

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.base import BasePlugin, register_plugin
from slixmpp.stanza import Message, Presence
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from transports.interface import DeliverySink, Inbound, Kind, Op, Outbound
from transports.xmpp import namespace as ns
from transports.xmpp.errors import (
    HubUnreachable,
    UploadError,
    WireError,
    XmppLinkError,
)
from transports.xmpp.stanzas import (
    blobs_of,
    decode_delivery,
    decode_rejected,
    decode_reply,
    encode_request,
    find,
    register_plugins,
)
from transports.xmpp.upload import LOOPBACK_HOSTS, Uploader, placements, resolver

log = logging.getLogger(__name__)

BOUNCES = frozenset({"service-unavailable", "remote-server-not-found",
                     "remote-server-timeout", "recipient-unavailable"})
LOG_PAGE = 200


class MLSClientPlugin(BasePlugin):
    """``mls_client``: HubLink + delivery feed for one XMPP account (see module doc)."""

    name = "mls_client"
    description = "MLS over XMPP (urn:mlsbridge:0): member transport"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    default_config: ClassVar[dict[str, Any]] = {
        "hub": "",  # the component's JID, e.g. mls.example.org
        "timeout": 15.0,  # seconds per IQ round trip
        "retry_window": 30.0,  # how long a bounced request is retried
        "stanza_limit": 256 * 1024,  # bytes; Prosody 0.12's c2s_stanza_size_limit
        "upload": True,  # use XEP-0363 for payloads over the limit
        "upload_hosts": LOOPBACK_HOSTS,
        "nick": "",
    }

    hub: str
    timeout: float
    retry_window: float
    stanza_limit: int
    upload: bool
    upload_hosts: frozenset[str]
    nick: str

    def plugin_init(self) -> None:
        register_plugins()
        self.sink: DeliverySink | None = None
        self.retries = 0  # requests re-sent because the server bounced them (hub down)
        self.rooms: dict[str, bytes] = {}  # joined room JID -> group id ("" if unknown)
        self.cursors: dict[bytes, int] = {}  # group id -> highest seq handed to the sink
        self._seen: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._welcomes: set[tuple[bytes, int]] = set()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._joined: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.uploader = Uploader(self.xmpp, domain=self.xmpp.boundjid.domain,
                                 allowed_hosts=self.upload_hosts, enabled=self.upload)
        default_ns = self.xmpp.default_ns
        self.xmpp.register_handler(Callback(
            "mls delivery", MatchXPath(f"{{{default_ns}}}message/{{{ns.NS}}}{ns.DELIVERY}"),
            self._on_delivery_message))
        self.xmpp.register_handler(Callback(
            "mls sync", MatchXPath(f"{{{default_ns}}}message/{{{ns.NS}}}{ns.SYNC}"),
            self._on_sync))
        self.xmpp.register_handler(Callback(
            "mls room presence", MatchXPath(f"{{{default_ns}}}presence"), self._on_presence))
        self.xmpp.add_event_handler("session_start", self._on_session_start)

    def plugin_end(self) -> None:
        self.xmpp.remove_handler("mls delivery")
        self.xmpp.remove_handler("mls sync")
        self.xmpp.remove_handler("mls room presence")
        self.xmpp.del_event_handler("session_start", self._on_session_start)
        if self._worker is not None:
            self._worker.cancel()

    async def stop(self) -> None:
        """End the delivery worker and the background tasks, and wait for them (before
        the client disconnects for good: nothing is left pending)."""
        tasks = [task for task in (self._worker, *self._tasks) if task is not None]
        self._worker = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- HubLink ----------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return ns.URI_SCHEME + self.xmpp.boundjid.bare

    def attach(self, sink: DeliverySink) -> None:
        """Hand deliveries to ``sink`` from now on."""
        self.sink = sink
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._run())

    async def request(self, request: Inbound) -> Outbound:
        """Send one request to the hub and return its reply (LinkError if impossible).
        A group created for one of the hub's rooms is created from inside it: the room
        is entered first (its first occupant becomes its owner, XEP-0045 §10.1, and
        only a room's moderators may give it a group)."""
        if request.op == Op.CREATE_GROUP and request.transport == ns.TRANSPORT_NAME \
                and request.room_id and JID(request.room_id).bare not in self.rooms:
            await self.join_room(request.room_id)
        place = await placements(self.uploader, list(blobs_of(request)), self.stanza_limit)
        element = encode_request(request, place)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_window
        delay = 0.2
        while True:
            try:
                reply = await self._round_trip(request, element)
                break
            except HubUnreachable:
                if loop.time() + delay > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)
        if reply.ok:
            await self._after_reply(request, reply)
        return reply

    async def _round_trip(self, request: Inbound, element: ET.Element) -> Outbound:
        iq = self.xmpp.Iq()
        iq["to"] = JID(self.hub)
        iq["type"] = "get" if request.op in ns.READ_OPS else "set"
        iq.xml.append(element)
        try:
            result = await iq.send(timeout=self.timeout)  # type: ignore[no-untyped-call]
        except IqTimeout as exc:
            raise XmppLinkError(f"{request.op}: no reply from {self.hub} "
                                f"in {self.timeout} s") from exc
        except IqError as exc:
            error = exc.iq["error"]
            rejected = error.xml.find(f"{{{ns.NS}}}{ns.REJECTED}")
            if rejected is None and error["condition"] in BOUNCES:
                raise HubUnreachable(f"{self.hub}: {error['condition']}") from exc
            return decode_rejected(rejected, error["text"], error["condition"],
                                   request.request_id)
        except ConnectionError as exc:  # slixmpp's NotConnectedError is not one
            raise XmppLinkError(f"{request.op}: {exc}") from exc
        reply_el = find(result, ns.REPLY)
        if reply_el is None:
            raise XmppLinkError(f"{request.op}: result without <reply/>")
        try:
            return decode_reply(reply_el, await resolver(self.uploader, reply_el))
        except (WireError, UploadError) as exc:
            raise XmppLinkError(f"{request.op}: bad reply: {exc}") from exc

    async def _after_reply(self, request: Inbound, reply: Outbound) -> None:
        """Transport bookkeeping: rooms to join, where a group's sequence starts."""
        group_id = reply.group_id or request.group_id
        if request.op == Op.CREATE_GROUP:
            self.cursors.setdefault(group_id, 0)
            if request.transport == ns.TRANSPORT_NAME and request.room_id:
                self.rooms[JID(request.room_id).bare] = group_id
        elif request.op == Op.SUBMIT_COMMIT and group_id not in self.cursors:
            self.cursors[group_id] = reply.seq  # our external commit: we start after it
        if request.op in (Op.SEND, Op.SUBMIT_COMMIT) and reply.seq:
            self._spawn(self._check_head(group_id, reply.seq))

    # -- rooms ----------------------------------------------------------------------------

    async def join_room(self, room: str, group_id: bytes = b"") -> None:
        """Enter ``room@hub`` (MUC-style presence) and catch up on its group's log."""
        room = JID(room).bare
        self.rooms[room] = group_id or self.rooms.get(room, b"")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joined[room] = waiter
        nick = self.nick or f"{self.xmpp.boundjid.user}-{self.xmpp.boundjid.resource[:8]}"
        presence = self.xmpp.make_presence(pto=f"{room}/{nick}")
        muc = ET.SubElement(presence.xml, f"{{{ns.NS_MUC}}}x")
        ET.SubElement(muc, f"{{{ns.NS_MUC}}}history", {"maxstanzas": "0"})
        ET.SubElement(presence.xml, f"{{{ns.NS}}}{ns.CLIENT}")  # not a relayed occupant
        presence.send()
        try:
            await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError as exc:
            raise XmppLinkError(f"no self-presence from {room}") from exc
        if group_id and group_id in self.cursors:
            self._queue.put_nowait(("fetch", group_id))

    def leave_room(self, room: str) -> None:
        """Leave ``room`` deliberately (``<leave/>``): the hub proposes our Remove at once."""
        room = JID(room).bare
        self.rooms.pop(room, None)
        presence = self.xmpp.make_presence(pto=room, ptype="unavailable")
        ET.SubElement(presence.xml, f"{{{ns.NS}}}{ns.LEAVE}")
        presence.send()

    def _on_presence(self, stanza: StanzaBase) -> None:
        presence = cast(Presence, stanza)
        origin = presence["from"]
        if origin.domain != self.hub or not origin.user:
            return
        def status(code: str) -> bool:
            return presence.xml.find(
                f"{{{ns.NS_MUC_USER}}}x/{{{ns.NS_MUC_USER}}}status[@code='{code}']"
            ) is not None

        if presence["type"] != "error" and not status("110"):
            return  # another occupant's presence (XEP-0045 §7.2.3), not ours
        waiter = self._joined.pop(origin.bare, None)
        if presence["type"] == "error":  # entry refused (an outcast, XEP-0045 §9.1)
            self.rooms.pop(origin.bare, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(XmppLinkError(
                    f"{origin.bare} refused entry: {presence['error']['condition']}"))
        elif presence["type"] != "unavailable":
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif origin.bare in self.rooms and any(status(c) for c in ("301", "307", "321")):
            self.rooms.pop(origin.bare, None)  # kicked, banned, or no longer a member

    # -- deliveries ---------------------------------------------------------------------------

    def _on_delivery_message(self, stanza: StanzaBase) -> None:
        message = cast(Message, stanza)
        if message["from"].domain != self.hub or message["type"] == "error":
            return  # only the hub component may deliver
        self._queue.put_nowait(("stanza", message))

    def _on_sync(self, stanza: StanzaBase) -> None:
        message = cast(Message, stanza)
        if message["from"].domain == self.hub:
            self._queue.put_nowait(("sync", None))

    def _on_session_start(self, _event: Any) -> None:
        """(Re)connected: tell the hub we are online (it re-sends Welcomes that bounced
        while we were away), re-enter our rooms, catch up on every group's log."""
        self.uploader.forget_service()
        if self.hub:
            self.xmpp.make_presence(pto=self.hub).send()
        for room, group_id in list(self.rooms.items()):
            self._spawn(self.join_room(room, group_id))
        if self.sink is not None:
            self._queue.put_nowait(("sync", None))

    async def _check_head(self, group_id: bytes, seq: int) -> None:
        await asyncio.sleep(1.0)
        if self.cursors.get(group_id, seq) < seq:
            self._queue.put_nowait(("fetch", group_id))

    async def _run(self) -> None:
        """The one task that talks to the sink: ordered, deduplicated, gap-filled."""
        while True:
            what, item = await self._queue.get()
            try:
                if what == "stanza":
                    await self._on_stanza(item)
                elif what == "fetch":
                    await self._fetch(item)
                elif what == "sync":
                    for group_id in list(self.cursors):
                        await self._fetch(group_id)
            except (XmppLinkError, WireError, UploadError) as exc:
                log.warning("%s: %s failed: %s", self.identity, what, exc)

    async def _on_stanza(self, message: Message) -> None:
        element = find(message, ns.DELIVERY)
        if element is None:
            return
        delivery = decode_delivery(element, await resolver(self.uploader, element))
        if delivery.kind == Kind.WELCOME:
            await self._on_welcome(delivery, message["from"].bare)
            return
        cursor = self.cursors.get(delivery.group_id)
        if cursor is not None and delivery.seq > cursor + 1:
            await self._fetch(delivery.group_id, until=delivery.seq - 1)
        await self._hand_over(delivery)

    async def _on_welcome(self, welcome: Outbound, sent_from: str) -> None:
        key = (welcome.group_id, welcome.seq)
        if key in self._welcomes or self.sink is None:
            return
        self._welcomes.add(key)
        await self.sink.deliver(welcome)
        if welcome.group_id not in self.cursors or self.cursors[welcome.group_id] < welcome.seq:
            self.cursors[welcome.group_id] = welcome.seq
        rooms = [r for t, r in welcome.rooms if t == ns.TRANSPORT_NAME]
        if not rooms and JID(sent_from).user and JID(sent_from).domain == self.hub:
            rooms = [sent_from]
        for room in rooms:
            if room not in self.rooms:
                self._spawn(self.join_room(room, welcome.group_id))

    async def _fetch(self, group_id: bytes, until: int = 0) -> None:
        """Hand over the log entries after our cursor (up to ``until`` if given)."""
        while True:
            after = self.cursors.get(group_id, 0)
            reply = await self.request(Inbound(
                op=Op.FETCH_LOG.value, sender=self.identity, group_id=group_id,
                after_seq=after, limit=LOG_PAGE, request_id=f"log-{after}"))
            if not reply.ok:
                log.info("%s: log fetch refused: %s", self.identity, reply.reason)
                return
            for entry in reply.entries:
                if not until or entry.seq <= until:
                    await self._hand_over(entry)
            # the hub may trim a page to fit one stanza: stop only on an empty page
            if not reply.entries or (until and self.cursors.get(group_id, 0) >= until):
                return
            if self.cursors.get(group_id, 0) == after:
                return  # nothing new handed over (entries before our cursor)

    async def _hand_over(self, delivery: Outbound) -> None:
        key = (delivery.group_id, delivery.seq)
        if key in self._seen or self.sink is None:
            return
        self._seen[key] = None
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        if delivery.seq > self.cursors.get(delivery.group_id, 0):
            self.cursors[delivery.group_id] = delivery.seq
        await self.sink.deliver(delivery)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until the stanzas received so far were handed to the sink."""
        while not self._queue.empty():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)


def register(client: Any, hub: str, **config: Any) -> MLSClientPlugin:
    """Register ``mls_client`` on ``client`` for the hub component ``hub``."""
    register_plugin(MLSClientPlugin)
    client.register_plugin("mls_client", {"hub": hub, **config})
    plugin: MLSClientPlugin = client.plugin["mls_client"]
    return plugin
