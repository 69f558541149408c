"""The hub goes away mid-conversation and comes back: nothing is lost or duplicated.

1. the component's process (``python -m bridge.app.services.xmpp``) is killed with SIGKILL
   and started again on the same SQLite store;
2. the in-process component loses its server connection and reconnects with backoff;
3. Prosody itself restarts (component and members reconnect).
Members keep sending meanwhile (their bounced requests are retried). A Welcome held for
an offline user survives the kill as well."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from bridge.devservers.prosody import ProsodyServer
from tests.xmpp.conftest import (
    HubProcess,
    InProcessHub,
    NoOfflineProsody,
    Peer,
    UploadProsody,
    new_peer,
    start_hub,
)
from tests.xmpp.helpers import chat, converge, in_group, received_all, room_jid, until
from transports.interface import Kind, Outbound


async def _trio(server: ProsodyServer) -> tuple[list[Peer], bytes, str]:
    alice, bob, carol = [await new_peer(server, name) for name in ("ra", "rb", "rc")]
    for peer in (bob, carol):
        await peer.member.publish_key_packages(1)
    room = room_jid(server.component_name)
    group_id = await alice.member.create_group(transport="xmpp", room_id=room)
    await alice.member.add_members(group_id, [bob.identity, carol.identity])
    await until(lambda: in_group(bob, group_id) and in_group(carol, group_id), "Welcomes")
    await until(lambda: all(room in p.plugin.rooms for p in (bob, carol)), "room joins")
    await converge([alice, bob, carol], group_id)
    return [alice, bob, carol], group_id, room


async def test_killed_hub_process_loses_nothing(prosody_server: ProsodyServer,
                                                tmp_path: Path) -> None:
    process = HubProcess(prosody_server, tmp_path)
    await process.start()
    peers: list[Peer] = []
    try:
        peers, group_id, _ = await _trio(prosody_server)
        sent: dict[str, list[tuple[str, str]]] = {}
        await chat(peers, group_id, sent, rounds=1, tag="before ")
        await received_all(peers, group_id, sent)

        process.kill()  # SIGKILL: no goodbye, occupants and log only in the store

        async def restart_later() -> None:
            await asyncio.sleep(1.0)
            await process.start()

        restarting = asyncio.ensure_future(restart_later())
        # sent while the hub is down: bounced by Prosody, retried until it is back
        await chat(peers, group_id, sent, rounds=1, tag="during ")
        assert sum(peer.plugin.retries for peer in peers) > 0
        await restarting
        await chat(peers, group_id, sent, rounds=1, tag="after ")
        await received_all(peers, group_id, sent)
        # the group still works for commits, and a Welcome after the restart still
        # names the room (the component kept the group's rooms in the store)
        dave = await new_peer(prosody_server, "rd")
        peers.append(dave)
        await dave.member.publish_key_packages(1)
        await peers[1].member.add_members(group_id, [dave.identity])
        await until(lambda: in_group(dave, group_id) and bool(dave.plugin.rooms),
                    "dave to join and enter the room")
        await converge(peers, group_id)
        await chat(peers, group_id, sent, rounds=1, tag="with dave ")
        await received_all(peers, group_id, sent)
    finally:
        for peer in peers:
            await peer.close()
        process.stop()


async def test_welcome_held_for_an_offline_user_survives_a_kill(
        no_offline_prosody: NoOfflineProsody, tmp_path: Path) -> None:
    """On a server without offline storage, a Welcome to Carol, offline when she is
    added, bounces and the component holds it (saved in the store); the hub process
    is killed and restarted before she comes back, and she still gets it and joins."""
    prosody_server = no_offline_prosody
    process = HubProcess(prosody_server, tmp_path)
    await process.start()
    peers: list[Peer] = []
    try:
        alice, carol = peers[:] = [await new_peer(prosody_server, n) for n in ("wa", "wc")]
        await carol.member.publish_key_packages(1)
        await carol.client.disconnect(wait=1.0)
        group_id = await alice.member.create_group(
            transport="xmpp", room_id=room_jid(prosody_server.component_name))
        await alice.member.add_members(group_id, [carol.identity])
        await until(lambda: _held_welcomes(tmp_path / "hub.db") > 0, "the held Welcome")
        process.kill()
        await process.start()
        await reconnect(carol, prosody_server)
        await until(lambda: in_group(carol, group_id), "carol's held Welcome")
        await converge(peers, group_id)
        assert _held_welcomes(tmp_path / "hub.db") == 0
    finally:
        for peer in peers:
            await peer.close()
        process.stop()


def _held_welcomes(db: Path) -> int:
    """Held Welcomes saved in the hub's store (read beside the running process: WAL)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM cursors WHERE name = ?",
                           ("xmpp:xmpp-held-welcomes",)).fetchone()
    return 0 if row is None else sum(len(held) for held in json.loads(row[0]).values())


async def test_component_reconnects_after_losing_the_server(
        prosody_server: ProsodyServer, hub_in_process: InProcessHub) -> None:
    peers, group_id, _ = await _trio(prosody_server)
    try:
        sent: dict[str, list[tuple[str, str]]] = {}
        await chat(peers, group_id, sent, rounds=1, tag="before ")
        await received_all(peers, group_id, sent)
        component = hub_in_process.component
        # a message is stored but its fan-out is lost, then the connection drops:
        # after reconnecting the component sends <sync/> and members fetch the log
        original = component.deliver
        lost: list[int] = []

        async def lossy(message: Outbound) -> None:
            if message.kind == Kind.APPLICATION and not lost:
                lost.append(message.seq)
                return
            await original(message)

        component.deliver = lossy  # type: ignore[method-assign]
        alice = peers[0]
        await alice.member.send_text(group_id, "lost fan-out")
        for other in peers[1:]:
            sent[other.identity].append((alice.identity, "lost fan-out"))
        component.deliver = original  # type: ignore[method-assign]
        assert lost
        component.xmpp.abort()
        await until(lambda: not component.connected, "the component to notice")
        await until(lambda: component.connected, "the component to reconnect")
        await received_all(peers, group_id, sent)

        component.xmpp.abort()  # the TCP connection drops again
        await until(lambda: not component.connected, "the component to notice")
        await chat(peers, group_id, sent, rounds=1, tag="during ")
        await until(lambda: component.connected, "the component to reconnect")
        await chat(peers, group_id, sent, rounds=1, tag="after ")
        await received_all(peers, group_id, sent)
    finally:
        for peer in peers:
            await peer.close()


async def test_server_restart_everyone_reconnects(upload_prosody: UploadProsody,
                                                  tmp_path: Path) -> None:
    """Prosody itself restarts: the component reconnects with backoff, members log in
    again, re-enter their rooms and catch up; the conversation goes on intact."""
    hub = await start_hub(upload_prosody, tmp_path / "hub.db")
    peers: list[Peer] = []
    try:
        peers, group_id, _ = await _trio(upload_prosody)
        sent: dict[str, list[tuple[str, str]]] = {}
        await chat(peers, group_id, sent, rounds=1, tag="before ")
        await received_all(peers, group_id, sent)

        await asyncio.get_running_loop().run_in_executor(None, upload_prosody.restart)
        await until(lambda: hub.component.connected, "the component to reconnect")
        for peer in peers:
            await reconnect(peer, upload_prosody)
        await chat(peers, group_id, sent, rounds=1, tag="after ")
        await received_all(peers, group_id, sent)
        await peers[2].member.update(group_id)
        await converge(peers, group_id)
    finally:
        for peer in peers:
            await peer.close()
        await hub.close()


async def reconnect(peer: Peer, server: ProsodyServer) -> None:
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_start(_event: object) -> None:
        if not started.done():
            started.set_result(None)

    peer.client.add_event_handler("session_start", on_start)
    peer.client.connect(host=server.host, port=server.c2s_port)
    await asyncio.wait_for(started, 20)
    peer.client.del_event_handler("session_start", on_start)
