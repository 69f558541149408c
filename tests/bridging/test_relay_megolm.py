"""Megolm in a relayed room over real Synapse and Prosody: a stock matrix-nio client
with its own end-to-end encryption (an Element-like user: it creates the room with
``m.room.encryption`` and writes Megolm) talks through the bridge's bot -- which has
an olm store of its own -- with an MLS XMPP member and a plain XMPP user, both ways;
an event the bot cannot decrypt gets a notice in the room instead of a silent drop;
the olm store is a 0600 file apart from the hub's store, and nothing decrypted reaches
the hub's store or the logs."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.store import SqliteStore

from benchmarks.bridge_run import PlainXmpp, plain_xmpp
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import display, relay_identity
from tests.bridging.conftest import (
    TIMEOUT,
    PlainMatrix,
    bot_account,
    owner_and_xmember,
    relayed_group,
    running_bridge,
    texts,
    until,
)
from transports.matrix.e2e import DEVICE_NAME, MEGOLM

ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": MEGOLM}}


class StockE2E(PlainMatrix):
    """A stock matrix-nio client with end-to-end encryption: it syncs, keeps its keys
    up to date the way nio's own ``sync_forever`` does, and records every timeline
    event as nio hands it over (decrypted where it could)."""

    def __init__(self, client: nio.AsyncClient) -> None:
        super().__init__(client)
        self.handed: list[tuple[str, nio.Event]] = []

    async def _sync(self) -> None:
        while True:
            response = await self.client.sync(timeout=1000, full_state=not self.synced.is_set())
            if not isinstance(response, nio.SyncResponse):
                await asyncio.sleep(0.2)
                continue
            for room_id, room in response.rooms.join.items():
                self.handed += [(room_id, event) for event in room.timeline.events]
            if self.client.should_upload_keys:
                await self.client.keys_upload()
            if self.client.should_query_keys:
                await self.client.keys_query()
            if self.client.should_claim_keys:
                await self.client.keys_claim(self.client.get_users_for_key_claiming())
            await self.client.send_to_device_messages()
            self.synced.set()

    def decrypted(self, room_id: str) -> list[nio.RoomMessage]:
        return [e for r, e in self.handed if r == room_id and getattr(e, "decrypted", False)
                and isinstance(e, nio.RoomMessage)]


async def stock_e2e(server: SynapseServer, prefix: str, store: Path) -> StockE2E:
    user_id, password = server.new_user(prefix)
    store.mkdir()
    config = nio.AsyncClientConfig(encryption_enabled=True, store=SqliteStore)
    client = nio.AsyncClient(server.url, user_id, store_path=str(store), config=config)
    response = await client.login(password, device_name="stock element-like")
    assert isinstance(response, nio.LoginResponse), response
    assert client.olm is not None
    stock = StockE2E(client)
    stock.start()
    await asyncio.wait_for(stock.synced.wait(), TIMEOUT)
    return stock


@pytest.fixture
async def bridge_service(prosody_server: ProsodyServer, synapse_server: SynapseServer,
                         tmp_path: Path) -> AsyncIterator[BridgeService]:
    """The combined service as in the package's conftest, its bot with an olm store
    (``tmp_path / "bridge.db.olm"``): Megolm on."""
    matrix = bot_account(synapse_server, olm_store=str(tmp_path / "bridge.db.olm"))
    async with running_bridge(prosody_server, tmp_path, matrix) as service:
        yield service


async def _encrypted_room(stock: StockE2E, owner: Any, hub_user: str) -> str:
    """The stock user creates an encrypted room (m.room.encryption from the start),
    with the MLS owner and the hub bot as moderators; both join."""
    powers = {"users": {owner.client.user_id: 50, hub_user: 50}}  # the creator: 100
    created = await stock.client.room_create(name="encrypted relay", invite=[hub_user,
                                             owner.client.user_id],
                                             initial_state=[ENCRYPTION],
                                             power_level_override=powers)
    assert isinstance(created, nio.RoomCreateResponse), created
    joined = await owner.client.join(created.room_id)
    assert isinstance(joined, nio.JoinResponse), joined

    async def all_in() -> bool:
        members = await stock.client.joined_members(created.room_id)
        return isinstance(members, nio.JoinedMembersResponse) and \
            {hub_user, owner.client.user_id} <= {m.user_id for m in members.members}
    await until(all_in, "the bot and the owner in the encrypted room")
    return str(created.room_id)


async def megolm_relayed_rooms(service: BridgeService, people: Any, prosody: ProsodyServer,
                               stock: StockE2E, plain_x: PlainXmpp
                               ) -> tuple[Any, Any, str, str, bytes]:
    """A relayed pair whose Matrix room is encrypted (``stock`` created it): an MLS
    Matrix owner, an MLS XMPP member, ``plain_x`` in the XMPP room, both puppets in
    the group, everyone converged, the bot reading Megolm there. (owner, XMPP member,
    Matrix room, XMPP room, group id.)"""
    bot = service.bot
    assert bot is not None
    owner, xmember = await owner_and_xmember(people)
    room = await _encrypted_room(stock, owner, bot.user_id)
    xmpp_room = f"megolm{secrets.token_hex(3)}@{prosody.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, room, relay=True)])
    group_id = await relayed_group(owner, xmember, room, xmpp_room, plain_x, stock)
    await until(lambda: bot.megolm is not None and bot.megolm.encrypted(room),
                "the bot seeing m.room.encryption")
    return owner, xmember, room, xmpp_room, group_id


async def test_megolm_room_relayed_both_ways(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service = bridge_service
    assert service.bot is not None and service.bot.megolm is not None
    bot = service.bot
    stock = await stock_e2e(synapse_server, "element", tmp_path / "stock")
    plain_x = await plain_xmpp(prosody_server, "legx")
    try:
        owner, xmember, room, xmpp_room, group_id = await megolm_relayed_rooms(
            service, people, prosody_server, stock, plain_x)

        # the bot's device: published under its fixed name, its keys on the server
        # (the stock client queried the room members' devices, as Element does)
        await until(lambda: bot.device_id in stock.client.device_store[bot.user_id],
                    "the stock client knowing the bot's device")
        assert stock.client.device_store[bot.user_id][bot.device_id].ed25519 == \
            bot.megolm.fingerprint
        listed = await bot.client.devices()
        assert isinstance(listed, nio.DevicesResponse), listed
        assert {d.id: d.display_name for d in listed.devices}[bot.device_id] == DEVICE_NAME

        # Matrix (Megolm) -> MLS member and legacy XMPP user
        from_stock = f"stock element says {secrets.token_hex(4)}"
        sent = await stock.client.room_send(room, "m.room.message",
                                            {"msgtype": "m.text", "body": from_stock},
                                            ignore_unverified_devices=True)
        assert isinstance(sent, nio.RoomSendResponse), sent
        raw = await owner.client.room_get_event(room, sent.event_id)
        assert isinstance(raw, nio.RoomGetEventResponse), raw
        assert raw.event.source["type"] == "m.room.encrypted"  # it went out as Megolm
        assert from_stock not in str(raw.event.source)
        await until(lambda: (relay_identity(stock.identity), from_stock)
                    in texts(xmember, group_id), "the MLS XMPP member reading the stock user")
        shown_as = f"{xmpp_room}/{display(relay_identity(stock.identity))}"
        await until(lambda: (shown_as, from_stock) in plain_x.messages,
                    "the plain XMPP user reading the stock user")

        # legacy XMPP and MLS XMPP -> the stock Matrix user, Megolm-encrypted by the bot
        from_plain_x = f"plain xmpp says {secrets.token_hex(4)}"
        plain_x.say(xmpp_room, from_plain_x)
        from_xmember = f"xmls says {secrets.token_hex(4)}"
        await xmember.member.send_text(group_id, from_xmember)
        expected = {f"<{display(relay_identity(plain_x.identity))}> {from_plain_x}",
                    f"<{display(xmember.identity)}> {from_xmember}"}
        await until(lambda: expected <= {getattr(e, "body", "") for e in stock.decrypted(room)
                                         if e.sender == bot.user_id},
                    "the stock user decrypting both from the bot")
        relayed = [e for e in stock.decrypted(room) if getattr(e, "body", "") in expected]
        for event in relayed:  # what the room holds is ciphertext
            raw = await owner.client.room_get_event(room, event.event_id)
            assert isinstance(raw, nio.RoomGetEventResponse), raw
            assert raw.event.source["type"] == "m.room.encrypted"
            assert raw.event.source["content"]["algorithm"] == MEGOLM
        await _undecryptable(bot, stock, room)
        _nothing_kept(tmp_path, caplog, [from_stock, from_plain_x, from_xmember])
        # every message reached each MLS member exactly once
        got = [t for _, t in texts(xmember, group_id)]
        assert got.count(from_stock) == 1 and got.count(from_plain_x) == 1
    finally:
        await plain_x.close()
        await stock.close()


async def _undecryptable(bot: Any, stock: StockE2E, room: str) -> None:
    """Megolm events whose session the bot never got: one notice for the sender and
    session (not one per event), the events counted, nothing relayed."""
    before = bot.megolm.undecryptable
    content = {"algorithm": MEGOLM, "ciphertext": "AwgAEhAfakefakefakefake",
               "sender_key": "dGhpcyBpcyBub3QgYSBrZXkgYXQgYWxsIGF0IGFsbA",
               "session_id": f"nosuchsession{secrets.token_hex(4)}", "device_id": "NOPE"}
    for _ in range(2):  # written raw: a session nobody shared with the bot
        method, path, data = nio.Api.room_send(stock.client.access_token, room,
                                               "m.room.encrypted", content,
                                               secrets.token_hex(8))
        sent = await stock.client._send(nio.RoomSendResponse, method, path, data, (room,))
        assert isinstance(sent, nio.RoomSendResponse), sent

    def notices() -> list[str]:
        return [e.body for e in stock.decrypted(room)
                if isinstance(e, nio.RoomMessageNotice) and e.sender == bot.user_id
                and stock.user_id in e.body and "cannot read" in e.body]
    await until(lambda: bot.megolm.undecryptable >= before + 2, "both events counted")
    await until(notices, "the notice about the unreadable message")
    await asyncio.sleep(2)  # a second sync round: still one notice
    assert len(notices()) == 1


def _nothing_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                  plaintexts: list[str]) -> None:
    """The olm store is a 0600 file of its own; the hub's store has no olm tables;
    no plaintext in the hub's store, the olm store or the logs; in the puppets' secrets
    file only in its XEP-0313 archive of what was re-emitted into XMPP (SECURITY R11)."""
    olm_store = tmp_path / "bridge.db.olm"
    assert stat.S_IMODE(olm_store.stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / "bridge.db") as hub_db:
        tables = {r[0] for r in hub_db.execute("SELECT name FROM sqlite_master")}
    with sqlite3.connect(olm_store) as olm_db:
        olm_tables = {r[0] for r in olm_db.execute("SELECT name FROM sqlite_master")}
    assert "accounts" in olm_tables and "megolminboundsessions" in olm_tables
    assert not tables & olm_tables
    secrets_path = tmp_path / "relay-secrets"
    with sqlite3.connect(secrets_path) as secrets_db:
        rows = [(table, repr(row)) for (table,) in secrets_db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")
                for row in secrets_db.execute(f'SELECT * FROM "{table}"')]
    assert not [table for table, row in rows if table != "archive"
                and any(t in row for t in plaintexts)]
    files = [p for p in tmp_path.iterdir() if p.is_file()
             and not p.name.startswith(secrets_path.name)]  # its archive: read above
    for path in files:
        data = path.read_bytes()
        assert not any(t.encode() in data for t in plaintexts), path.name
    # every logger at DEBUG (nio's too: the bot's and the stock client's), except
    # slixmpp's wire log, which shows the XMPP stanzas relay mode sends in plain text,
    # and aiosqlite's statement log of the archive's inserts (the bridge's logging keeps
    # both libraries at INFO or above: bridge/app/logs.py)
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not r.name.startswith("slixmpp")
                       and not (r.name == "aiosqlite" and "INTO archive " in r.getMessage()))
    assert not any(t in logged for t in plaintexts)
