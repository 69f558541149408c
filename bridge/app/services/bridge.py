"""One hub for both networks: an MLS group across an XMPP room and a Matrix room.

:class:`BridgeService` runs ONE :class:`bridge.hub.Hub` over one store with both hub-side
transports attached -- the XEP-0114 component (:mod:`transports.xmpp.component`) and the
Matrix bot (:mod:`transports.matrix.bot`). Whichever network a request arrives on, the
same hub orders it, so commits from both sides share one epoch sequence (RFC 9750 §5.2),
the KeyPackage directory is one directory keyed by identity URI (a Matrix member claims
``xmpp:bob@example.org``'s KeyPackage and vice versa), and the Welcome goes to the joiner
over its own network.

Deliveries go through :class:`bridge.app.services.routing.RoutingDeliverer`: each
recipient over the network its URI names (``xmpp:`` via the component, ``matrix:u/`` via
the bot, relay puppets in-process), and room-visible events (commits, proposals,
application messages) into every room the group is attached to. The bridge never
decrypts in this mode: it moves the same ciphertext to both sides, and the sender every
member sees is the MLS credential's URI.

Rooms are paired in configuration (:class:`RoomPair`, built by
:func:`bridge.app.runtime.build_service` from the ``[[bridge.rooms]]`` list that
:mod:`bridge.app.config` validated), each with its join policy and administrators,
which the hub's authorization adopts (:meth:`bridge.hub.authz.Authorizer.configure`;
the XMPP room's owners become the pair's XMPP administrators). When a moderator of one
room of a pair creates its group there, the bridge attaches the other room too; at
start-up and on :meth:`BridgeService.attach_rooms` it completes pairs whose group
already exists. Nobody attaches a room by request: the hub refuses it, so nobody can
point a group at a room the bridge happens to sit in. Both transports are the hub's
room directories (room roles), and both hand their room membership changes to
:meth:`BridgeService.network_event`.

``relay = true`` on a pair turns on relay mode for it (:mod:`bridge.relay`): the bridge
then holds an MLS leaf per legacy user and encryption ends at the bridge -- off by
default, announced to everyone in both rooms when it is turned on and when it is turned
off again. The puppets' secrets live in their own file (``relay_secrets``, opened and
closed by the caller), never in the store. Every request a network user
makes of the hub shows that it runs an MLS client; the relay never puppets it
(:meth:`bridge.relay.Relay.mls_client_seen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.app.logs import event
from bridge.app.services.commands import RoomCommandService
from bridge.app.services.matrix import MatrixService, MatrixServiceConfig
from bridge.app.services.routing import RoutingDeliverer
from bridge.app.services.xmpp import StoreState
from bridge.app.shutdown import Shutdown, Step
from bridge.errors import BridgeConfigError
from bridge.hub import Hub, HubConfig, HubIdentity
from bridge.hub.policy import JoinPolicy, RoomPolicy
from bridge.hub.store import Store, StoredPair
from bridge.relay import PuppetSecrets, Relay
from transports.fairness import LimitObserver
from transports.interface import (
    Inbound,
    Kind,
    Membership,
    NetworkEvent,
    Op,
    Outbound,
    network_of,
)
from transports.matrix import namespace as matrix_ns
from transports.matrix.bot import MatrixHubBot
from transports.matrix.errors import HomeserverError
from transports.matrix.media import MediaFetcher
from transports.xmpp import namespace as xmpp_ns
from transports.xmpp.component import ComponentConfig, MLSComponent

log = logging.getLogger(__name__)

XMPP = xmpp_ns.TRANSPORT_NAME
MATRIX = matrix_ns.TRANSPORT_NAME


@dataclass(frozen=True, slots=True)
class RoomPair:
    """One XMPP room (``room@component``) and one Matrix room (``!id:server``) that
    carry the same MLS group. ``relay``: decrypt for users without an MLS client;
    ``join``: who may join by external commit; ``admins``: identity URIs that
    administer the pair (owners of its XMPP room; moderators of its room on their own
    network, who may create its group)."""

    xmpp_room: str
    matrix_room: str
    relay: bool = False
    join: JoinPolicy = JoinPolicy.INVITE
    admins: frozenset[str] = frozenset()

    def room(self, transport: str) -> str:
        return self.xmpp_room if transport == XMPP else self.matrix_room

    def policy(self) -> RoomPolicy:
        return RoomPolicy(((XMPP, self.xmpp_room), (MATRIX, self.matrix_room)), self.join,
                          self.admins)


class BridgeService:
    """Hub + store + XMPP component + Matrix bot (+ relay) in one process.

    ``store`` is opened by the caller and closed by :meth:`stop`, last;
    ``relay_secrets`` (the puppets' secrets; None: kept in memory, for tests) is opened
    and closed by the caller. ``xmpp`` / ``matrix`` configure the networks (either may
    be None for a one-network hub); ``rooms`` are the configured room pairs (validated
    by :mod:`bridge.app.config`). Lifecycle: :meth:`start`, then :meth:`stop` (or
    :meth:`run_until`). The service is the :class:`HubService` both transports call.
    """

    def __init__(self, store: Store, identity: HubIdentity, *,
                 xmpp: ComponentConfig | None = None,
                 matrix: MatrixServiceConfig | None = None,
                 rooms: Sequence[RoomPair] = (), hub_config: HubConfig | None = None,
                 relay_secrets: PuppetSecrets | None = None, relay_archive: int = 1000,
                 shutdown_timeout: float = 10.0, connect_timeout: float = 20.0) -> None:
        if xmpp is None and matrix is None:
            raise BridgeConfigError("configure at least one network (xmpp or matrix)")
        self.store = store
        self.identity = identity
        self.xmpp_config = xmpp
        self.matrix_config = matrix
        self.shutdown_timeout = shutdown_timeout
        self.connect_timeout = connect_timeout
        self.deliverer = RoutingDeliverer()
        self.hub = Hub(store, identity, self.deliverer, config=hub_config)
        self.component: MLSComponent | None = None
        self.matrix: MatrixService | None = None
        self.bot: MatrixHubBot | None = None
        self.relay = Relay(store, self.hub, self.deliverer, secrets=relay_secrets,
                           archive=relay_archive)
        #: who hears of refusals, drops and queue depths at the transports (the metrics)
        self.limit_observer: LimitObserver | None = None
        self.pairs: dict[tuple[str, str], RoomPair] = {}
        self._initial_pairs = tuple(rooms)
        self._flights: dict[object, tuple[asyncio.Task[Any] | None, str]] = {}
        self._cut_requests: list[str] = []
        self._fanout_dropped_at_close: dict[tuple[bytes, str], int] = {}
        #: XMPP rooms of the pairs made at run time (the store's, not the configuration's)
        self.runtime_rooms: set[str] = set()
        #: ``!mls`` and XEP-0050 room commands (:mod:`bridge.app.services.commands`)
        self.commands = RoomCommandService(self)
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = False
        self._started = False
        self._stopped = False

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return len(self._flights)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect both networks, complete the configured room pairs, start serving.
        A start that fails (or is cancelled) disconnects what it had connected; the
        store stays open."""
        if self._started:
            return
        self._accepting = True
        try:
            if self.xmpp_config is not None:
                xmpp = dataclasses.replace(self.xmpp_config, limits=self.xmpp_config.limits
                                           .with_payload(self.hub.config.max_payload))
                self.component = MLSComponent(xmpp, state=StoreState(self.store),
                                              affiliations=self.store)
                self.component.bind(self)
                self.deliverer.networks[XMPP] = self.component
                self.hub.authz.directories[XMPP] = self.component
            if self.matrix_config is not None:
                self.matrix = MatrixService(self.store, self.identity, self.matrix_config,
                                            hub_config=self.hub.config)
                self.bot = await self.matrix.connect()
                self.deliverer.networks[MATRIX] = self.bot
                self.hub.authz.directories[MATRIX] = self.bot
                self.hub.authz.media[MATRIX] = MediaFetcher(  # files for XMPP members (A23)
                    self.bot.media, self.matrix_config.server_name)
            if self.limit_observer is not None:
                for watched in (self.component, self.bot, self.relay):
                    if watched is not None:
                        watched.watch(self.limit_observer)
            self.relay.connect(self.component, self.bot,
                               self.matrix.ghosts if self.matrix is not None else None)
            await self.relay.start()
            pairs = [*self._initial_pairs, *await self._stored_pairs()]
            if self.component is not None:
                await self.component.rooms.load()
                await self._adopt(pairs)  # owners before anyone can enter
                self.component.commands.handler = self.commands
                await self.component.start(timeout=self.connect_timeout)
            if self.matrix is not None:
                assert self.bot is not None
                self.bot.commands = self.commands
                await self.matrix.serve(self)
                await self.matrix.wait_ready(self.connect_timeout)
            self._started = True
            await self.attach_rooms(pairs)
        except BaseException:
            self._accepting = False
            await self._disconnect()
            raise
        log.info("bridge started (%s)", ", ".join(sorted(self.deliverer.networks)))

    async def stop(self, shutdown: Shutdown | None = None) -> None:
        """The graceful stop, in the five phases of :mod:`bridge.app.shutdown` and
        within its deadline (``shutdown``, or one of ``shutdown_timeout`` s): refuse new
        requests, drain those in flight, stop the relay's puppets (their last saves),
        disconnect the networks, close the store. Stopping twice does nothing."""
        if self._stopped:
            return
        self._stopped = True
        shutdown = shutdown or Shutdown(self.shutdown_timeout)
        await shutdown.phase("refuse", Step("new requests", self._refuse))
        if self._started:
            await shutdown.phase(
                "drain",
                Step("requests in flight", self._drain_requests, self._requests_left),
                Step("xmpp requests", self._settle_xmpp, self._xmpp_left),
                Step("matrix input", self._stop_receiving),
                Step("relay queues", self.relay.drain),
                Step("hub fan-out", self.hub.idle, self._fanout_left))
            await shutdown.phase(
                "members",
                Step("relay", self.relay.stop, self.relay.not_done),
                Step("hub fan-out closed", self._close_fanout, self._fanout_dropped))
            await shutdown.phase("networks", *self._network_steps(), together=True)
            self._started = False
        await shutdown.phase("store", Step("store", self._close_store))

    async def _refuse(self) -> None:
        self._accepting = False

    async def _drain_requests(self) -> None:
        """Wait for the requests in flight; if cut short, cancel them (their effect, if
        the store took it, is in the log: members catch up from it)."""
        try:
            await self._idle.wait()
        except asyncio.CancelledError:
            self._cut_requests = self._requests_left()
            for task, _ in list(self._flights.values()):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            raise

    def _requests_left(self) -> list[str]:
        if self._cut_requests:
            return [f"{what}: cut short, no reply" for what in self._cut_requests]
        return [what for _, what in self._flights.values()]

    async def _settle_xmpp(self) -> None:
        """Wait until the requests the XMPP component admitted before the refusal
        were handled and answered (those still queued are answered "unavailable")."""
        if self.component is not None:
            await self.component.admission.queue.join()

    def _xmpp_left(self) -> list[str]:
        queue = self.component.admission.queue if self.component is not None else None
        if queue is None or not (queue.waiting or queue.running):
            return []
        return [f"xmpp requests: {queue.waiting} queued and {queue.running} running, "
                "not answered"]

    async def _stop_receiving(self) -> None:
        if self.matrix is not None:
            await self.matrix.stop_receiving()

    def _fanout_left(self) -> list[str]:
        return _name_fanout(self.hub.fanout.waiting(), "still queued at the end of the drain")

    async def _close_fanout(self) -> None:
        """Once the puppets stopped, nothing may be queued for delivery any more: the
        hub's fan-out closes before the networks disconnect. What it still held is in
        the hub's log, and members catch up from it."""
        self._fanout_dropped_at_close = self.hub.fanout.waiting()
        await self.hub.close()
        event(log, logging.INFO, "hub fan-out closed",
              undelivered=sum(self._fanout_dropped_at_close.values()),
              note="what it held is in the hub log: members catch up from it")

    def _fanout_dropped(self) -> list[str]:
        return _name_fanout(self._fanout_dropped_at_close,
                            "dropped at stop (in the hub log: members catch up from it)")

    def _network_steps(self) -> list[Step]:
        steps = []
        if self.component is not None:
            steps.append(Step("xmpp", self.component.stop))
        if self.matrix is not None:
            steps.append(Step("matrix", self.matrix.stop))
        return steps

    async def _close_store(self) -> None:
        await self.store.close()
        log.info("store closed")

    async def _disconnect(self) -> None:
        """After a failed start: stop the relay, the fan-out and the networks (not
        the store)."""
        await self.relay.stop()
        await self.hub.close()
        if self.component is not None:
            await self.component.stop()
        if self.matrix is not None:
            await self.matrix.stop()
        self._started = False

    async def run_until(self, stop_event: asyncio.Event) -> None:
        """Start (if not started), serve until ``stop_event`` is set, then stop."""
        await self.start()
        try:
            await stop_event.wait()
        finally:
            await self.stop()

    # -- HubService (what both transports call) ------------------------------------------

    async def handle(self, request: Inbound) -> Outbound:
        if not self._accepting:
            return _refusal(request, "unavailable", "the bridge is shutting down")
        with self._flight(f"request {request.op} {request.request_id or '-'} "
                          f"from {request.sender}"):
            return await self._handle(request)

    @contextlib.contextmanager
    def _flight(self, what: str) -> Iterator[None]:
        """Count the work of the current task (named ``what``) as in flight: the
        stop's drain waits for it (and names it if cut short)."""
        token = object()
        self._flights[token] = (asyncio.current_task(), what)
        self._idle.clear()
        try:
            yield
        finally:
            del self._flights[token]
            if not self._flights:
                self._idle.set()

    async def _handle(self, request: Inbound) -> Outbound:
        reply = await self.hub.handle(request)  # the hub authorizes (bridge.hub.authz)
        if reply.ok and request.network in (XMPP, MATRIX):
            self.relay.mls_client_seen(request.sender)  # an MLS client: never puppeted
        if reply.ok and request.op == Op.CREATE_GROUP and request.transport:
            group_id = reply.group_id or request.group_id
            pair = self.pairs.get((request.transport, request.room_id))
            if pair is not None:  # the bot announces a Matrix room its own member bound
                via_bot = request.network == MATRIX == request.transport
                await self._complete_pair(pair, group_id, announced=MATRIX if via_bot else "")
        return reply

    async def network_event(self, event: NetworkEvent) -> Outbound:
        """A room membership change from either transport, for the hub to judge."""
        if not self._accepting:
            return _refusal(Inbound(Op.LEAVE, event.target, event.event_id), "unavailable",
                            "the bridge is shutting down")
        with self._flight(f"{event.network} membership event {event.event_id or '-'} "
                          f"of {event.target} in {event.room}"):
            reply = await self.hub.network_event(event)
            group_id = self.relay.by_room.get((event.network, event.room))
            if event.network == MATRIX and event.after != Membership.JOINED and group_id:
                self.relay.guests.went(event.target, group_id)  # gone from the XMPP room
            return reply

    # -- room pairs ------------------------------------------------------------------------

    async def _adopt(self, pairs: Iterable[RoomPair]) -> None:
        """Remember ``pairs``, hand their policies to the hub's authorization and their
        XMPP administrators to the component (the owners of the XMPP room)."""
        for pair in pairs:
            self.pairs[(XMPP, pair.xmpp_room)] = pair
            self.pairs[(MATRIX, pair.matrix_room)] = pair
            self.hub.authz.configure(pair.policy())
            if self.component is not None and pair.xmpp_room not in self.runtime_rooms:
                # a run-time pair keeps its XMPP room's owners (a moderator confirmed it)
                await self.component.configure_room(pair.xmpp_room, sorted(pair.admins))

    async def attach_rooms(self, pairs: Iterable[RoomPair]) -> None:
        """Adopt ``pairs`` (from ``[[bridge.rooms]]``): remember them for groups created
        later, and attach the missing side of every pair whose group already exists.
        :class:`BridgeConfigError` if a pair's two rooms carry different groups."""
        problems = []
        pairs = list(pairs)
        await self._adopt(pairs)
        for pair in pairs:
            groups = {transport: await self.store.room_group(transport, pair.room(transport))
                      for transport in (XMPP, MATRIX)}
            found = {g for g in groups.values() if g is not None}
            if len(found) > 1:
                problems.append(f"{pair.xmpp_room} and {pair.matrix_room} carry different "
                                "groups")
                continue
            if found:
                await self._complete_pair(pair, found.pop(), announced="")
        if problems:
            raise BridgeConfigError("; ".join(problems))

    async def _complete_pair(self, pair: RoomPair, group_id: bytes, *, announced: str) -> None:
        """Attach whichever room of ``pair`` is not attached yet, tell the Matrix room
        which group it carries (unless the bot just did), and set up relay mode."""
        for transport in (XMPP, MATRIX):
            room = pair.room(transport)
            current = await self.store.room_group(transport, room)
            if current is None:
                await self.hub.attach_room(transport, room, group_id)
                log.info("attached %s room %s to group %s", transport, room,
                         group_id.hex()[:16])
            elif current != group_id:
                log.error("room %s already carries another group; pair not completed", room)
                return
        if self.bot is not None:
            try:
                if announced != MATRIX:
                    await self.bot.announce_group(pair.matrix_room, group_id)
                await self.bot.put_state(pair.matrix_room, matrix_ns.BRIDGE_STATE,
                                         f"{matrix_ns.PREFIX}://{XMPP}/{pair.xmpp_room}",
                                         self._bridge_state(pair))
            except HomeserverError as exc:
                log.warning("could not publish the bridge state in %s: %s",
                            pair.matrix_room, exc)
        if pair.relay:
            await self.relay.enable(pair.xmpp_room, pair.matrix_room, group_id)
        else:
            await self.relay.disable(pair.xmpp_room, pair.matrix_room, group_id)

    # -- pairs bridged at run time (docs/SECURITY.md A5, A22) ------------------------------

    def configured(self, pair: RoomPair) -> bool:
        """Whether ``pair`` is the configuration's (run-time commands leave it alone)."""
        return pair.xmpp_room not in self.runtime_rooms

    async def _stored_pairs(self) -> list[RoomPair]:
        """The pairs bridged at run time, from the store; one that shares a room with a
        configured pair is ignored (the configuration wins)."""
        taken = {room for pair in self._initial_pairs
                 for room in (pair.xmpp_room, pair.matrix_room)}
        pairs = []
        for stored in await self.store.room_pairs():
            if {stored.xmpp_room, stored.matrix_room} & taken:
                log.warning("stored room pair %s / %s ignored: the configuration pairs "
                            "one of its rooms", stored.xmpp_room, stored.matrix_room)
                continue
            pairs.append(RoomPair(stored.xmpp_room, stored.matrix_room, relay=stored.relay,
                                  join=self.hub.config.default_join))
            self.runtime_rooms.add(stored.xmpp_room)
        return pairs

    def new_pair(self, xmpp_room: str, matrix_room: str) -> RoomPair:
        """A pair made at run time: end to end, the hub's default join policy."""
        return RoomPair(xmpp_room, matrix_room, join=self.hub.config.default_join)

    async def _group(self, pair: RoomPair) -> bytes | None:
        return await self.store.room_group(XMPP, pair.xmpp_room) or \
            await self.store.room_group(MATRIX, pair.matrix_room)

    async def relayed_users(self, pair: RoomPair) -> int:
        """How many legacy users the relay holds a puppet for in the pair's group."""
        group_id = await self._group(pair)
        return sum(1 for puppet in self.relay.puppets.values()
                   if group_id in puppet.group_ids() and puppet.group(group_id).active)

    async def _save(self, pair: RoomPair, by: str) -> None:
        await self.store.save_room_pair(StoredPair(pair.xmpp_room, pair.matrix_room,
                                                   pair.relay, by, int(time.time())))

    async def bridge_pair(self, pair: RoomPair, by: str) -> None:
        """Pair two rooms now (the decision of both rooms' moderators: the caller
        checked), persist it, attach the missing room of an existing group.
        :class:`BridgeConfigError` if the rooms carry different groups."""
        groups = {await self.store.room_group(t, pair.room(t)) for t in (XMPP, MATRIX)}
        if len(groups - {None}) > 1:
            raise BridgeConfigError("the two rooms already carry different groups")
        await self._save(pair, by)
        self.runtime_rooms.add(pair.xmpp_room)
        await self.attach_rooms([pair])
        log.info("room pair %s / %s bridged at run time by %s", pair.xmpp_room,
                 pair.matrix_room, by)

    async def unbridge_pair(self, pair: RoomPair, by: str, keep: str) -> None:
        """Undo a run-time pair: relay mode ends (puppets leave, both rooms are told),
        the group keeps the room on the network ``keep`` and the other is detached."""
        group_id = await self.store.room_group(keep, pair.room(keep))
        for transport in (XMPP, MATRIX):
            self.pairs.pop((transport, pair.room(transport)), None)
        self.hub.authz.unconfigure(pair.policy())
        await self.store.delete_room_pair(pair.xmpp_room)
        self.runtime_rooms.discard(pair.xmpp_room)
        if group_id is not None:
            await self.relay.disable(pair.xmpp_room, pair.matrix_room, group_id)
            drop = MATRIX if keep == XMPP else XMPP
            await self.hub.detach_room(drop, pair.room(drop))
        if self.bot is not None:
            with contextlib.suppress(HomeserverError):
                await self.bot.put_state(pair.matrix_room, matrix_ns.BRIDGE_STATE,
                                         f"{matrix_ns.PREFIX}://{XMPP}/{pair.xmpp_room}", {})
        log.info("room pair %s / %s unbridged at run time by %s", pair.xmpp_room,
                 pair.matrix_room, by)

    async def relay_pair(self, pair: RoomPair, on: bool, by: str) -> RoomPair:
        """Turn relay mode on or off for a run-time pair, persisted and announced."""
        changed = dataclasses.replace(pair, relay=on)
        await self._save(changed, by)
        self.pairs[(XMPP, pair.xmpp_room)] = self.pairs[(MATRIX, pair.matrix_room)] = changed
        group_id = await self._group(changed)
        if group_id is not None:
            await self._complete_pair(changed, group_id, announced="")
        log.info("relay mode %s for %s / %s by %s", "on" if on else "off", pair.xmpp_room,
                 pair.matrix_room, by)
        return changed

    def _bridge_state(self, pair: RoomPair) -> dict[str, Any]:
        """MSC2346 ``m.bridge``: what the room is bridged to and whether encryption
        is end to end (it is not in relay mode)."""
        assert self.bot is not None
        return {
            "bridgebot": self.bot.user_id,
            "protocol": {"id": XMPP, "displayname": "XMPP"},
            "channel": {"id": pair.xmpp_room, "displayname": pair.xmpp_room},
            matrix_ns.RELAY_KEY: {
                "relay": pair.relay,
                "end_to_end": not pair.relay,
                "hub": self.identity.name,
                "notice": _relay_notice(pair.relay),
            },
        }


def _relay_notice(relay: bool) -> str:
    if relay:
        return ("Relay mode: the bridge decrypts this group's messages for people "
                "without an MLS client; end-to-end encryption ends at the bridge.")
    return "End to end: the bridge relays MLS ciphertext and cannot read messages."


def _name_fanout(waiting: dict[tuple[bytes, str], int], state: str) -> list[str]:
    """How a stop names the fan-out's deliveries left, per group and lane (network)."""
    return [f"hub fan-out of group {group_id.hex()[:16]} to {lane or 'its network'}: "
            f"{depth} {state}" for (group_id, lane), depth in sorted(waiting.items())]


def _refusal(request: Inbound, code: str, reason: str) -> Outbound:
    return Outbound(Kind.REPLY, (request.sender,), request.request_id, request.group_id,
                    ok=False, code=code, reason=reason)


__all__ = ["BridgeService", "RoomPair", "RoutingDeliverer",
           "network_of"]  # network_of: transports.interface's, re-exported
