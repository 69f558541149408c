"""Relay mode: the bridge speaks MLS for people who do not run an MLS client.

Off by default; enabled per room pair (``relay = true`` in ``[[bridge.rooms]]``). In a
relayed room the bridge holds one MLS leaf per legacy user -- a *puppet*
(:class:`bridge.member.Member` with an in-process link to the hub, its keys in the
bridge's own store) whose credential names the user's network identity (``xmpp:...`` /
``matrix:u/...``, the identity the network authenticated). The relay

* adds a puppet to the group (external commit, RFC 9420 §12.4.3.2) when a legacy user
  is seen in a relayed room: an XMPP occupant whose join presence lacks the MLS client
  marker, a Matrix user who joins and is not in the group, everyone such already
  present when relay is enabled;
* encrypts what a legacy user writes (a plain groupchat body, a plain m.room.message)
  into the group as that user's puppet;
* decrypts the group's messages (every puppet is a full member) and re-emits the
  plaintext into the rooms: on XMPP as plain ``groupchat`` messages to each legacy
  occupant, from ``room/<sender>``; on Matrix as one ``m.room.message`` from the bot,
  naming the sender's credential URI (a Matrix user's own message is already there).

Encryption therefore ends at the bridge, and the bridge says so: a notice in both rooms
when relay is enabled (and to each legacy user who joins), the room's XMPP disco#info
(identity name and the ``urn:mlsbridge:0#relay`` feature) and the ``m.bridge`` state
event in the Matrix room (published by :mod:`bridge.app.services.bridge`).

Plaintext is never logged and never stored: puppets keep group state only (their
received messages are handed over and dropped at once).

This module holds :class:`Relay`; the puppets are in :mod:`bridge.relay.puppets`, the
legacy-room observers in :mod:`bridge.relay.observers`, and the protocol through which
puppets receive deliveries in-process in :mod:`bridge.relay.routing`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from bridge.errors import BridgeError
from bridge.hub.store import Store, StoreError
from bridge.member import Content, Received, RetryPolicy
from bridge.relay.observers import (
    MATRIX,
    XMPP,
    Job,
    MatrixObserver,
    XmppObserver,
    xmpp_identity,
)
from bridge.relay.puppets import CursorMemberStore, LocalLink, Puppet
from bridge.relay.routing import LocalRouting
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
from transports.interface import HubService
from transports.matrix import events as matrix_events
from transports.matrix import namespace as matrix_ns
from transports.matrix.bot import MatrixHubBot
from transports.matrix.errors import MatrixTransportError
from transports.xmpp.component import MLSComponent

log = logging.getLogger(__name__)

PUPPETS_CURSOR = "relay:puppets"
LEGACY_RATE = 2.0  # legacy input (messages, joins) per second per legacy user, sustained
LEGACY_BURST = 10  # ... and at once
LEGACY_QUEUE = 16  # a legacy user's input jobs waiting
INBOUND_TOTAL = 1024  # every legacy user's input jobs waiting
OUTBOUND_KEPT = 4096  # decrypted messages waiting to be re-emitted (the oldest dropped)
EARLY_KEPT = 1024  # per group, decrypted before the group's rooms were attached
SETTLE_TIMEOUT = 30.0  # seconds a puppet waits for re-emits before saving anyway
EMITTED_CURSOR = "relay:emitted:"  # + group id hex: the last log seq re-emitted
NOTICE = ("This room is bridged in relay mode: the bridge decrypts the group's messages "
          "for people without an MLS client and encrypts theirs, so end-to-end "
          "encryption ends at the bridge.")


@dataclass(frozen=True, slots=True)
class _Rooms:
    xmpp_room: str
    matrix_room: str


@dataclass(frozen=True, slots=True)
class _Emission:
    """Plaintext to re-emit into a group's relayed rooms (never logged)."""

    group_id: bytes
    seq: int
    sender: str
    text: str = dataclasses.field(repr=False)
    origin: str = ""  # the network the text was written on, if a legacy user wrote it
    author_occupant: str = ""  # the XMPP occupant who wrote it (not echoed to them)


class Relay:
    """Puppets, legacy input and plaintext output for every relayed room."""

    def __init__(self, store: Store, hub: HubService, deliverer: LocalRouting, *,
                 retry: RetryPolicy | None = None, clock: Clock = time.monotonic) -> None:
        self.store = store
        self.hub = hub
        self.deliverer = deliverer
        self.retry = retry or RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0)
        self.component: MLSComponent | None = None
        self.bot: MatrixHubBot | None = None
        self.groups: dict[bytes, _Rooms] = {}
        self.by_room: dict[tuple[str, str], bytes] = {}
        self.puppets: dict[str, Puppet] = {}
        self.relayed = 0  # messages re-emitted (counted, never logged)
        self._emitted: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._emitted_upto: dict[bytes, int] = {}  # persisted: survives a kill -9
        self._early: dict[bytes, list[_Emission]] = {}  # decrypted before enable()
        self._unemitted: dict[bytes, set[int]] = {}  # decrypted seqs not yet re-emitted
        self._emitted_event = asyncio.Event()  # set whenever a re-emit completes
        self.observer: LimitObserver = NullObserver()
        self._legacy_rate = RateLimiter(LEGACY_RATE, LEGACY_BURST, clock=clock)
        self._inbound = FairQueue(workers=1, per_sender=LEGACY_QUEUE, total=INBOUND_TOTAL,
                                  name="relay-input")
        self._queued_input: dict[object, str] = {}  # input jobs not started, by name
        self._outbound: asyncio.Queue[_Emission] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._working_on = ""  # what the input worker is doing (named if it is cut)
        self._emitting: _Emission | None = None  # the re-emit under way (likewise)
        self._stopping = False
        self._not_done: list[str] = []  # what a stop dropped or could not save, by name

    def watch(self, observer: LimitObserver) -> None:
        """Report drops and queue depths to ``observer`` (the metrics)."""
        self.observer = self._inbound.observer = observer

    def connect(self, component: MLSComponent | None, bot: MatrixHubBot | None) -> None:
        self.component, self.bot = component, bot
        if component is not None:
            component.observe(XmppObserver(self))
        if bot is not None:
            bot.observer = MatrixObserver(self)

    async def start(self) -> None:
        """Bring back the puppets saved in the store; start the two workers."""
        saved = await self.store.get_cursor(PUPPETS_CURSOR)
        for identity in json.loads(saved) if saved else []:
            await self._puppet(identity)
        self._tasks = [asyncio.get_running_loop().create_task(self._work_outbound())]

    async def drain(self) -> None:
        """Work off the queued legacy input and output (the stop's drain phase)."""
        await self._inbound.join()
        for puppet in list(self.puppets.values()):
            await puppet.idle()
        await self._outbound.join()

    async def stop(self) -> None:
        """Stop the two workers (what they had not done is dropped), then every puppet,
        each with its last save (never past a message not yet re-emitted). What was
        dropped or left unsaved is named by :meth:`not_done`."""
        self._stopping = True
        working_on, emitting = self._working_on, self._emitting
        await self._inbound.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._not_done += self._dropped(working_on, emitting)
        await asyncio.gather(*(self._stop_puppet(identity, puppet)
                               for identity, puppet in list(self.puppets.items())))

    async def _stop_puppet(self, identity: str, puppet: Puppet) -> None:
        self.deliverer.remove_local(identity)
        unsaved = await puppet.stop()
        self.puppets.pop(identity, None)
        self._not_done += [f"puppet {identity} group {group_id.hex()[:16]} not saved: "
                           f"{reason}" for group_id, reason in unsaved.items()]

    def _dropped(self, working_on: str, emitting: _Emission | None) -> list[str]:
        """Name the work the stopped workers leave undone (and forget it): what the
        input worker was ``working_on``, the re-emit under way, what was queued."""
        dropped = [f"relay: {working_on}: cut short"] if working_on else []
        if emitting is not None:
            dropped.append(_undone(emitting))
        dropped += [f"relay: {what}: not relayed" for what in self._queued_input.values()]
        self._queued_input.clear()
        while not self._outbound.empty():
            emission = self._outbound.get_nowait()
            self._outbound.task_done()
            dropped.append(_undone(emission))
        return dropped

    def not_done(self) -> list[str]:
        """What the stop dropped or could not save, by name; puppets whose stop was
        cut short are named with each group whose latest changes are unsaved."""
        left = [f"puppet {identity} group {group_id.hex()[:16]} not saved: its stop was "
                "cut short" for identity, puppet in self.puppets.items()
                for group_id in puppet.unsaved_groups()]
        return [*self._not_done, *left]

    # -- enabling ----------------------------------------------------------------------

    async def enable(self, xmpp_room: str, matrix_room: str, group_id: bytes) -> None:
        """Relay ``group_id`` in this room pair: say so, and give every legacy user
        already present a puppet."""
        rooms = _Rooms(xmpp_room, matrix_room)
        first = self.groups.get(group_id) != rooms
        self.groups[group_id] = rooms
        self.by_room[(XMPP, xmpp_room)] = group_id
        self.by_room[(MATRIX, matrix_room)] = group_id
        if group_id not in self._emitted_upto:
            saved = await self.store.get_cursor(EMITTED_CURSOR + group_id.hex())
            self._emitted_upto[group_id] = int(saved) if saved else 0
        if self.component is not None:
            self.component.set_relay(xmpp_room)
        for emission in self._early.pop(group_id, []):
            if emission.seq > self._emitted_upto[group_id]:
                self._emit_later(emission)
            else:
                self._settled(emission)
        if first:
            self._submit("", f"scan of the rooms of group {group_id.hex()[:16]}",
                         lambda: self._announce_and_scan(group_id, rooms))

    async def _announce_and_scan(self, group_id: bytes, rooms: _Rooms) -> None:
        roster = await self._roster(group_id)
        legacy: list[tuple[str, str]] = []  # (identity, XMPP occupant or "")
        if self.component is not None:
            for occupant in self.component.occupants.get(rooms.xmpp_room, {}):
                identity = xmpp_identity(occupant)
                if identity in self.puppets or identity not in roster:
                    legacy.append((identity, occupant))
        if self.bot is not None:
            await self._matrix_notice(rooms.matrix_room, group_id)
            try:
                users = await self.bot.room_members(rooms.matrix_room)
            except MatrixTransportError as exc:
                log.warning("relay: members of %s unknown: %s", rooms.matrix_room, exc)
                users = frozenset()
            for user in sorted(users - {self.bot.user_id}):
                identity = matrix_events.user_uri(user)
                if identity in self.puppets or identity not in roster:
                    legacy.append((identity, ""))
        for identity, occupant in legacy:
            await self._join_legacy(identity, group_id, occupant)

    async def _matrix_notice(self, room_id: str, group_id: bytes) -> None:
        """The relay notice in the Matrix room, once per group."""
        assert self.bot is not None
        name = f"relay:notice:{room_id}"
        if await self.store.get_cursor(name) == group_id.hex():
            return
        content = {"msgtype": "m.notice", "body": NOTICE,
                   matrix_ns.RELAY_KEY: {"relay": True, "end_to_end": False}}
        try:
            await self.bot.send_message(room_id, content, _txn(b"notice", group_id, room_id))
        except MatrixTransportError as exc:
            log.warning("relay notice in %s not sent: %s", room_id, exc)
            return
        await self.store.set_cursor(name, group_id.hex())

    # -- puppets -------------------------------------------------------------------------

    async def _roster(self, group_id: bytes) -> set[str]:
        return {member.identity for member in await self.store.get_members(group_id)}

    async def _puppet(self, identity: str) -> Puppet:
        puppet = self.puppets.get(identity)
        if puppet is not None:
            return puppet
        puppet = Puppet(LocalLink(identity, self.hub), self,
                        store=CursorMemberStore(self.store, f"relay:{identity}:"),
                        retry=self.retry, device="relay", rng=os.urandom)
        await puppet.start()
        self.puppets[identity] = puppet
        self.deliverer.add_local(identity, puppet)
        await self.store.set_cursor(PUPPETS_CURSOR, json.dumps(sorted(self.puppets)))
        return puppet

    async def _join_legacy(self, identity: str, group_id: bytes, occupant: str) -> Puppet:
        """The legacy user's puppet, in the group (joined by external commit if not)."""
        puppet = await self._puppet(identity)
        if group_id in puppet.group_ids() and puppet.group(group_id).active:
            return puppet
        await puppet.rejoin(group_id)
        log.info("relay: %s joined group %s as a puppet", identity, group_id.hex()[:16])
        if occupant and self.component is not None:
            rooms = self.groups[group_id]
            self.component.send_plain(rooms.xmpp_room, [occupant], "", NOTICE,
                                      f"relay-notice-{group_id.hex()[:12]}")
        return puppet

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
        failures are logged, and what never started is named if the relay stops."""
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
        group_id = self.by_room.get((XMPP, room))
        if group_id is None or mls_client:
            return
        await self._join_legacy(xmpp_identity(occupant), group_id, occupant)

    async def matrix_joined(self, room_id: str, user_id: str) -> None:
        group_id = self.by_room.get((MATRIX, room_id))
        if group_id is None or self.bot is None or user_id == self.bot.user_id:
            return
        identity = matrix_events.user_uri(user_id)
        if identity in self.puppets or identity not in await self._roster(group_id):
            await self._join_legacy(identity, group_id, "")

    async def legacy_message(self, transport: str, room: str, identity: str, text: str,
                             occupant: str = "") -> None:
        """Encrypt a legacy user's text into the group as their puppet, then show it
        to the other side (and to the other legacy occupants of an XMPP room)."""
        group_id = self.by_room.get((transport, room))
        if group_id is None:
            return
        if identity not in self.puppets and identity in await self._roster(group_id):
            return  # an MLS member's plain message: not ours to encrypt
        puppet = await self._join_legacy(identity, group_id, occupant)
        content = Content(os.urandom(16), text)
        seq = await puppet.send_content(group_id, content)
        self._emit_later(_Emission(group_id, seq, identity, text, transport, occupant))

    # -- output ----------------------------------------------------------------------------

    def on_decrypted(self, received: Received) -> None:
        """A message a puppet decrypted: queue it once for the relayed rooms (messages
        of legacy users were shown when they were sent). A puppet saves its state only
        once what it decrypted is re-emitted (:class:`Puppet`), so after a ``kill -9``
        it may decrypt again what was already re-emitted: the seq cursor persisted
        after each re-emit skips those."""
        key = (received.group_id, received.seq)
        if key in self._emitted or received.sender in self.puppets:
            return
        if received.seq <= self._emitted_upto.get(received.group_id, 0):
            return
        self._emitted[key] = None
        while len(self._emitted) > 4096:
            self._emitted.popitem(last=False)
        text = received.content.body
        if text is None:
            return
        emission = _Emission(received.group_id, received.seq, received.sender, text)
        self._unemitted.setdefault(received.group_id, set()).add(received.seq)
        if received.group_id not in self.groups:  # restarted: rooms not attached yet
            early = self._early.setdefault(received.group_id, [])
            early.append(emission)
            if len(early) > EARLY_KEPT:
                self._drop(early.pop(0), "relay-early")
            return
        self._emit_later(emission)

    def _emit_later(self, emission: _Emission) -> None:
        """Queue a re-emit; beyond :data:`OUTBOUND_KEPT` waiting, the oldest waiting
        one is dropped (the rooms show the latest conversation)."""
        if self._outbound.qsize() >= OUTBOUND_KEPT:
            self._drop(self._outbound.get_nowait(), "relay-output")
            self._outbound.task_done()
        self._outbound.put_nowait(emission)
        self.observer.depth("relay-output", self._outbound.qsize())

    def _drop(self, emission: _Emission, queue: str) -> None:
        """A decrypted message that will not be re-emitted (counted, never logged)."""
        self.observer.dropped(queue, "oldest")
        log.warning("relay: a message of group %s was not re-emitted (%s full)",
                    emission.group_id.hex()[:16], queue, extra={"flood_key": queue})
        self._settled(emission)

    async def _work_outbound(self) -> None:
        while True:
            emission = await self._outbound.get()
            self._emitting = emission
            try:
                await self._emit(emission)
            except TransportError as exc:
                log.warning("relay: a message was not re-emitted: %s", exc)
            finally:
                self._emitting = None
            try:
                await self._mark_emitted(emission)
            except StoreError as exc:
                log.warning("relay: re-emit cursor not saved: %s", exc)
            finally:
                self._settled(emission)
                self._outbound.task_done()

    def _settled(self, emission: _Emission) -> None:
        """A decrypted message is handed on: puppets may save state past it."""
        if emission.origin:
            return  # a legacy user's own text: no puppet decrypted it
        pending = self._unemitted.get(emission.group_id)
        if pending is not None:
            pending.discard(emission.seq)
            if not pending:
                del self._unemitted[emission.group_id]
        self._emitted_event.set()
        self._emitted_event = asyncio.Event()

    def emitted_through(self, group_id: bytes, seq: int) -> bool:
        """Whether every message of the group up to ``seq`` that a puppet decrypted
        has been re-emitted."""
        return all(pending > seq for pending in self._unemitted.get(group_id, ()))

    async def wait_emitted(self, group_id: bytes, seq: int) -> None:
        """Wait until :meth:`emitted_through` holds; after ``SETTLE_TIMEOUT`` s (the
        rooms are unreachable) go on with a warning rather than block the puppet."""
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                while not self.emitted_through(group_id, seq):
                    await self._emitted_event.wait()
        except TimeoutError:
            log.warning("relay: saving a puppet's state before its messages were "
                        "re-emitted (%.0f s)", SETTLE_TIMEOUT)

    async def _mark_emitted(self, emission: _Emission) -> None:
        """Persist the seq of a re-emitted group message (not of a legacy user's own
        text: its puppet never decrypts it) before the next re-emit."""
        if emission.origin or emission.seq <= self._emitted_upto.get(emission.group_id, 0):
            return
        self._emitted_upto[emission.group_id] = emission.seq
        await self.store.set_cursor(EMITTED_CURSOR + emission.group_id.hex(),
                                    str(emission.seq))

    async def _emit(self, emission: _Emission) -> None:
        rooms = self.groups.get(emission.group_id)
        if rooms is None:
            return
        # Matrix first: a resend after a restart has the same transaction id and is
        # dropped by the homeserver. XMPP has no acknowledgement; the stanzas are
        # flushed to the connection before the caller persists the re-emit cursor, and
        # a resend carries the same XEP-0359 stanza-id (clients drop the repeat).
        if self.bot is not None and emission.origin != MATRIX:
            content = {"msgtype": "m.text", "body": f"<{emission.sender}> {emission.text}",
                       matrix_ns.RELAY_KEY: {
                           "sender": emission.sender, "seq": emission.seq,
                           "group_id": matrix_events.b64encode(emission.group_id)}}
            await self.bot.send_message(rooms.matrix_room, content,
                                        _txn(b"relay", emission.group_id, rooms.matrix_room,
                                             emission.seq))
        if self.component is not None and self._emit_xmpp(rooms.xmpp_room, emission):
            await self.component.flush()
        self.relayed += 1

    def _emit_xmpp(self, room: str, emission: _Emission) -> bool:
        """Send to the room's legacy occupants; whether there were any."""
        assert self.component is not None
        occupants = self.component.occupants.get(room, {})
        readers = [occupant for occupant in occupants
                   if xmpp_identity(occupant) in self.puppets
                   and occupant != emission.author_occupant]
        if not readers:
            return False
        nick = occupants.get(emission.author_occupant) or emission.sender
        stanza_id = f"relay-{emission.group_id.hex()[:12]}-{emission.seq}"
        self.component.send_plain(room, readers, nick, emission.text, stanza_id)
        return True


def _undone(emission: _Emission) -> str:
    """How a stop names a re-emit it dropped (never its text)."""
    where = f"group {emission.group_id.hex()[:16]} seq {emission.seq} from {emission.sender}"
    if emission.origin:  # a legacy user's own text: no puppet will decrypt it again
        return f"relay: {where}: not shown in the other room"
    return f"relay: re-emit of {where}: deferred to the next start"


def _txn(kind: bytes, group_id: bytes, room_id: str, seq: int = 0) -> str:
    """A deterministic Matrix transaction id (a resend after a restart is deduplicated)."""
    return hashlib.sha256(b"%s|%s|%s|%d" % (kind, group_id, room_id.encode(), seq)
                          ).hexdigest()[:32]


__all__ = ["EMITTED_CURSOR", "NOTICE", "PUPPETS_CURSOR", "Relay"]
