"""Smoke tests: the harness's Prosody and Synapse really carry what the bridge needs.

XMPP: c2s login and a direct message; an XEP-0114 component receives a message for
room@<component> and answers it. Matrix: login, room/invite/join, a custom event type
via sync, a to-device message, and (AS mode) the application-service ping and
transaction push.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import nio
import pytest
from aiohttp import web
from slixmpp import ClientXMPP, ComponentXMPP
from slixmpp.stanza import Message

from bridge.devservers.ports import ServerSetupError
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import AppServiceSpec, SynapseServer

TIMEOUT = 20.0
MATRIX_EVENT_TYPE = "im.mlsbridge.test"


# --------------------------------------------------------------------------- XMPP


async def xmpp_client(server: ProsodyServer, jid: str, password: str) -> ClientXMPP:
    client = ClientXMPP(f"{jid}/smoke", password)
    server.configure_client(client)
    ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_start(_event: Any) -> None:
        client.send_presence()
        if not ready.done():
            ready.set_result(True)

    def on_failed(event: Any) -> None:
        if not ready.done():
            ready.set_exception(AssertionError(f"{jid}: authentication failed: {event}"))

    client.add_event_handler("session_start", on_start)
    client.add_event_handler("failed_auth", on_failed)
    client.connect(host=server.host, port=server.c2s_port)
    await asyncio.wait_for(ready, TIMEOUT)
    return client


async def xmpp_component(server: ProsodyServer) -> ComponentXMPP:
    component = ComponentXMPP(**server.component_args())
    ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    component.add_event_handler("session_start", lambda _e: ready.done() or ready.set_result(True))
    component.connect()
    await asyncio.wait_for(ready, TIMEOUT)
    return component


def queue_messages(stream: ClientXMPP | ComponentXMPP) -> asyncio.Queue[Message]:
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    stream.add_event_handler("message", inbox.put_nowait)
    return inbox


async def test_xmpp_clients_exchange_direct_message(prosody_server: ProsodyServer) -> None:
    alice_jid, alice_pw = prosody_server.new_user("alice")
    bob_jid, bob_pw = prosody_server.new_user("bob")
    alice = await xmpp_client(prosody_server, alice_jid, alice_pw)
    bob = await xmpp_client(prosody_server, bob_jid, bob_pw)
    try:
        assert alice.boundjid.bare == alice_jid and bob.boundjid.bare == bob_jid
        bob_inbox = queue_messages(bob)
        body = f"hello {uuid.uuid4().hex}"
        alice.send_message(mto=bob.boundjid, mbody=body, mtype="chat")
        got = await asyncio.wait_for(bob_inbox.get(), TIMEOUT)
        assert got["body"] == body
        assert got["type"] == "chat"
        assert got["from"] == alice.boundjid
    finally:
        await asyncio.gather(alice.disconnect(), bob.disconnect())


async def test_xmpp_component_receives_and_answers(prosody_server: ProsodyServer) -> None:
    component = await xmpp_component(prosody_server)
    alice_jid, alice_pw = prosody_server.new_user("alice")
    alice = await xmpp_client(prosody_server, alice_jid, alice_pw)
    try:
        component_inbox = queue_messages(component)
        alice_inbox = queue_messages(alice)
        room = f"room@{prosody_server.component_name}"
        payload = base64.b64encode(os.urandom(300)).decode()
        alice.send_message(mto=room, mbody=payload, mtype="groupchat")

        got = await asyncio.wait_for(component_inbox.get(), TIMEOUT)
        assert got["to"].bare == room
        assert got["from"] == alice.boundjid
        assert got["type"] == "groupchat"
        assert got["body"] == payload

        component.send_message(
            mto=got["from"], mfrom=f"{room}/hub", mbody=f"ack {payload}", mtype="groupchat"
        )
        reply = await asyncio.wait_for(alice_inbox.get(), TIMEOUT)
        assert reply["from"] == f"{room}/hub"
        assert reply["body"] == f"ack {payload}"
    finally:
        await asyncio.gather(alice.disconnect(), component.disconnect())


async def test_prosody_restart_keeps_accounts(prosody_server: ProsodyServer) -> None:
    jid, password = prosody_server.new_user("carol")
    prosody_server.stop()
    try:
        assert not prosody_server.running
    finally:
        prosody_server.start()
    client = await xmpp_client(prosody_server, jid, password)
    try:
        assert client.boundjid.bare == jid
    finally:
        await client.disconnect()


def test_busy_port_fails_with_reason(tmp_path: Any, prosody_server: ProsodyServer) -> None:
    """A server that cannot start raises ServerSetupError (the fixtures turn it into a FAIL)."""
    clash = ProsodyServer(data_dir=tmp_path, tls=False, c2s_port=prosody_server.c2s_port)
    clash.prepare()
    with pytest.raises(ServerSetupError, match=f"port {prosody_server.c2s_port} is already in use"):
        clash.start()
    assert not clash.running


# --------------------------------------------------------------------------- Matrix


async def matrix_login(server: SynapseServer, user_id: str, password: str) -> nio.AsyncClient:
    client = nio.AsyncClient(server.url, user_id)
    response = await client.login(password, device_name="smoke")
    assert isinstance(response, nio.LoginResponse), response
    sync = await client.sync(timeout=0)
    assert isinstance(sync, nio.SyncResponse), sync
    return client


async def sync_until(
    client: nio.AsyncClient, found: Callable[[nio.SyncResponse], Any], timeout: float = TIMEOUT
) -> Any:
    """Sync until found(response) returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.sync(timeout=1000, since=client.next_batch)
        assert isinstance(response, nio.SyncResponse), response
        value = found(response)
        if value:
            return value
    raise AssertionError(f"{client.user_id}: condition not met within {timeout} s of syncing")


async def test_matrix_room_custom_event_and_to_device(synapse_server: SynapseServer) -> None:
    alice_id, alice_pw = synapse_server.new_user("alice")
    bob_id, bob_pw = synapse_server.new_user("bob")
    alice = await matrix_login(synapse_server, alice_id, alice_pw)
    bob = await matrix_login(synapse_server, bob_id, bob_pw)
    try:
        created = await alice.room_create(name="smoke", invite=[bob_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await sync_until(bob, lambda r: room_id in r.rooms.invite)
        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined

        content = {"group": "Z3JvdXA", "message": base64.b64encode(os.urandom(400)).decode()}
        sent = await alice.room_send(room_id, MATRIX_EVENT_TYPE, content)
        assert isinstance(sent, nio.RoomSendResponse), sent

        def custom_event(response: nio.SyncResponse) -> Any:
            room = response.rooms.join.get(room_id)
            events = room.timeline.events if room else []
            return next((e for e in events if e.event_id == sent.event_id), None)

        event = await sync_until(bob, custom_event)
        assert event.source["type"] == MATRIX_EVENT_TYPE
        assert event.source["content"] == content
        assert event.sender == alice_id

        to_device_content = {"welcome": base64.b64encode(os.urandom(64)).decode()}
        message = nio.ToDeviceMessage(
            f"{MATRIX_EVENT_TYPE}.welcome", bob_id, bob.device_id, to_device_content
        )
        response = await alice.to_device(message)
        assert isinstance(response, nio.ToDeviceResponse), response

        def to_device_event(response: nio.SyncResponse) -> Any:
            return next(
                (
                    e
                    for e in response.to_device_events
                    if e.source.get("type") == f"{MATRIX_EVENT_TYPE}.welcome"
                ),
                None,
            )

        received = await sync_until(bob, to_device_event)
        assert received.source["content"] == to_device_content
        assert received.source["sender"] == alice_id
    finally:
        await asyncio.gather(alice.close(), bob.close())


async def test_synapse_restart_keeps_users(synapse_server: SynapseServer) -> None:
    user_id, password = synapse_server.new_user("carol")
    synapse_server.stop()
    try:
        assert not synapse_server.running
    finally:
        synapse_server.start()
    client = await matrix_login(synapse_server, user_id, password)
    try:
        assert client.user_id == user_id
    finally:
        await client.close()


class AppServiceReceiver:
    """The HS->AS half of an application service on 127.0.0.1 (aiohttp)."""

    def __init__(self, hs_token: str) -> None:
        self.hs_token = hs_token
        self.events: list[dict[str, Any]] = []
        self.pings: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_put("/_matrix/app/v1/transactions/{txn}", self.on_transaction)
        self.app.router.add_post("/_matrix/app/v1/ping", self.on_ping)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.hs_token}"

    async def on_transaction(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        self.events.extend((await request.json()).get("events", []))
        self.arrived.set()
        return web.json_response({})

    async def on_ping(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        self.pings.append(await request.json())
        return web.json_response({})

    async def wait_for_event(self, event_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            match = next((e for e in self.events if e.get("event_id") == event_id), None)
            if match:
                return match
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        raise AssertionError(f"AS never received {event_id}")


@pytest.mark.parametrize("synapse_server", [AppServiceSpec()], indirect=True)
async def test_matrix_appservice_receives_transactions(synapse_server: SynapseServer) -> None:
    spec = synapse_server.appservice
    assert spec is not None
    receiver = AppServiceReceiver(spec.hs_token)
    runner = web.AppRunner(receiver.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", synapse_server.appservice_port).start()
    alice_id, alice_pw = synapse_server.new_user("alice")
    alice = await matrix_login(synapse_server, alice_id, alice_pw)
    try:
        ping = await asyncio.to_thread(
            synapse_server.request,
            "POST",
            f"/_matrix/client/v1/appservice/{spec.id}/ping",
            {"transaction_id": "smoke"},
            spec.as_token,
        )
        assert "duration_ms" in ping
        assert receiver.pings == [{"transaction_id": "smoke"}]

        puppet = f"{spec.user_prefix}{uuid.uuid4().hex[:8]}"
        registered = await asyncio.to_thread(
            synapse_server.request,
            "POST",
            "/_matrix/client/v3/register",
            {"type": "m.login.application_service", "username": puppet, "inhibit_login": True},
            spec.as_token,
        )
        assert registered["user_id"] == synapse_server.user_id(puppet)
        created = await alice.room_create(name="as-smoke", invite=[registered["user_id"]])
        assert isinstance(created, nio.RoomCreateResponse), created
        join_path = (
            f"/_matrix/client/v3/join/{quote(created.room_id)}"
            f"?user_id={quote(registered['user_id'])}"
        )
        await asyncio.to_thread(synapse_server.request, "POST", join_path, {}, spec.as_token)
        sent = await alice.room_send(created.room_id, MATRIX_EVENT_TYPE, {"to": "bridge"})
        assert isinstance(sent, nio.RoomSendResponse), sent
        event = await receiver.wait_for_event(sent.event_id)
        assert event["type"] == MATRIX_EVENT_TYPE
        assert event["content"] == {"to": "bridge"}
        assert event["room_id"] == created.room_id
    finally:
        await alice.close()
        await runner.cleanup()
