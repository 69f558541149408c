"""The native baselines of the load run: plain clients in plain rooms, no bridge, no MLS.

* :class:`NativeMatrix` -- a matrix-nio client (its own sync loop) in plain Matrix rooms
  on the same Synapse; a send is awaited until Synapse answers with the event id.
* :class:`NativeXmpp` -- a slixmpp client in plain MUC rooms of Prosody's own MUC
  component (``conference.<domain>``); a send is awaited until the room reflects the
  message back to its sender (XEP-0045 §7.4: the room sends every occupant, the sender
  included, the message), which is when the room has fanned it out.

Both note when each message body first arrived in each room (``time.monotonic()``, i.e.
CLOCK_MONOTONIC) and how many times, for the same latency definition as the bridged run:
send started -> the last recipient got it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import xml.etree.ElementTree as ET
from typing import Any

import nio
from slixmpp import ClientXMPP

from benchmarks.bridge_run import SYNC_MS, connect_xmpp
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer

MUC = "http://jabber.org/protocol/muc"
SEND_TIMEOUT = 120.0


class Arrivals:
    """Per room: body -> arrival times (first one is the arrival; more are duplicates)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, list[float]]] = {}

    def note(self, room: str, body: str) -> None:
        self.rooms.setdefault(room, {}).setdefault(body, []).append(time.monotonic())

    def got(self, room: str) -> dict[str, tuple[int, float]]:
        return {body: (len(times), times[0])
                for body, times in self.rooms.get(room, {}).items()}

    def has(self, room: str, bodies: list[str]) -> bool:
        seen = self.rooms.get(room, {})
        return all(body in seen for body in bodies)


class NativeMatrix:
    """A plain matrix-nio account: creates, joins and talks in unencrypted rooms."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self.client = client
        self.arrivals = Arrivals()
        self._sync: asyncio.Task[Any] | None = None

    @property
    def identity(self) -> str:
        return str(self.client.user_id)

    @classmethod
    async def create(cls, server: SynapseServer, prefix: str) -> NativeMatrix:
        user_id, password = server.new_user(prefix)
        client = nio.AsyncClient(server.url, user_id)
        response = await client.login(password, device_name="native-load")
        if not isinstance(response, nio.LoginResponse):
            raise AssertionError(f"login of {user_id} failed: {response}")
        native = cls(client)
        client.add_event_callback(native._on_text, nio.RoomMessageText)  # type: ignore[arg-type]
        native._sync = asyncio.create_task(client.sync_forever(timeout=SYNC_MS))
        return native

    async def _on_text(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        self.arrivals.note(room.room_id, event.body)

    async def create_room(self, invite: list[str]) -> str:
        created = await self.client.room_create(name="native load", invite=invite)
        if not isinstance(created, nio.RoomCreateResponse):
            raise AssertionError(f"room creation failed: {created}")
        return str(created.room_id)

    async def join(self, room_id: str) -> None:
        deadline = time.monotonic() + 60
        while True:  # the invite may not have reached this account yet
            response = await self.client.join(room_id)
            if isinstance(response, nio.JoinResponse):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.identity} could not join {room_id}: {response}")
            await asyncio.sleep(0.2)

    async def joined(self, room_id: str) -> int:
        response = await self.client.joined_members(room_id)
        return len(response.members) if isinstance(response, nio.JoinedMembersResponse) else 0

    async def send(self, room_id: str, text: str) -> None:
        response = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": text})
        if not isinstance(response, nio.RoomSendResponse):
            raise AssertionError(f"send in {room_id} failed: {response}")

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
        await self.client.close()  # type: ignore[no-untyped-call]  # nio: unannotated


class NativeXmpp:
    """A plain slixmpp account in MUC rooms (its nick in every room: its localpart)."""

    def __init__(self, client: ClientXMPP, jid: str) -> None:
        self.client = client
        self.jid = jid
        self.nick = jid.split("@", 1)[0]
        self.arrivals = Arrivals()
        self._echo: dict[str, asyncio.Future[None]] = {}
        self._joined: dict[str, asyncio.Future[None]] = {}
        client.add_event_handler("message", self._on_message)
        client.add_event_handler("presence", self._on_presence)

    @property
    def identity(self) -> str:
        return "xmpp:" + self.jid

    @classmethod
    async def create(cls, server: ProsodyServer, prefix: str) -> NativeXmpp:
        jid, password = server.new_user(prefix)
        client = ClientXMPP(f"{jid}/{secrets.token_hex(3)}", password)
        client.register_plugin("xep_0030")
        server.configure_client(client)
        native = cls(client, jid)
        await connect_xmpp(client, server)
        return native

    def _on_message(self, message: Any) -> None:
        body = message["body"]
        if message["type"] != "groupchat" or not body:
            return
        if message.xml.find("{urn:xmpp:delay}delay") is not None:
            return  # history replayed on join is not an arrival
        room = message["from"].bare
        if message["from"].resource == self.nick:
            echo = self._echo.pop(body, None)
            if echo is not None and not echo.done():
                echo.set_result(None)
            return
        self.arrivals.note(room, body)

    def _on_presence(self, presence: Any) -> None:
        room = presence["from"].bare
        if presence["from"].resource == self.nick and room in self._joined:
            future = self._joined.pop(room)
            if not future.done():
                future.set_result(None)

    async def join(self, room: str, timeout: float = 60.0) -> None:
        joined = asyncio.get_running_loop().create_future()
        self._joined[room] = joined
        presence = self.client.make_presence(pto=f"{room}/{self.nick}")
        ET.SubElement(presence.xml, f"{{{MUC}}}x")
        presence.send()
        await asyncio.wait_for(joined, timeout)

    async def send(self, room: str, text: str) -> None:
        echo = asyncio.get_running_loop().create_future()
        self._echo[text] = echo
        self.client.make_message(mto=room, mbody=text, mtype="groupchat").send()
        await asyncio.wait_for(echo, SEND_TIMEOUT)

    async def close(self) -> None:
        await self.client.disconnect(wait=1.0)
