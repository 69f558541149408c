"""Relay mode: the bridge speaks MLS for people who do not run an MLS client.

Off by default; enabled per room pair (``relay = true`` in ``[[bridge.rooms]]``). In a
relayed room the bridge holds one MLS leaf per legacy user -- a *puppet*
(:class:`bridge.member.Member` with an in-process link to the hub) whose credential
names the user in the relay's own namespace, ``relay+xmpp:...`` / ``relay+matrix:u/...``
(:func:`bridge.identities.relay_identity`): no network authenticates anyone under it,
so a puppet never collides with a member, and members show it as
``alice@example.org (relayed)``. Its keys and group state are the bridge's secrets and
live in their own file, not in the hub's store (:mod:`bridge.relay.secrets_file`). The
relay

* adds a puppet to the group (external commit, RFC 9420 §12.4.3.2) when a legacy user
  is seen in a relayed room -- an XMPP occupant, a Matrix user who joins, everyone
  present when relay is enabled -- unless the user runs an MLS client
  (:meth:`Relay.runs_mls`: a leaf in the group, an unexpired KeyPackage in the hub's
  directory, a request to the hub, or the MLS client marker in an XMPP join presence).
  Such users are told to have a member add them (:mod:`bridge.relay.notices`), and a
  puppet of a user who later shows up with an MLS client is removed (the hub's Remove,
  reason ``replaced``: "relay puppet replaced by the user's own client");
* encrypts what a legacy user writes (a plain groupchat body, a plain m.room.message)
  into the group as that user's puppet;
* decrypts the group's messages (every puppet is a full member) and re-emits the
  plaintext into the rooms (:mod:`bridge.relay.output`): on XMPP as plain
  ``groupchat`` messages to each legacy occupant, under a name no occupant can take
  (``xa@example.org (MLS)``, ``@bob:example.org (relayed)``: the component reserves
  them, :meth:`Relay.reserved`); on Matrix from an XMPP sender's own application-service
  ghost, or from the bot naming the sender (a Matrix user's own message is already
  there) -- edits, replies, retractions and reactions mapped both ways
  (:mod:`bridge.relay.mapping`).

Encryption therefore ends at the bridge, and the bridge says so to everyone, MLS
members included (:mod:`bridge.relay.notices`). Turning relay off for a pair makes its
puppets leave the group and says that too.

Plaintext is never logged and never in the hub's store: puppets keep group state
only (their received messages are handed over and dropped at once); what is re-emitted
into the XMPP rooms is archived for XEP-0313 in the secrets file
(:mod:`bridge.relay.archive`).

This module holds :class:`Relay`; the re-emit queue (exactly once across restarts) is
in :mod:`bridge.relay.reemits`, the puppets in :mod:`bridge.relay.puppets`, their
secrets in :mod:`bridge.relay.secrets_file` (earlier versions' brought up to date by
:mod:`bridge.relay.upgrade`), the legacy-room observers in
:mod:`bridge.relay.observers`, the notices in :mod:`bridge.relay.notices`, and the
protocol through which puppets receive deliveries in-process in
:mod:`bridge.relay.routing`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from bridge.errors import BridgeError, Rejection
from bridge.hub import Hub
from bridge.hub.removals import REPLACED, Removal
from bridge.hub.store import Store, StoreError
from bridge.identities import (
    RELAYED_MARK,
    display,
    is_relayed,
    relay_identity,
    relayed_user,
)
from bridge.member import RetryPolicy
from bridge.relay.archive import KEEP, RelayArchive
from bridge.relay.guests import Guests
from bridge.relay.mapping import Legacy, Mapper
from bridge.relay.notices import NOTICE, Notices
from bridge.relay.observers import (
    MATRIX,
    XMPP,
    Job,
    MatrixObserver,
    XmppObserver,
    xmpp_identity,
)
from bridge.relay.output import MLS_MARK, Emission, Output, Rooms
from bridge.relay.puppets import LocalLink, Puppet
from bridge.relay.reemits import ReEmits
from bridge.relay.routing import LocalRouting
from bridge.relay.secrets_file import MEMORY, PuppetSecrets, SecretsMemberStore
from bridge.relay.upgrade import bring_back
from mls.errors import MLSError
from transports.errors import TransportError
from transports.fairness import (
    Clock,
    FairQueue,
    LimitObserver,
    NullObserver,
    Overloaded,
    RateLimiter,
)
from transports.interface import network_of
from transports.matrix import events as matrix_events
from transports.matrix.appservice import Ghosts
from transports.matrix.bot import MatrixHubBot
from transports.matrix.errors import MatrixTransportError
from transports.xmpp.component import MLSComponent
from transports.xmpp.nicks import NO_OWNER, Reservation

log = logging.getLogger(__name__)

LEGACY_RATE = 2.0  # legacy input (messages, joins) per second per legacy user, sustained
LEGACY_BURST = 10  # ... and at once
LEGACY_QUEUE = 16  # a legacy user's input jobs waiting
INBOUND_TOTAL = 1024  # every legacy user's input jobs waiting
MEMBER, CLIENT = "member", "client"  # why someone is not puppeted (Relay.runs_mls)


class Relay:
    """Puppets, legacy input and plaintext output for every relayed room.

    ``secrets``: where puppet secrets are kept (opened and closed by the caller; by
    default an in-memory one the relay owns, for tests: nothing survives)."""

    def __init__(self, store: Store, hub: Hub, deliverer: LocalRouting, *,
                 secrets: PuppetSecrets | None = None, retry: RetryPolicy | None = None,
                 clock: Clock = time.monotonic, archive: int = KEEP) -> None:
        self.store = store
        self.hub = hub
        self.deliverer = deliverer
        self.secrets = secrets
        self._owns_secrets = secrets is None
        self.retry = retry or RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0)
        self.component: MLSComponent | None = None
        self.bot: MatrixHubBot | None = None
        self.notices = Notices(store)
        self.guests = Guests()  # relayed Matrix users, shown in the XMPP room
        #: what was re-emitted into the XMPP rooms (XEP-0313), newest ``archive`` per group
        self.archive = RelayArchive(lambda: self.secrets,
                                    lambda room: self.by_room.get((XMPP, room)), archive)
        self.groups: dict[bytes, Rooms] = {}
        self.by_room: dict[tuple[str, str], bytes] = {}
        self.puppets: dict[str, Puppet] = {}  # relay identity -> its puppet
        self.mls_clients: set[str] = set()  # network identities seen with an MLS client
        self._rosters: dict[bytes, frozenset[str]] = {}  # last roster read per group
        self.observer: LimitObserver = NullObserver()
        self._legacy_rate = RateLimiter(LEGACY_RATE, LEGACY_BURST, clock=clock)
        self._inbound = FairQueue(workers=1, per_sender=LEGACY_QUEUE, total=INBOUND_TOTAL,
                                  name="relay-input")
        self._queued_input: dict[object, str] = {}  # input jobs not started, by name
        self._working_on = ""  # what the input worker is doing (named if it is cut)
        self._stopping = False
        self._not_done: list[str] = []  # what a stop dropped or could not save, by name
        self.mapper = Mapper()
        self.output = Output(self.mapper, self._legacy_occupant, self.archive)
        #: decrypted messages re-emitted exactly once (what puppets hand theirs to)
        self.reemits = ReEmits(store, self.output, self.groups, self.puppets)

    def watch(self, observer: LimitObserver) -> None:
        """Report drops and queue depths to ``observer`` (the metrics)."""
        self.observer = self._inbound.observer = self.reemits.observer = observer

    def connect(self, component: MLSComponent | None, bot: MatrixHubBot | None,
                ghosts: Ghosts | None = None) -> None:
        """The networks (``ghosts``: the Matrix application service's users, if it is
        one; otherwise the bot posts everything)."""
        self.component, self.bot = component, bot
        self.output.component, self.output.bot, self.output.ghosts = component, bot, ghosts
        self.mapper.files.component, self.mapper.files.bot = component, bot
        self.notices.component, self.notices.bot = component, bot
        self.guests.component = component
        if component is not None:
            component.observe(XmppObserver(self))
            component.mam.archive = self.archive
        if bot is not None:
            bot.observer = MatrixObserver(self)

    async def start(self) -> None:
        """Move puppet secrets an earlier version kept in the hub store into the secrets
        file, bring back the puppets, retire those named before relay identities had
        their own namespace, and start the output worker (the input's are
        the fair queue's)."""
        if self.secrets is None:
            self.secrets = await PuppetSecrets.open(MEMORY)
        self.mapper.secrets = self.secrets
        for identity in await bring_back(self.store, self.hub, self.secrets):
            await self._puppet(identity)
        self.reemits.start()

    async def drain(self) -> None:
        """Work off the queued legacy input and output (the stop's drain phase)."""
        await self._inbound.join()
        for puppet in list(self.puppets.values()):
            await puppet.idle()
        await self.reemits.join()

    async def stop(self) -> None:
        """Stop the two workers (what they had not done is dropped), then every puppet,
        each with its last save (never past a message not yet re-emitted). What was
        dropped or left unsaved is named by :meth:`not_done`."""
        self._stopping = True
        working_on = self._working_on
        await self._inbound.close()
        if working_on:
            self._not_done.append(f"relay: {working_on}: cut short")
        self._not_done += [f"relay: {what}: not relayed"
                           for what in self._queued_input.values()]
        self._queued_input.clear()
        self._not_done += await self.reemits.stop()
        await asyncio.gather(*(self._stop_puppet(identity, puppet)
                               for identity, puppet in list(self.puppets.items())))
        if self._owns_secrets and self.secrets is not None:
            await self.secrets.close()
            self.secrets = None

    async def _stop_puppet(self, identity: str, puppet: Puppet) -> None:
        self.deliverer.remove_local(identity)
        unsaved = await puppet.stop()
        self.puppets.pop(identity, None)
        self._not_done += [f"puppet {identity} group {group_id.hex()[:16]} not saved: "
                           f"{reason}" for group_id, reason in unsaved.items()]

    def not_done(self) -> list[str]:
        """What the stop dropped or could not save, by name; puppets whose stop was
        cut short are named with each group whose latest changes are unsaved."""
        left = [f"puppet {identity} group {group_id.hex()[:16]} not saved: its stop was "
                "cut short" for identity, puppet in self.puppets.items()
                for group_id in puppet.unsaved_groups()]
        return [*self._not_done, *left]

    # -- enabling and disabling -------------------------------------------------------

    async def enable(self, xmpp_room: str, matrix_room: str, group_id: bytes) -> None:
        """Relay ``group_id`` in this room pair: say so, and give every legacy user
        already present a puppet."""
        rooms = Rooms(xmpp_room, matrix_room)
        first = self.groups.get(group_id) != rooms
        self.reemits.resume(group_id)
        self.groups[group_id] = rooms
        self.by_room[(XMPP, xmpp_room)] = group_id
        self.by_room[(MATRIX, matrix_room)] = group_id
        if self.component is not None:
            self.component.info.relay(xmpp_room, NOTICE)
        await self.reemits.attached(group_id)
        if first:
            self._submit("", f"scan of the rooms of group {group_id.hex()[:16]}",
                         lambda: self._announce_and_scan(group_id, rooms))

    async def disable(self, xmpp_room: str, matrix_room: str, group_id: bytes) -> None:
        """The pair is not (or no longer) relayed: if it was, its puppets leave the
        group and both rooms are told. Nothing for a pair that never was."""
        rooms = Rooms(xmpp_room, matrix_room)
        if self.groups.get(group_id) not in (None, rooms):
            return  # relayed by another pair of the configuration
        if self.groups.pop(group_id, None) is not None:  # turned off at run time
            self.by_room.pop((XMPP, xmpp_room), None)
            self.by_room.pop((MATRIX, matrix_room), None)
        holders = [identity for identity, puppet in self.puppets.items()
                   if group_id in puppet.group_ids() and puppet.group(group_id).active]
        if not holders and not await self.notices.was_on(group_id):
            return
        self.reemits.disabled(group_id)
        self.guests.clear(group_id)
        for identity in holders:
            puppet = self.puppets[identity]
            try:
                await puppet.leave(group_id)
            except (BridgeError, TransportError) as exc:
                log.warning("relay: a puppet could not leave: %s", exc)
            if set(puppet.group_ids()) <= {group_id}:
                await self._drop_puppet(identity)
        await self.notices.mode(group_id, xmpp_room, matrix_room, on=False)

    async def _announce_and_scan(self, group_id: bytes, rooms: Rooms) -> None:
        await self.notices.mode(group_id, rooms.xmpp_room, rooms.matrix_room, on=True)
        present: list[tuple[str, str]] = []  # (network identity, XMPP occupant or "")
        if self.component is not None:
            for occupant in list(self.component.occupants.get(rooms.xmpp_room, {})):
                present.append((xmpp_identity(occupant), occupant))
        if self.bot is not None:
            try:
                users = await self.bot.room_members(rooms.matrix_room)
            except MatrixTransportError as exc:
                log.warning("relay: members of %s unknown: %s", rooms.matrix_room, exc)
                users = frozenset()
            present += [(matrix_events.user_uri(user), "")
                        for user in sorted(users - {self.bot.user_id})
                        if not self.bot.controlled(user)]  # ghosts are the bridge's
        for identity, occupant in present:
            await self._join_legacy(identity, group_id, occupant)

    # -- who is puppeted -------------------------------------------------------------------

    async def _roster(self, group_id: bytes) -> frozenset[str]:
        roster = frozenset(member.identity for member in await self.store.get_members(group_id))
        self._rosters[group_id] = roster
        return roster

    async def runs_mls(self, identity: str, group_id: bytes) -> str:
        """Why the network user ``identity`` gets no puppet in ``group_id``:
        :data:`MEMBER` (a leaf of its own in the group), :data:`CLIENT` (it was seen
        with an MLS client -- a request to the hub, the client marker in an XMPP join
        presence -- or has an unexpired KeyPackage in the hub's directory), or "" (a
        legacy user: puppet it)."""
        if identity in await self._roster(group_id):
            return MEMBER
        if identity in self.mls_clients:
            return CLIENT
        now = int(time.time())
        if any(kp.expires_at > now for kp in await self.store.list_key_packages(identity)):
            return CLIENT
        return ""

    def mls_client_seen(self, identity: str) -> None:
        """The network user ``identity`` spoke to the hub (or entered an XMPP room) with
        an MLS client: never puppet it, and replace a puppet it has. Ignored once the
        relay is stopping (its input is closed: the puppet is replaced when the user is
        next seen after a start)."""
        if identity in self.mls_clients or is_relayed(identity) or not network_of(identity):
            return
        if self._stopping:
            log.debug("relay: an MLS client of %s seen while stopping: ignored", identity)
            return
        self.mls_clients.add(identity)
        if relay_identity(identity) in self.puppets:
            try:  # the bridge's own work, not legacy input: not rate-limited
                self._submit(identity, f"replacement of the puppet of {identity}",
                             lambda: self._replace(identity))
            except Overloaded:  # replaced when the user is next seen
                self.mls_clients.discard(identity)

    async def _replace(self, identity: str) -> None:
        """The user ``identity`` runs an MLS client now: the hub removes its puppet's
        leaves (reason ``replaced``) and the puppet and its secrets are dropped."""
        relayed = relay_identity(identity)
        puppet = self.puppets.get(relayed)
        if puppet is None:
            return
        for group_id in puppet.group_ids():
            if not puppet.group(group_id).active:
                continue
            try:
                await self.hub.remove_member(group_id, relayed, Removal(REPLACED, identity))
            except Rejection as exc:
                log.info("relay: puppet not removed from %s: %s", group_id.hex()[:16],
                         exc.code)
        await self._drop_puppet(relayed)
        log.info("relay: puppet replaced by the user's own client")

    async def _drop_puppet(self, relayed: str) -> None:
        """Stop a puppet and forget it with its secrets."""
        puppet = self.puppets.pop(relayed, None)
        self.deliverer.remove_local(relayed)
        legacy = relayed_user(relayed)
        if legacy is not None:
            self.guests.went(legacy)
        if puppet is not None:
            await puppet.stop()
        assert self.secrets is not None
        await self.secrets.remove_puppet(relayed)

    # -- puppets -------------------------------------------------------------------------

    async def _puppet(self, relayed: str) -> Puppet:
        puppet = self.puppets.get(relayed)
        if puppet is not None:
            return puppet
        assert self.secrets is not None
        puppet = Puppet(LocalLink(relayed, self.hub), self.reemits,
                        store=SecretsMemberStore(self.secrets, relayed),
                        retry=self.retry, device="relay", rng=os.urandom)
        await puppet.start()
        self.puppets[relayed] = puppet
        self.deliverer.add_local(relayed, puppet)
        await self.secrets.add_puppet(relayed)
        return puppet

    async def _join_legacy(self, identity: str, group_id: bytes, occupant: str
                           ) -> Puppet | None:
        """The legacy user's puppet, in the group (joined by external commit if not);
        None if the user runs an MLS client (told how to join instead, and a puppet
        it had is replaced)."""
        why = await self.runs_mls(identity, group_id)
        if why:
            if relay_identity(identity) in self.puppets:
                await self._replace(identity)
            if why == CLIENT:
                rooms = self.groups[group_id]
                await self.notices.how_to_join(
                    group_id, identity, rooms.xmpp_room if occupant else rooms.matrix_room,
                    occupant)
            return None
        puppet = await self._puppet(relay_identity(identity))
        if not (group_id in puppet.group_ids() and puppet.group(group_id).active):
            await puppet.rejoin(group_id)
            log.info("relay: a legacy user joined group %s as a puppet", group_id.hex()[:16])
        self.guests.came(group_id, self.groups[group_id].xmpp_room, identity)
        return puppet

    def reserved(self, room: str) -> Reservation:
        """The nicknames the XMPP room ``room`` keeps (:mod:`transports.xmpp.nicks`):
        the names every member and every relayed user of its group is shown under --
        an XMPP identity's for itself, the others' for nobody -- and the marks of the
        bridge's own senders (:data:`MLS_MARK`, ``(relayed)``)."""
        group_id = self.by_room.get((XMPP, room))
        if group_id is None:
            return Reservation()
        members = set(self._rosters.get(group_id, ()))
        for puppet in self.puppets.values():  # a puppet's view is as fresh as it gets
            if group_id in puppet.group_ids() and puppet.group(group_id).active:
                members |= {puppet.trust.identity_of(leaf.credential)
                            for _, leaf in puppet.group(group_id).members()}
                break
        names: dict[str, str] = {}
        for member in members:
            person = relayed_user(member) or member
            owner = person if network_of(person) == XMPP else NO_OWNER
            names[person] = names[display(person)] = owner
        return Reservation(names, (MLS_MARK, RELAYED_MARK))

    # -- legacy input ----------------------------------------------------------------------

    def queue(self, identity: str, job: Job, what: str = "") -> None:
        """:class:`bridge.relay.observers.LegacyInput`: run ``job`` on the input worker,
        in ``identity``'s turn (legacy users are served round-robin, each in order);
        ``what`` names it in logs (who, where, never the text). A legacy user over
        :data:`LEGACY_RATE` (each message costs an MLS encryption and a request; a
        join, an external commit), or with :data:`LEGACY_QUEUE` jobs waiting, has the
        job dropped: the text is not relayed (counted, logged). Refused once the relay
        is stopping."""
        what = what or f"input of {identity}"
        if self._stopping:
            self._not_done.append(f"relay: {what}: refused, the bridge is stopping")
            log.warning("relay: %s refused: the bridge is stopping", what)
            return
        try:
            if not self._legacy_rate.allow(identity):
                self.observer.dropped("relay-input", "rate")
                raise Overloaded("rate")
            self._submit(identity, what, job)
        except Overloaded as exc:
            log.info("relay: dropped input from %s (%s)", identity, exc.reason,
                     extra={"flood_key": f"relay|{identity}"})

    def _submit(self, sender: str, what: str, job: Job) -> None:
        """Queue ``job`` (named ``what``) in ``sender``'s lane of the input queue; its
        failures are logged, and what never started is named if the relay stops. Once
        the relay is stopping nothing is queued (the input is closed at its stop)."""
        if self._stopping:
            log.debug("relay: %s not queued: the relay is stopping", what)
            return
        token = object()

        async def run() -> None:
            del self._queued_input[token]
            self._working_on = what
            try:
                await job()
            except (BridgeError, MLSError, StoreError, TransportError) as exc:
                log.warning("relay: %s: %s: %s", what, type(exc).__name__, exc)
            finally:
                self._working_on = ""
        self._inbound.submit(sender, run)
        self._queued_input[token] = what

    async def xmpp_joined(self, room: str, occupant: str, mls_client: bool) -> None:
        identity = xmpp_identity(occupant)
        if mls_client:
            self.mls_client_seen(identity)
        group_id = self.by_room.get((XMPP, room))
        if group_id is not None:
            await self._join_legacy(identity, group_id, occupant)

    def relays(self, transport: str, room: str) -> bool:
        """:class:`bridge.relay.observers.LegacyInput`: whether the room is relayed."""
        return (transport, room) in self.by_room

    async def matrix_joined(self, room_id: str, user_id: str) -> None:
        group_id = self.by_room.get((MATRIX, room_id))
        if group_id is None or self.bot is None or user_id == self.bot.user_id:
            return
        await self._join_legacy(matrix_events.user_uri(user_id), group_id, "")

    async def legacy_event(self, transport: str, room: str, identity: str, event: Legacy,
                           occupant: str = "") -> None:
        """Encrypt what a legacy user sent (text, an edit, a reply, a retraction,
        reactions: :mod:`bridge.relay.mapping`) into the group as their puppet, then
        show it to the other side (and to the other legacy occupants of an XMPP room).
        An XMPP user's own message ids are theirs alone (``owner``)."""
        group_id = self.by_room.get((transport, room))
        if group_id is None:
            return
        puppet = await self._join_legacy(identity, group_id, occupant)
        if puppet is None:
            return  # an MLS user's plain message: not ours to encrypt
        owner = identity if occupant else ""
        for content in await self.mapper.contents(transport, room, owner, puppet.identity,
                                                  group_id, event):
            seq = await puppet.send_content(group_id, content)
            await self.mapper.remember(transport, room, event.net_id, group_id, content,
                                       puppet.identity, owner)
            self.reemits.emit_later(Emission(group_id, seq, puppet.identity, content,
                                             transport, occupant))

    # -- output ----------------------------------------------------------------------------

    def _legacy_occupant(self, occupant: str) -> bool:
        """Whether an XMPP occupant is a legacy user the relay has a puppet for."""
        return relay_identity(xmpp_identity(occupant)) in self.puppets


__all__ = ["MLS_MARK", "NOTICE", "Relay"]
