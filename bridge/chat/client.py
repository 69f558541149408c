"""The chat client without its screen: one account, its device store, its rooms.

:class:`ChatClient` owns the :class:`bridge.member.Member` (over the session's link,
saving into the device's :class:`bridge.member.SqliteMemberStore`) and turns commands
into member calls and received messages into timelines (:mod:`bridge.chat.model`).
Everything it keeps survives a restart in the same store, under ``chat:`` keys beside
the member's own: each room's name, room id and read position, and its history (the
decrypted messages since we joined; what arrived while we were away comes from the
hub's log when the member catches up). A command that cannot be done raises
:class:`CommandError` with a sentence for the person, and changes nothing.

The screen (:mod:`bridge.chat.app`) is told about every change through ``on_change``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import cbor2

from bridge.chat.membership import Roster, Witness, describe, short, user_uri
from bridge.chat.model import Record, Timeline, decode_record, encode_record
from bridge.chat.session import Session, SessionError, Status
from bridge.errors import BridgeError, ContentError, HubRefused
from bridge.member import Member, MemberStore, Received, RetryPolicy
from bridge.member.attachments import Download
from mls.errors import MLSError
from transports.errors import LinkError, TransportError
from transports.interface import Inbound, Kind, Op, Outbound

log = logging.getLogger(__name__)

KEY_PACKAGES = 3  # KeyPackages kept published (a Welcome uses one up)
RETRY = RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0)
WAITING = "waiting for an invitation (Welcome)"
RELAY_CHECK_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds between asking again
RELAY_BANNER = ("RELAYED: the bridge decrypts this room for people without an MLS "
                "client. It is NOT end-to-end encrypted.")
HUB = "hub"
NETWORK_DEVICE = "chat:network-device"  # the network's own device id (Matrix), kept

#: what a hub refusal means to a person
REFUSALS = {
    "no-key-package": "{user} has no KeyPackage published: they need to open an MLS "
                      "client (such as mls-bridge chat) once first",
    "unknown-group": "there is no MLS group in {room}",
    "forbidden": "the bridge refused: {reason}",
    "join-policy": "the room does not allow joining by yourself: {reason}",
    "not-member": "you are not a member of this group",
}


class CommandError(BridgeError):
    """A command that could not be done; the message says why, for the person."""


@dataclass(eq=False)
class Room:
    """One group as the person sees it."""

    group_id: bytes
    name: str
    room_id: str = ""
    timeline: Timeline = field(default_factory=Timeline)
    read_seq: int = 0
    relayed: bool = False
    roster: Roster = field(default_factory=lambda: Roster(0, True))

    def to_bytes(self) -> bytes:
        return cbor2.dumps({0: self.name, 1: self.room_id, 2: self.read_seq})

    @classmethod
    def from_bytes(cls, group_id: bytes, data: bytes) -> Room:
        value = cbor2.loads(data)
        return cls(group_id, str(value[0]), str(value[1]), read_seq=int(value[2]))


class ChatClient:
    """One account's chat (see the module docstring)."""

    def __init__(self, session: Session, store: MemberStore, *, device: str,
                 on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time, receive_limit: int = 1 << 30
                 ) -> None:
        self.session = session
        self.store = store
        self.member = Member(session.link, store=store, device=device, retry=RETRY,
                             on_received=self.received, keep_received=False)
        session.attach(self)
        self.receive_limit = receive_limit
        self.on_change = on_change
        self.clock = clock
        self.me = session.identity
        self.rooms: dict[bytes, Room] = {}
        self.waiting: dict[str, str] = {}  # room id -> address as typed
        self.console = Timeline()  # notices that belong to no room
        self.status = Status(False, "not connected")
        self._witness: dict[tuple[bytes, int], Witness] = {}
        self._welcome_rooms: dict[bytes, tuple[str, str]] = {}  # group -> (room id, by)
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._stopped = False
        self._joining: set[bytes] = set()  # groups we are joining by external commit
        self._committing: set[bytes] = set()  # groups whose pending proposals we commit

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load rooms and history, connect, resume every group, publish KeyPackages."""
        await self.member.start()
        await self._load()
        await self.session.connect(self._on_status)
        if self.session.device_id:
            await self.store.save(NETWORK_DEVICE, self.session.device_id.encode("utf-8"))
        self._refresher = asyncio.ensure_future(self._refresh_loop())
        await self._resume()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._refresher is not None:
            self._refresher.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.member.stop()
        await self.session.close()

    async def _load(self) -> None:
        for key in await self.store.keys("chat:room:"):
            data = await self.store.load(key)
            group_id = bytes.fromhex(key.removeprefix("chat:room:"))
            if data is not None and group_id in self.member.group_ids():
                self.rooms[group_id] = Room.from_bytes(group_id, data)
        for key in await self.store.keys("chat:waiting:"):
            data = await self.store.load(key)
            if data is not None:
                self.waiting[key.removeprefix("chat:waiting:")] = data.decode("utf-8")
        for group_id in self.member.group_ids():
            room = self.rooms.get(group_id) or self._new_room(group_id)
            for key in await self.store.keys(f"chat:msg:{group_id.hex()}:"):
                data = await self.store.load(key)
                if data is None:
                    continue
                try:
                    room.timeline.apply(decode_record(data))
                except ContentError as exc:
                    log.warning("history record %s skipped: %s", key, exc)
            room.roster = Roster.of(self.member.group(group_id), self.member.trust.anchor)

    async def _resume(self) -> None:
        for room in list(self.rooms.values()):
            if room.room_id and self.member.group(room.group_id).active:
                await self.session.attach_room(room.room_id, room.group_id)
            await self._catch_up(room)
            self._spawn(self._check_relay(room))
        await self._publish_key_packages()
        try:
            await self.member.fetch_welcomes()
        except (BridgeError, LinkError, MLSError) as exc:
            log.info("fetch-welcomes failed: %s", exc)
        self._changed.set()

    async def _catch_up(self, room: Room) -> None:
        group = self.member.group(room.group_id)
        if not group.active:
            return
        try:
            await self.member.sync(room.group_id)
        except (BridgeError, LinkError, MLSError) as exc:
            self._notice(room, f"could not catch up with the group's log: {exc}")

    async def _publish_key_packages(self) -> None:
        have = len(await self.store.keys("kp:"))
        if have < KEY_PACKAGES:
            try:
                await self.member.publish_key_packages(KEY_PACKAGES - have)
            except (BridgeError, LinkError) as exc:
                self._notice(None, f"could not publish KeyPackages: {exc}")

    def _on_status(self, status: Status) -> None:
        reconnected = status.online and not self.status.online and self._refresher
        self.status = status
        self._notice(None, status.text)
        if reconnected:
            self._spawn(self._after_reconnect())
        self.on_change()

    async def _after_reconnect(self) -> None:
        for room in list(self.rooms.values()):
            await self._catch_up(room)

    # -- receiving ---------------------------------------------------------------------

    def received(self, message: Received) -> None:
        """The member's ``on_received`` hook: one decrypted application message."""
        room = self.rooms.get(message.group_id)
        if room is None:  # its first message came before the screen saw the join
            room = self._joined_by_welcome(message.group_id)
        record = Record(message.seq, message.sender, self.clock(), message.content)
        room.timeline.apply(record)
        self._spawn(self.save_record(room, record))
        self.on_change()

    async def deliver(self, message: Outbound) -> None:
        """:class:`transports.interface.DeliverySink` in front of the member: notes who
        committed each epoch and where Welcomes lead, then hands the delivery on."""
        if message.kind == Kind.COMMIT:
            self._witness.setdefault((message.group_id, message.epoch),
                                     Witness()).committer = message.sender
        elif message.kind == Kind.PROPOSAL and message.sender == HUB:
            self._witness.setdefault((message.group_id, message.epoch),
                                     Witness()).hub_removals = True
        elif message.kind == Kind.WELCOME:
            room_id = next((r for t, r in message.rooms if t == self.session.network), "")
            self._welcome_rooms[message.group_id] = (room_id, message.sender)
        await self.member.deliver(message)
        self._changed.set()

    async def _refresh_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.member.idle()
            self.refresh()

    def refresh(self) -> None:
        """Compare every group with what we showed last: new groups, membership."""
        for group_id in self.member.group_ids():
            if group_id in self._joining:
                continue  # join() makes the room when the external commit is in
            room = self.rooms.get(group_id)
            if room is None:
                room = self._joined_by_welcome(group_id)
            group = self.member.group(group_id)
            if group.active and group.state.pending and group_id not in self._committing:
                self._committing.add(group_id)
                self._spawn(self._commit_pending(room))
            if (group.epoch, group.active) == (room.roster.epoch, room.roster.active):
                continue
            after = Roster.of(group, self.member.trust.anchor)
            witness = self._witness.get((group_id, room.roster.epoch))
            for text in describe(room.roster, after, self.me, witness):
                self._notice(room, text)
            if room.roster.active and not after.active and room.room_id:
                self._spawn(self.session.leave_room(room.room_id))  # out of the group:
                # out of its room too (we stayed in it to receive our removal)
            room.roster = after
        self.on_change()

    async def _commit_pending(self, room: Room) -> None:
        """Commit proposals waiting in the group (the bridge's Removes of people who
        left the room): any member may, the hub takes the first and the others find
        nothing left to commit."""
        try:
            if await self.member.commit_pending(room.group_id) is not None:
                self._witness.setdefault((room.group_id, room.roster.epoch),
                                         Witness()).committer = self.me
        except (BridgeError, LinkError, MLSError) as exc:
            log.info("pending proposals of %s not committed: %s", room.name, exc)
        finally:
            self._committing.discard(room.group_id)
            self._changed.set()

    def _joined_by_welcome(self, group_id: bytes) -> Room:
        welcome = self._welcome_rooms.get(group_id)
        room_id, sender = welcome or ("", "")
        room = self._new_room(group_id, room_id)
        by = f" (added by {short(sender)})" if sender and sender != HUB else ""
        how = "from a Welcome" if welcome else "(found in the device store)"
        self._notice(room, f"you joined {room.name} {how}{by}")
        if room_id in self.waiting:
            self._spawn(self.store.delete("chat:waiting:" + room_id))
            del self.waiting[room_id]
        self._spawn(self._publish_key_packages())
        self._spawn(self._check_relay(room))
        if room_id:
            self._spawn(self._name(room))
        return room

    async def _name(self, room: Room) -> None:
        room.name = await self.session.room_name(room.room_id)
        await self._save_room(room)
        self.on_change()

    # -- rooms -------------------------------------------------------------------------

    def _new_room(self, group_id: bytes, room_id: str = "", name: str = "") -> Room:
        room = Room(group_id, name or room_id or f"group {group_id.hex()[:8]}", room_id)
        room.roster = Roster.of(self.member.group(group_id), self.member.trust.anchor)
        self.rooms[group_id] = room
        self._spawn(self._save_room(room))
        return room

    def room(self, name: str) -> Room:
        """A room by its name, room id or address as typed."""
        for room in self.rooms.values():
            if name in (room.name, room.room_id, room.group_id.hex()):
                return room
        try:
            address = self.session.room_address(name)
        except SessionError:
            address = name
        for room in self.rooms.values():
            if address == room.room_id:
                return room
        raise CommandError(f"no room {name!r}: /join it first (rooms: "
                           f"{', '.join(r.name for r in self.rooms.values()) or 'none'})")

    async def create(self, name: str) -> Room:
        """A new group in a new room (``/create``)."""
        try:
            address = self.session.room_address(name) if self.session.network == "xmpp" \
                else name
        except SessionError as exc:
            raise CommandError(str(exc)) from exc
        if self.session.network == "xmpp" and await self._room_group(address) is not None:
            raise CommandError(f"{address} already has a group: /join {address}")
        try:
            room_id = await self.session.create_room(address)
            group_id = await self.member.create_group(transport=self.session.network,
                                                      room_id=room_id)
        except HubRefused as exc:
            raise CommandError(f"could not create {name}: {exc.reason}") from exc
        except (SessionError, LinkError) as exc:
            raise CommandError(f"could not create {name}: {exc}") from exc
        room = self._new_room(group_id, room_id, name=address)
        self._notice(room, f"you created {room.name}: a new MLS group, you are its only "
                           f"member; /add people")
        self.on_change()
        return room

    async def _room_group(self, room_id: str) -> bytes | None:
        """The group of ``room_id`` per the hub (None: no group there)."""
        reply = await self.member.link.request(self._info_request(room_id))
        if reply.ok:
            return reply.group_id
        if reply.code == "unknown-group":
            return None
        raise CommandError(REFUSALS.get(reply.code, "{reason}").format(
            room=room_id, reason=reply.reason, user=""))

    def _info_request(self, room_id: str) -> Inbound:
        return Inbound(Op.GET_GROUP_INFO, self.me, transport=self.session.network,
                       room_id=room_id)

    async def join(self, address: str) -> Room | None:
        """Join a room by its address (``/join``): by external commit when the room's
        policy lets us, otherwise enter it and wait for a Welcome (None)."""
        try:
            wanted = self.session.room_address(address)
        except SessionError as exc:
            raise CommandError(str(exc)) from exc
        known = next((r for r in self.rooms.values() if wanted in (r.room_id, r.name)
                      and self.member.group(r.group_id).active), None)
        if known is not None:
            raise CommandError(f"you are already in {known.name}")
        try:
            room_id = await self.session.enter_room(wanted)
        except SessionError as exc:
            raise CommandError(str(exc)) from exc
        reply = await self._link_call(self._info_request(room_id))
        if not reply.ok and reply.code == "unknown-group":
            await self.session.leave_room(room_id)
            raise CommandError(f"there is no MLS group in {wanted}: /create it")
        if not reply.ok and reply.code in ("forbidden", "join-policy"):
            self.waiting[room_id] = wanted
            await self.store.save("chat:waiting:" + room_id, wanted.encode("utf-8"))
            self._notice(None, f"{wanted}: {WAITING}. A member must /add you.")
            self.on_change()
            return None
        if not reply.ok:
            raise CommandError(f"cannot join {wanted}: {reply.reason}")
        self._joining.add(reply.group_id)
        try:
            await self.member.rejoin(reply.group_id)
        except HubRefused as exc:
            if exc.code in ("forbidden", "join-policy"):
                self.waiting[room_id] = wanted
                self._notice(None, f"{wanted}: {WAITING}")
                return None
            raise CommandError(f"cannot join {wanted}: {exc.reason}") from exc
        except (BridgeError, LinkError, MLSError) as exc:
            raise CommandError(f"cannot join {wanted}: {exc}") from exc
        finally:
            self._joining.discard(reply.group_id)
        await self.session.attach_room(room_id, reply.group_id)
        room = self.rooms.get(reply.group_id) or self._new_room(
            reply.group_id, room_id, name=await self.session.room_name(room_id))
        room.roster = Roster.of(self.member.group(reply.group_id), self.member.trust.anchor)
        self._notice(room, f"you joined {room.name} by external commit (epoch "
                           f"{room.roster.epoch}, {len(room.roster.leaves)} members)")
        self._spawn(self._check_relay(room))
        self.on_change()
        return room

    async def _link_call(self, request: Inbound) -> Outbound:
        try:
            return await self.member.link.request(request)
        except LinkError as exc:
            raise CommandError(f"the bridge did not answer: {exc}") from exc

    async def add(self, room: Room, user: str) -> None:
        identity = _identity(user)
        await self._commit(room, f"add {user}", self.member.add_members, identity, user)

    async def remove(self, room: Room, user: str) -> None:
        identity = _identity(user)
        present = set(room.roster.leaves.values())
        if identity not in present:
            raise CommandError(f"{user} is not a member of {room.name}")
        await self._commit(room, f"remove {user}", self.member.remove_members, identity,
                           user)

    async def _commit(self, room: Room, what: str,
                      change: Callable[[bytes, list[str]], Awaitable[int | None]],
                      identity: str, user: str) -> None:
        self._check_active(room)
        try:
            seq = await change(room.group_id, [identity])
        except HubRefused as exc:
            raise CommandError(REFUSALS.get(exc.code, "could not " + what + ": {reason}")
                               .format(user=user, room=room.name, reason=exc.reason)
                               ) from exc
        except (BridgeError, LinkError, MLSError) as exc:
            raise CommandError(f"could not {what}: {exc}") from exc
        if seq is None:
            raise CommandError(f"nothing to do: {what} changes nothing")
        self._witness.setdefault((room.group_id, room.roster.epoch),
                                 Witness()).committer = self.me
        self.refresh()

    async def leave(self, room: Room) -> None:
        self._check_active(room)
        try:
            await self.member.leave(room.group_id)
        except (BridgeError, LinkError) as exc:
            raise CommandError(f"could not leave: {exc}") from exc
        self._notice(room, "you are leaving: the bridge proposed your removal, a "
                           "member's next commit completes it")
        self.on_change()

    def _check_active(self, room: Room) -> None:
        if not self.member.group(room.group_id).active:
            raise CommandError(f"you are no longer a member of {room.name}")

    async def _check_relay(self, room: Room) -> None:
        """Whether ``room`` is relayed (not end to end): asked of the room, again with
        backoff while it does not answer (a busy server must not hide the banner)."""
        before = room.relayed
        for delay in (*RELAY_CHECK_BACKOFF, None):
            if not room.room_id:
                break
            try:
                room.relayed = await self.session.relayed(room.room_id)
                break
            except (SessionError, TransportError, OSError) as exc:
                log.info("relay state of %s unknown: %s", room.room_id, exc)
            if delay is None:
                break
            await asyncio.sleep(delay)
        if room.group_id in self.member.group_ids() and self.member.relayed(room.group_id):
            room.relayed = True  # a relay puppet holds a leaf: not end to end
        if room.relayed != before:
            self.on_change()  # the banner appears (or goes) whenever the answer comes

    def downloader(self, room: Room) -> Download:
        """How to fetch a file's ciphertext in ``room``: the session downloads it, but
        media of another network's store that this account cannot read (``mxc://``
        from XMPP) comes through the hub (:meth:`bridge.member.Member.fetch_media`)."""
        async def download(url: str, size: int, sha256: bytes) -> bytes:
            if not url.startswith("mxc://") or self.session.network == "matrix":
                return await self.session.download(url, size, sha256)
            try:
                return await self.member.fetch_media(room.group_id, url, size, sha256)
            except HubRefused as exc:
                raise SessionError(f"the bridge did not fetch it: {exc.reason}") from exc
            except (BridgeError, LinkError) as exc:
                raise SessionError(f"the bridge did not fetch it: {exc}") from exc
        return download

    def mark_read(self, room: Room) -> None:
        if room.timeline.last_seq > room.read_seq:
            room.read_seq = room.timeline.last_seq
            self._spawn(self._save_room(room))

    def unread(self, room: Room) -> int:
        return room.timeline.unread(room.read_seq, self.me)

    # -- bookkeeping -------------------------------------------------------------------

    def _notice(self, room: Room | None, text: str) -> None:
        (room.timeline if room is not None else self.console).notice(self.clock(), text)

    async def _save_room(self, room: Room) -> None:
        await self.store.save("chat:room:" + room.group_id.hex(), room.to_bytes())

    async def save_record(self, room: Room, record: Record) -> None:
        await self.store.save(f"chat:msg:{room.group_id.hex()}:{record.seq:012d}",
                              encode_record(record))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %s", task.exception())


def _identity(user: str) -> str:
    try:
        return user_uri(user)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
