"""The hub side of the XMPP binding: an XEP-0114 component hosting the MLS rooms.

The component (``mls.example``) hosts every room itself (``room@mls.example``), so each
message passes the hub (DESIGN.md, "Wire binding"). It

* answers IQ requests (one element per :class:`transports.interface.Op`, see
  :mod:`transports.xmpp.stanzas`) by calling :meth:`HubService.handle` with the
  requester :func:`requester` builds: ``xmpp:`` + the bare JID of the stanza's
  ``from`` (what the server authenticated; nothing inside the payload names the
  sender) and network ``xmpp`` -- each request admitted first, per sender, with a
  rate limit and a fair queue (:mod:`transports.xmpp.requests`);
* is the room service of its rooms: their XEP-0045 affiliations, owners by creation
  (§10.1) or configuration (:mod:`transports.xmpp.rooms`), the muc#admin IQ
  (:mod:`transports.xmpp.admin`), and :meth:`MLSComponent.role` for the hub (its
  :class:`transports.interface.RoomDirectory`);
* keeps occupants from MUC-style presence (``room@mls.example/nick``); an occupant's
  last ``unavailable`` presence becomes a leave :class:`transports.interface.NetworkEvent`
  (the hub's Remove proposal): at once when it carries ``<leave
  xmlns='urn:mlsbridge:0'/>`` (the member left), after ``leave_grace`` seconds without
  a rejoin otherwise (a dropped connection or a server restart must not remove
  everyone); a kick, a ban or a revoked membership by an owner or admin is a network
  event too, and ends the target's occupancy;
* reconnects with exponential backoff after losing the server, then sends ``<sync/>`` to
  every occupant so members fetch whatever fan-out the outage swallowed (sequence numbers
  make the catch-up exact: nothing lost, nothing delivered twice);
* fans the hub's deliveries out to the occupants of a group's rooms, or, for a group
  with no room on this component (a group living in a Matrix room, say), to each XMPP
  recipient's bare JID, and sends Welcomes (:mod:`transports.xmpp.fanout`);
* keeps nicknames apart (:mod:`transports.xmpp.nicks`): an entry or nick change
  whose nickname, folded, is another occupant's or one the room reserves (the
  observer's :meth:`RoomObserver.reserved`) is refused with ``<conflict/>``
  (XEP-0045 §7.2.9);
* tells a :class:`RoomObserver` (the bridge's relay) about occupants joining a room --
  and whether their join presence carried ``<client xmlns='urn:mlsbridge:0'/>``, i.e.
  whether they say they run an MLS client -- and about plain ``groupchat`` bodies sent
  to a room; :attr:`MLSComponent.info` (:mod:`transports.xmpp.roominfo`) switches a
  room's relay mode, says it (disco#info, subject, a notice to everyone entering) and
  sends plain text back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from xml.etree import ElementTree as ET

from slixmpp import JID, ComponentXMPP
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback, CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath

from transports.fairness import Admission, LimitObserver, RequestLimits
from transports.interface import (
    HubService,
    Membership,
    Network,
    NetworkEvent,
    Op,
    Outbound,
    Role,
)
from transports.xmpp import namespace as ns
from transports.xmpp.adhoc import AdHocCommands
from transports.xmpp.admin import RoomAdmin
from transports.xmpp.errors import ComponentAuthError, XmppLinkError
from transports.xmpp.fanout import FanOut
from transports.xmpp.limits import RoomLimits
from transports.xmpp.mam import NS_MAM, ArchiveService
from transports.xmpp.markup import Markup
from transports.xmpp.markup import parse as parse_markup
from transports.xmpp.nicks import Reservation, refusal
from transports.xmpp.occupants import OccupantPresence
from transports.xmpp.requests import RequestService, requester
from transports.xmpp.roominfo import RoomInfo
from transports.xmpp.rooms import OUTCAST, Affiliations, AffiliationStore
from transports.xmpp.stanzas import register_plugins
from transports.xmpp.upload import LOOPBACK_HOSTS, Uploader
from transports.xmpp.welcomes import HeldWelcomes, StateStore

log = logging.getLogger(__name__)

OCCUPANTS_KEY = "xmpp-occupants"
CLIENT_OPS = tuple(Op)  # every op reaches the hub, which refuses KICK and ATTACH_ROOM


class RoomObserver(Protocol):
    """Room activity that is not MLS traffic (implemented by the bridge's relay)."""

    async def occupant_joined(self, room: str, occupant: str, nick: str,
                              mls_client: bool) -> None: ...

    async def plain_message(self, room: str, occupant: str, nick: str, body: str,
                            markup: Markup) -> None:
        """A plain groupchat message: its body ("" if none) and its XEP markup
        (:mod:`transports.xmpp.markup`: corrections, replies, retractions, reactions,
        files)."""
        ...

    def reserved(self, room: str) -> Reservation:
        """The names ``room`` keeps for their owners (:mod:`transports.xmpp.nicks`)."""
        ...


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    """Where and how the component connects; ``stanza_limit`` in bytes."""

    jid: str
    secret: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 5347
    stanza_limit: int = 256 * 1024
    upload: bool = True
    upload_hosts: frozenset[str] = LOOPBACK_HOSTS
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    name: str = "MLS delivery hub"
    admins: frozenset[str] = frozenset()  # service administrators: owners of every room
    leave_grace: float = 60.0  # seconds an implicit departure waits before Op.LEAVE
    limits: RequestLimits = field(default_factory=RequestLimits)  # transports.fairness


def xmpp_identity(jid: JID) -> str:
    """The identity URI of an XMPP entity: ``xmpp:`` + its bare JID."""
    return ns.URI_SCHEME + jid.bare


class MLSComponent:
    """The XEP-0114 component: the hub's XMPP transport (a :class:`Deliverer`)."""

    def __init__(
        self, config: ComponentConfig, state: StateStore | None = None,
        affiliations: AffiliationStore | None = None,
    ) -> None:
        self.config = config
        self.rooms = Affiliations(affiliations, config.admins)
        self._hub: HubService | None = None
        self._observer: RoomObserver | None = None
        self._state = state
        self.xmpp = ComponentXMPP(  # type: ignore[no-untyped-call]
            config.jid, config.secret, config.host, config.port)
        for plugin in ("xep_0030", "xep_0004", "xep_0050"):
            self.xmpp.register_plugin(plugin)
        register_plugins()
        self._uploader = Uploader(
            self.xmpp, domain=JID(config.jid).domain.split(".", 1)[-1],
            allowed_hosts=config.upload_hosts, enabled=config.upload,
            max_download=config.limits.max_request,
        )
        self.requests = RequestService(self._hub_now, self._uploader, self.iq_error,
                                       config.stanza_limit, config.limits)
        # room JID -> occupant full JID -> nick
        self.occupants: dict[str, dict[str, str]] = {}
        # disco#info, subject, notices, relay mode and the relay's plain text
        self.info = RoomInfo(self.xmpp, lambda room: list(self.occupants.get(room, {})))
        # occupant presence (XEP-0045 §7.2.3), relayed users of the other network included
        self.presence = OccupantPresence(self.xmpp, self.rooms,
                                         lambda room: self.occupants.get(room, {}),
                                         lambda room: room in self.info.relayed)
        # Welcomes sent recently (stanza id -> bare JID, stanza) and those that bounced
        # because the user was offline (bare JID -> stanzas), re-sent on its presence.
        self._welcomes = HeldWelcomes(self._send_raw, state, self._spawn)
        #: the hub's deliveries to occupants, recipients and joiners
        self.fanout = FanOut(self.xmpp, config.jid, self._uploader, config.stanza_limit,
                             lambda room: self.occupants.get(room, {}), self._welcomes, state)
        self._pending_leaves: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.limits = RoomLimits()
        self._ready = asyncio.Event()
        self._stopping = False
        self._auth_failed = ""
        self._handshaking = False
        self._ever_ready = False
        self._backoff = config.backoff_initial
        self._reconnect_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.admin = RoomAdmin(self)
        #: XEP-0050 room commands (bridge, unbridge, relay, status); the bridge runs them
        self.commands = AdHocCommands(self.xmpp, config.jid)
        #: XEP-0313 for relayed rooms; the archive is the relay's (``mam.archive``)
        self.mam = ArchiveService(self)
        self._install_handlers()

    # -- lifecycle ---------------------------------------------------------------

    def bind(self, hub: HubService) -> None:
        """Set the hub this component serves (the hub may need the component first)."""
        self._hub = hub

    @property
    def uploader(self) -> Uploader:
        """The component's XEP-0363 client (its host allow-list and download cap)."""
        return self._uploader

    def _hub_now(self) -> HubService | None:
        return self._hub

    def observe(self, observer: RoomObserver | None) -> None:
        """Report joins and plain groupchat messages to ``observer``."""
        self._observer = observer

    async def start(self, timeout: float = 20.0) -> None:
        """Connect and authenticate; :class:`ComponentAuthError` if refused."""
        if self._state is not None:
            saved = await self._state.load(OCCUPANTS_KEY)
            if saved:
                self.occupants = {room: dict(occ) for room, occ in json.loads(saved).items()}
        await self.fanout.load()
        await self._welcomes.load()
        await self.rooms.load()
        self._stopping = False
        self.xmpp.connect()
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while not waiter.done():
                if self._auth_failed:
                    raise ComponentAuthError(self._auth_failed)
                if asyncio.get_running_loop().time() > deadline:
                    raise ComponentAuthError(f"no handshake with the server in {timeout} s")
                await asyncio.wait({waiter}, timeout=0.05)
        except ComponentAuthError:
            await self.stop()
            raise
        finally:
            waiter.cancel()

    async def stop(self, wait: float = 1.0) -> None:
        """Disconnect for good, also from a server already gone: queued stanzas are
        sent, the stream closed (``wait`` s for the server's side, then dropped), and
        every task ends -- the component's and slixmpp's send loop."""
        self._stopping = True
        self.xmpp.cancel_connection_attempt()
        try:
            with contextlib.suppress(XmppLinkError):
                await self.xmpp.disconnect(wait=wait)
        finally:
            self.xmpp.cancel_connection_attempt()
            self._ready.clear()
            for room, bare in self._pending_leaves:
                log.warning("leave of %s from %s not proposed: stopped within its grace "
                            "period", bare, room)
            self._pending_leaves.clear()
            await self.requests.admission.queue.close()  # what is still queued or running
            sender = self.xmpp._run_out_filters  # slixmpp's send loop, started by connect()
            others = [task for task in (self._reconnect_task, sender) if task is not None]
            self._reconnect_task = None
            # until none is left: a task may spawn another while it ends
            while tasks := [task for task in (*self._tasks, *others) if not task.done()]:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def _install_handlers(self) -> None:
        x = self.xmpp
        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("connected", self._on_connected)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("stream_error", self._on_stream_error)
        default_ns = x.default_ns
        for op in CLIENT_OPS:
            x.register_handler(CoroutineCallback(
                f"mls {op.value}",
                MatchXPath(f"{{{default_ns}}}iq/{{{ns.NS}}}{op.value}"),
                self.requests.on_request,
            ))
        x.register_handler(CoroutineCallback(
            "muc admin", MatchXPath(f"{{{default_ns}}}iq/{{{ns.NS_MUC_ADMIN}}}query"),
            self.admin.on_admin,
        ))
        x.register_handler(CoroutineCallback(
            "mam", MatchXPath(f"{{{default_ns}}}iq/{{{NS_MAM}}}query"), self.mam.on_query,
        ))
        x.register_handler(Callback(
            "mls presence", MatchXPath(f"{{{default_ns}}}presence"), self._on_presence,
        ))
        x.register_handler(Callback(
            "mls bounce", MatchXPath(f"{{{default_ns}}}message"), self._on_message,
        ))

    def _on_session_start(self, _event: Any) -> None:
        self._handshaking = False
        self._backoff = self.config.backoff_initial
        disco = self.xmpp.plugin["xep_0030"]
        disco.add_identity(category="component", itype="generic", name=self.config.name,
                           jid=JID(self.config.jid))
        disco.add_feature(ns.FEATURE, jid=JID(self.config.jid))
        if not self._ever_ready:
            self.commands.register()
        rooms = {*self.occupants, *self.info.relayed, *self.rooms.rooms, *self.fanout.rooms()}
        for room in rooms:
            self.info.advertise(room)  # persistent rooms: even without occupants
        self._uploader.forget_service()
        self._ready.set()
        self._send_sync()
        self._ever_ready = True
        log.info("component %s connected", self.config.jid)

    def _on_stream_error(self, error: Any) -> None:
        condition = error["condition"] if error is not None else ""
        if condition in ("not-authorized", "host-unknown", "conflict"):
            self._auth_failed = f"server refused component {self.config.jid}: {condition}"

    def _on_connected(self, _event: Any) -> None:
        self._handshaking = True

    def _on_disconnected(self, _reason: Any) -> None:
        if self._handshaking and not self._ever_ready and not self._auth_failed:
            self._auth_failed = (f"server refused component {self.config.jid}: stream "
                                 "closed during the handshake (wrong secret or name?)")
        self._handshaking = False
        self._ready.clear()
        if self._stopping or self._auth_failed:
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.config.backoff_max)
        log.warning("component %s disconnected; reconnecting in %.1f s", self.config.jid, delay)
        await asyncio.sleep(delay)
        if not self._stopping:
            self.xmpp.connect()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Future[Any]) -> None:
        """A background task ended: forget it; log its failure (never left unretrieved)."""
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("component task failed: %s: %s", type(error).__name__, error)

    # -- requests ------------------------------------------------------------------

    def watch(self, observer: LimitObserver) -> None:
        """Report refusals, drops and queue depths to ``observer`` (the metrics)."""
        self.requests.admission.watch(observer)
        self.limits.observer = self._welcomes.observer = observer

    @property
    def admission(self) -> Admission:
        return self.requests.admission

    def iq_error(self, iq: Iq, condition: str, error_type: str, text: str,
                  extra: ET.Element | None = None) -> None:
        error = iq.reply(clear=True)  # type: ignore[no-untyped-call]
        error["type"] = "error"
        error["error"]["condition"] = condition
        error["error"]["type"] = error_type
        error["error"]["text"] = text
        if extra is not None:
            error["error"].xml.append(extra)
        error.send()

    # -- rooms: roles and configuration ------------------------------------------------

    async def role(self, room: str, identity: str) -> Role:
        """:class:`transports.interface.RoomDirectory`: ``identity``'s role in one of
        our rooms, from its affiliation (an identity of another network holds none)."""
        if not identity.startswith(ns.URI_SCHEME):
            return Role.NONE
        return self.rooms.role(JID(room).bare, identity)

    async def configure_room(self, room: str, owners: list[str]) -> None:
        """A room of a configured pair: its owners are the configuration's (its XMPP
        ``admins``), never its first occupant."""
        await self.rooms.configure(JID(room).bare,
                                   [o for o in owners if o.startswith(ns.URI_SCHEME)])

    # -- presence: occupancy, leaves ---------------------------------------------------

    def _on_presence(self, stanza: StanzaBase) -> None:
        presence = cast(Presence, stanza)
        room_jid, bare, kind = presence["to"], presence["from"].bare, presence["type"]
        if not self.limits.presence(bare, kind):
            return  # over the presence rate (transports.xmpp.limits)
        if kind != "unavailable":
            self._welcomes.online(bare)
        if not room_jid.user or room_jid.domain != self.config.jid:
            return
        room, occupant = room_jid.bare, presence["from"].full
        if kind in ("available", "", "chat", "away", "xa", "dnd"):
            if self.rooms.of(room, requester(presence)[0]) == OUTCAST:
                self.admin.refuse_entry(presence)  # banned: XEP-0045 §9.1
                return
            if not self.limits.may_enter(self.occupants, room, bare, self.rooms):
                self.admin.refuse_entry(presence, "resource-constraint", "wait")
                return
            mls_client = presence.xml.find(f"{{{ns.NS}}}{ns.CLIENT}") is not None
            nick = room_jid.resource or presence["from"].user
            why = self._nick_refusal(room, occupant, nick)
            if why:  # XEP-0045 §7.2.9 (entry), §7.6 (nick change)
                self.admin.refuse_entry(presence, "conflict", "cancel", why)
                return
            self._join(room, occupant, nick, mls_client)
        elif kind == "unavailable":
            explicit = presence.xml.find(f"{{{ns.NS}}}{ns.LEAVE}") is not None
            self._part(room, occupant, explicit=explicit)

    def _nick_refusal(self, room: str, occupant: str, nick: str) -> str:
        """Why ``occupant`` may not be ``nick`` in ``room`` ("" if it may)."""
        others = {o: n for o, n in self.occupants.get(room, {}).items() if o != occupant}
        reservation = Reservation() if self._observer is None else \
            self._observer.reserved(room)
        return refusal(others, occupant, nick, reservation)

    def _join(self, room: str, occupant: str, nick: str, mls_client: bool = True) -> None:
        pending = self._pending_leaves.pop((room, JID(occupant).bare), None)
        if pending is not None:
            pending.cancel()  # back within the grace period: not a departure
        first = room not in self.occupants
        identity = ns.URI_SCHEME + JID(occupant).bare
        created = not self.occupants.get(room) and self.rooms.created_by(room, identity)
        if created:
            self._spawn(self.rooms.save(room, identity))
        members = self.occupants.setdefault(room, {})
        old_nick = members.get(occupant)
        members[occupant] = nick
        if old_nick is None and self._observer is not None:
            self._spawn(self._observer.occupant_joined(room, occupant, nick, mls_client))
        if first:
            self.info.advertise(room)
        self._spawn(self._save_occupants())
        if old_nick is None:  # XEP-0045 §7.2.3: presences, then history notice, subject
            self.presence.entered(room, occupant, nick, created)
            self.info.greet(room, occupant)
        elif old_nick != nick:
            self.presence.renamed(room, occupant, old_nick, nick)  # §7.6
        else:
            self.presence.again(room, occupant, nick)

    def _part(self, room: str, occupant: str, *, explicit: bool) -> None:
        members = self.occupants.get(room, {})
        nick = members.pop(occupant, None)
        if nick is None:
            return
        self._spawn(self._save_occupants())
        self.presence.left(room, occupant, nick)
        bare = JID(occupant).bare
        if any(JID(other).bare == bare for other in members):
            return  # another resource of the same account is still in the room
        identity = ns.URI_SCHEME + bare
        leave = NetworkEvent(Network.XMPP, room, identity, identity, Membership.JOINED,
                             Membership.NONE)
        if explicit or self.config.leave_grace <= 0:
            self._spawn(self.report(leave))
            return
        # An unavailable presence without <leave/> may be a dropped connection or a
        # server restart: it becomes a Remove only if the user does not come back.
        previous = self._pending_leaves.pop((room, bare), None)
        if previous is not None:
            previous.cancel()
        if not self.limits.may_wait(self._pending_leaves, bare):
            self._spawn(self.report(leave))
            return
        task = asyncio.ensure_future(self._leave_after_grace(room, bare, leave))
        self._pending_leaves[(room, bare)] = task
        self._tasks.add(task)
        task.add_done_callback(self._spawned_done)

    async def _leave_after_grace(self, room: str, bare: str, leave: NetworkEvent) -> None:
        await asyncio.sleep(self.config.leave_grace)
        self._pending_leaves.pop((room, bare), None)
        if not any(JID(o).bare == bare for o in self.occupants.get(room, {})):
            await self.report(leave)

    async def report(self, event: NetworkEvent) -> None:
        """Hand a room membership change to the hub (it decides whether to act)."""
        if self._hub is None:
            return
        reply = await self._hub.network_event(event)
        if not reply.ok:
            log.info("hub did not act on %s of %s in %s: %s", event.after, event.target,
                     event.room, reply.code)

    def archived(self, room: str) -> bool:
        """Whether ``room`` keeps an archive (XEP-0313): relayed rooms do."""
        return room in self.info.relayed

    def occupancy_changed(self) -> None:
        """Save the occupants (after the room administration changed them)."""
        self._spawn(self._save_occupants())

    def _on_message(self, stanza: StanzaBase) -> None:
        """A plain groupchat body from an occupant goes to the observer. An error
        bounce: a Welcome to an offline user is held until the user sends us presence;
        an occupant that bounces is gone (dropped, no Remove proposal)."""
        message = cast(Message, stanza)
        if message["type"] == "groupchat":
            self._on_groupchat(message)
            return
        if message["type"] != "error":
            return
        bounced_to = self._welcomes.bounced(message["id"])
        if bounced_to is not None:
            log.info("Welcome to %s bounced; held until it is online", bounced_to)
            return
        occupant = message["from"].full
        for room, members in self.occupants.items():
            nick = members.pop(occupant, None)
            if nick is not None:  # the others see it go (XEP-0045 §7.14)
                self.presence.left(room, occupant, nick)
        self._spawn(self._save_occupants())

    def _on_groupchat(self, message: Message) -> None:
        room, occupant = message["to"].bare, message["from"].full
        nick = self.occupants.get(room, {}).get(occupant)
        body, markup = message["body"], parse_markup(message.xml)
        if nick is None or (not body and markup.empty) or self._observer is None:
            return  # only occupants speak in a room; MLS traffic has neither
        self._spawn(self._observer.plain_message(room, occupant, nick, body, markup))

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every stanza sent so far is written to the connection (the
        kernel delivers it even if this process dies next); False after ``timeout``."""
        try:
            await asyncio.wait_for(self.xmpp.waiting_queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def _save_occupants(self) -> None:
        if self._state is not None:
            await self._state.save(OCCUPANTS_KEY, json.dumps(self.occupants, sort_keys=True))

    def _send_sync(self) -> None:
        """Tell every occupant to check its log (after (re)connecting)."""
        for room, members in self.occupants.items():
            for occupant in members:
                message = self.xmpp.make_message(mto=occupant, mfrom=room, mtype="headline")
                ET.SubElement(message.xml, f"{{{ns.NS}}}{ns.SYNC}")
                message.send()

    # -- fan-out (Deliverer) ---------------------------------------------------------

    async def deliver(self, message: Outbound) -> None:
        """Send a delivery to its recipients (groupchat per occupant, or a Welcome):
        :class:`transports.xmpp.fanout.FanOut`."""
        await self.fanout.deliver(message)

    def _send_raw(self, xml: str) -> None:
        self.xmpp.send_raw(xml)
