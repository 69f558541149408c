"""Megolm in the rooms the bot reads: the Matrix end-to-end encryption module
(Client-Server API, "End-to-End Encryption": ``m.megolm.v1.aes-sha2``, ``m.room_key``,
``m.room.encryption``, device keys, key sharing), through matrix-nio's own E2E
(``matrix-nio[e2e]``: its olm machine on vodozemac).

Element encrypts private rooms with Megolm. A relayed room whose Matrix users write
Megolm would otherwise be dropped silently; with :class:`Megolm` the bot (bot mode:
a logged-in device with /sync) reads and writes them:

* its olm account and sessions live in an nio ``SqliteStore`` in a file of its own
  (:func:`client_config`; created 0600, refused if anyone else may read it), never in
  the hub's store, which holds public metadata only;
* :meth:`Megolm.maintain` after each sync: device keys and one-time keys uploaded,
  room members' devices queried (tracked by nio from the rooms' memberships), one-time
  keys claimed for devices with a broken Olm session, queued to-device messages sent;
* nio decrypts ``m.room.encrypted`` timeline events it holds a session for; the bot
  hands a decrypted ``m.room.message`` to the relay as its sender's plain message,
  once the Megolm session is shown to belong to one of the sender's own devices
  (:meth:`Megolm.sender_device_ok`: the session's curve25519 and ed25519 keys are the
  keys that device published) -- a room member holding a session cannot write as
  somebody else;
* outbound messages into a room with ``m.room.encryption`` are encrypted
  (:meth:`Megolm.send`), the session shared with every device of every joined member
  (nio's ``ignore_unverified_devices``): a bridge bot cannot verify each user's
  devices interactively, and it is what mautrix bridges do;
* an event it cannot decrypt (no session yet, unsupported algorithm) is kept
  (:data:`PENDING_KEPT` at most), its room key requested from the sender's devices
  (``m.room_key_request``), retried after every sync; the room is told once per
  (sender, session), rate-limited per room (:class:`UnreadableNotices`), with a log
  line and a count (:attr:`Megolm.undecryptable`).

The bot's device is published with the display name :data:`DEVICE_NAME` and its
ed25519 fingerprint is logged at start (:attr:`Megolm.fingerprint`). nio implements
no cross-signing, so :mod:`transports.matrix.crosssign` does: at every start the
device is signed by the account's self-signing key (:attr:`Megolm.cross_signing`,
its keys in ``<olm store>.cross-signing``, 0600), and clients show it as verified
by its owner; the master key is logged at start. Should that fail (the homeserver
asks for a password the bot does not have, or is unreachable), the log says the
device stays unverified, and why; the bot runs on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import nio
from nio.store import SqliteStore

from transports.fairness import RateLimiter
from transports.matrix import namespace as ns
from transports.matrix.crosssign import CrossSigning, keys_file
from transports.matrix.errors import HomeserverError
from transports.private_files import create_private

log = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"
DEVICE_NAME = "mls-bridge relay"
#: decrypted event types handed on (a redaction is never encrypted: m.room.redaction
#: stays plain in encrypted rooms)
HANDED_ON = frozenset({ns.MESSAGE_EVENT, "m.reaction"})
PENDING_KEPT = 1000  # undecryptable events kept for a retry (the oldest dropped)
NOTICE_RATE = 1 / 60  # unreadable-room notices per second per room, sustained
NOTICE_BURST = 3  # ... and at once
UNREADABLE = ("{user}: the bridge cannot read your encrypted message ({why}), so it was "
              "not relayed. It has asked your devices for the key; if this repeats, "
              "verify or re-share keys with the bridge's device \"" + DEVICE_NAME + "\".")
NEEDS_BOT_MODE = ("{user}: this room is end-to-end encrypted and the bridge runs as an "
                  "application service, which cannot decrypt it: nothing written here "
                  "with encryption is relayed. Run the bridge in bot mode for encrypted "
                  "rooms.")

Notify = Callable[[str, str, str], Awaitable[None]]  # room id, text, key (once per key)
#: what a decrypted ``m.room.message`` or ``m.reaction`` is handed to: room id, event id,
#: event type, content, sender
PlainMessage = Callable[[str, str, str, Mapping[str, Any], str], Awaitable[None]]


def open_store_file(path: Path) -> None:
    """Create the olm store's file with mode 0600 if absent; refuse one that anyone but
    its owner may read or write (:class:`PermissionError`). SQLite gives its journal
    the database file's mode."""
    create_private(path, "the olm store")


def client_config(path: Path) -> tuple[str, nio.AsyncClientConfig]:
    """nio's ``store_path`` (a directory) and the client configuration that keeps the
    olm store in ``path`` (created 0600 by :func:`open_store_file`)."""
    open_store_file(path)
    config = nio.AsyncClientConfig(encryption_enabled=True, store=SqliteStore,
                                   store_name=path.name, store_sync_tokens=False)
    return str(path.parent), config


def olm_store_file(client: nio.AsyncClient) -> Path:
    """The olm store file of a client built with :func:`client_config`."""
    return Path(client.store_path or ".") / client.config.store_name


class UnreadableNotices:
    """Tell a room, once per key and at most :data:`NOTICE_RATE` per room, that a
    message in it could not be read (the text never includes the message)."""

    def __init__(self, notify: Notify, *, kept: int = 10_000) -> None:
        self.notify = notify
        #: which rooms are told (the relayed ones: set by the bot's observer)
        self.wanted: Callable[[str], bool] = lambda room_id: True
        self.sent = 0
        self._told: OrderedDict[str, None] = OrderedDict()
        self._kept = kept
        self._rate = RateLimiter(NOTICE_RATE, NOTICE_BURST)

    async def tell(self, room_id: str, key: str, text: str) -> None:
        if key in self._told or not self.wanted(room_id):
            return
        self._told[key] = None
        while len(self._told) > self._kept:
            self._told.popitem(last=False)
        if not self._rate.allow(room_id):
            log.info("unreadable-message notice in %s not sent: rate-limited", room_id)
            return
        try:
            await self.notify(room_id, text, key)
        except HomeserverError as exc:
            log.warning("unreadable-message notice in %s not sent: %s", room_id, exc)
            return
        self.sent += 1

    async def without_store(self, room_id: str, sender: str,
                            content: Mapping[str, Any]) -> None:
        """A Megolm event reached a bot without an olm store (application-service
        mode): say that encrypted rooms need bot mode, once per sender and session."""
        log.info("cannot read a Megolm event from %s in %s: no olm store", sender, room_id,
                 extra={"flood_key": f"megolm|{room_id}"})
        session = content.get("session_id")
        await self.tell(room_id, f"{room_id}|{sender}|{session}",
                        NEEDS_BOT_MODE.format(user=sender))


class Megolm:
    """The bot's olm machine (see the module docstring). ``client`` was built with
    :func:`client_config` and is logged in (nio then loaded the store)."""

    def __init__(self, client: nio.AsyncClient, notices: UnreadableNotices, *,
                 password: str = "") -> None:
        if client.olm is None:
            raise HomeserverError("the olm store was not loaded (log in first)")
        self.client = client
        self.notices = notices
        #: the account's cross-signing keys, beside the olm store (:func:`olm_store_file`)
        self.cross_signing = CrossSigning(client, keys_file(olm_store_file(client)),
                                          password)
        self.undecryptable = 0  # events the bot could not decrypt (for the metrics)
        self.decrypted = 0
        self._pending: OrderedDict[str, tuple[str, nio.MegolmEvent]] = OrderedDict()
        self._held: OrderedDict[str, tuple[str, nio.Event]] = OrderedDict()  # sender unproven

    @property
    def fingerprint(self) -> str:
        """The device's ed25519 key (what a user compares to verify it)."""
        return str(self.client.olm.account.identity_keys["ed25519"])  # type: ignore[union-attr]

    def encrypted(self, room_id: str) -> bool:
        """Whether the room has ``m.room.encryption`` (as far as the bot's syncs saw)."""
        room = self.client.rooms.get(room_id)
        return room_id in self.client.encrypted_rooms or bool(room and room.encrypted)

    async def start(self) -> None:
        """Name the device, upload its keys, log its fingerprint, cross-sign it
        (:meth:`CrossSigning.ensure`: never raises; a failure leaves it unverified)."""
        response = await self.client.update_device(
            str(self.client.device_id), {"display_name": DEVICE_NAME})
        if not isinstance(response, nio.UpdateDeviceResponse):
            log.warning("could not name the bot's device: %s", response)
        await self.maintain()
        log.info("Megolm device %s of %s, ed25519 fingerprint %s", self.client.device_id,
                 self.client.user_id, self.fingerprint)
        await self.cross_signing.ensure()

    async def maintain(self) -> None:
        """Keys after a sync: upload, query, claim; send queued to-device messages."""
        client = self.client
        calls: list[tuple[bool, Callable[[], Awaitable[Any]]]] = [
            (client.should_upload_keys, client.keys_upload),
            (client.should_query_keys, client.keys_query),
            (client.should_claim_keys,
             lambda: client.keys_claim(client.get_users_for_key_claiming())),
            (bool(client.outgoing_to_device_messages), client.send_to_device_messages),
        ]
        for due, call in calls:
            if not due:
                continue
            response = await call()
            if isinstance(response, nio.ErrorResponse):
                log.warning("olm key maintenance: %s", response.message)

    async def send(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn: str) -> nio.RoomSendResponse | nio.RoomSendError:
        """One event into an encrypted room, Megolm-encrypted for every device of its
        joined members."""
        try:
            response: nio.RoomSendResponse | nio.RoomSendError = await self.client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True)
        except (nio.LocalProtocolError, nio.SendRetryError) as exc:
            raise HomeserverError(f"encrypted send into {room_id}: {exc}") from exc
        return response

    def accept(self, room_id: str, event: nio.Event) -> bool:
        """Whether a decrypted event may be handed on: its Megolm session belongs to a
        device of its sender (the session's sender key is the curve25519 key of one of
        the sender's devices, and its ed25519 key that device's). An event whose
        sender's devices are not known yet is held, the devices queried at the next
        :meth:`maintain`, and the event returned by :meth:`retry` once proven."""
        olm = self.client.olm
        assert olm is not None
        sender_key = str(getattr(event, "sender_key", ""))
        session = olm.inbound_group_store.get(room_id, sender_key,
                                              str(getattr(event, "session_id", "")))
        if session is not None:
            for device in olm.device_store.active_user_devices(event.sender):
                if device.curve25519 == sender_key and device.ed25519 == session.ed25519:
                    self._held.pop(event.event_id, None)
                    self.decrypted += 1
                    return True
        olm.users_for_key_query.add(event.sender)
        if event.event_id not in self._held:
            self._held[event.event_id] = (room_id, event)
            while len(self._held) > PENDING_KEPT:
                self._held.popitem(last=False)
            log.info("holding %s from %s in %s: its Megolm session is not (yet) proven "
                     "to be one of the sender's devices", event.event_id, event.sender,
                     room_id)
        return False

    async def undecryptable_event(self, room_id: str, event: nio.MegolmEvent) -> None:
        """An event nio could not decrypt: kept for a retry, its key requested, the room
        told (once per sender and session)."""
        self.undecryptable += 1
        event.room_id = room_id
        self._pending[event.event_id] = (room_id, event)
        while len(self._pending) > PENDING_KEPT:
            self._pending.popitem(last=False)
        log.info("cannot decrypt %s from %s in %s (session %s): no room key yet",
                 event.event_id, event.sender, room_id, event.session_id,
                 extra={"flood_key": f"undecryptable|{room_id}"})
        try:
            response = await self.client.request_room_key(event)
            if isinstance(response, nio.ErrorResponse):
                log.info("room key request for %s: %s", event.session_id, response.message)
        except nio.LocalProtocolError:
            pass  # already requested for this session
        await self.notices.tell(room_id, f"{room_id}|{event.sender}|{event.session_id}",
                                UNREADABLE.format(user=event.sender, why="no room key yet"))

    def retry(self) -> list[tuple[str, nio.Event]]:
        """Events to hand on now, in order: held ones whose sender's device is now
        known, and kept ones that decrypt now (their keys arrived); call after
        :meth:`maintain`. Whatever is still not proven stays held."""
        ready = list(self._held.values())
        olm = self.client.olm
        assert olm is not None
        for event_id, (room_id, event) in list(self._pending.items()):
            if olm.inbound_group_store.get(room_id, str(event.sender_key),
                                           str(event.session_id)) is None:
                continue  # its key has not arrived
            try:
                decrypted = self.client.decrypt_event(event)
            except nio.EncryptionError:
                continue
            del self._pending[event_id]
            if isinstance(decrypted, nio.Event):
                ready.append((room_id, decrypted))
        return [(room_id, event) for room_id, event in ready if self.accept(room_id, event)]

    async def handle(self, room_id: str, event: nio.Event, plain: PlainMessage) -> None:
        """A timeline event nio handled with its olm machine: a decrypted
        ``m.room.message`` goes to ``plain`` like a plain one once :meth:`accept`
        proves its session; what did not decrypt is kept and the room told
        (:meth:`undecryptable_event`). Nothing else a decrypted payload claims to be
        (state, MLS events) is acted on."""
        if isinstance(event, nio.MegolmEvent):
            if event.sender != self.client.user_id:
                await self.undecryptable_event(room_id, event)
            return
        if self.accept(room_id, event):
            await _hand_on(room_id, event, plain)

    async def after_sync(self, plain: PlainMessage) -> None:
        """Keys maintained (:meth:`maintain`), then what is ready now (:meth:`retry`)
        handed to ``plain``."""
        await self.maintain()
        for room_id, event in self.retry():
            await _hand_on(room_id, event, plain)

    def close(self) -> None:
        """Close the olm store (its SQLite connection)."""
        store = self.client.store
        database = getattr(store, "database", None)
        if database is not None:
            database.close()


async def _hand_on(room_id: str, event: nio.Event, plain: PlainMessage) -> None:
    content = event.source.get("content")
    event_type = event.source.get("type")
    if event_type in HANDED_ON and isinstance(content, Mapping):
        await plain(room_id, event.event_id, str(event_type), content, event.sender)


__all__ = ["DEVICE_NAME", "MEGOLM", "NEEDS_BOT_MODE", "UNREADABLE", "Megolm",
           "UnreadableNotices", "client_config", "olm_store_file", "open_store_file"]
