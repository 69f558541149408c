"""One MLS group across an XMPP room and a Matrix room, through ONE hub (real Prosody
and Synapse): two XMPP and two Matrix members chat both ways, add and remove each other
across networks and commit concurrently from both sides. Every member receives every
message exactly once, in order, under the sender's credential URI; the bridge's store
and its logs never hold a plaintext (it never decrypts)."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.errors import HubRefused
from tests.bridging.conftest import Person, converge, in_group, roster, texts, until
from tests.matrix.conftest import room_with_hub
from transports.interface import Inbound, Op


class Chat:
    """Everything sent, in the hub's order (each send returns after the hub accepted
    it), and what each member must therefore have received."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []  # (sender identity, text)
        self.readers: dict[str, list[tuple[str, str]]] = {}

    async def say(self, sender: Person, group_id: bytes, readers: Sequence[Person],
                  tag: str) -> None:
        text = f"{tag} from {sender.identity} secret-{secrets.token_hex(8)}"
        await sender.member.send_text(group_id, text)
        self.log.append((sender.identity, text))
        for reader in readers:
            if reader is not sender:
                self.readers.setdefault(reader.identity, []).append((sender.identity, text))

    async def round(self, people: Sequence[Person], group_id: bytes, tag: str) -> None:
        for person in people:
            await self.say(person, group_id, people, tag)

    async def check(self, people: Sequence[Person], group_id: bytes) -> None:
        """Exactly the expected messages, once each, in the hub's order."""
        for person in people:
            expected = self.readers.get(person.identity, [])
            count = len(expected)
            await until(lambda p=person, n=count: len(texts(p, group_id)) >= n,
                        f"{person.identity} to receive {count} messages")
            await person.member.idle()
            assert texts(person, group_id) == expected, person.identity


async def test_one_group_across_xmpp_and_matrix(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service_log = io.StringIO()
    handler = logging.StreamHandler(service_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        plaintexts = await _scenario(bridge_service, people, prosody_server, tmp_path,
                                     service_log)
    finally:
        logging.getLogger().removeHandler(handler)
    captured = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "attached matrix room" in captured  # the service logged into caplog
    for secret in plaintexts:
        assert secret not in captured


async def _scenario(service: BridgeService, people: Any, prosody: ProsodyServer,
                    tmp_path: Path, service_log: io.StringIO) -> list[str]:
    assert service.bot is not None
    hub_user = service.bot.user_id
    xa, xb = await people("xmpp", "xa"), await people("xmpp", "xb")
    ma, mb = await people("matrix", "ma"), await people("matrix", "mb")
    for person in (xb, ma, mb):
        await person.member.publish_key_packages(2)

    # the rooms: a Matrix room with the bot in it (ma created it: its admin), an XMPP
    # room at the component whose owner the configuration names (xa), paired by
    # configuration
    matrix_room = await room_with_hub(ma, hub_user)
    xmpp_room = f"bridged{secrets.token_hex(3)}@{prosody.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, matrix_room,
                                         admins=frozenset({xa.identity}))])

    # a member may not bind a group to a room on the other network by itself
    refused = await xa.plugin.request(Inbound(op=Op.CREATE_GROUP.value, sender="",
                                              transport="matrix", room_id="!other:localhost"))
    assert not refused.ok and refused.code == "forbidden"

    # created on XMPP: the bridge attaches the paired Matrix room and announces the group
    group_id = await xa.member.create_group(transport="xmpp", room_id=xmpp_room)
    rooms = {(r.transport, r.room_id) for r in await service.store.group_rooms(group_id)}
    assert rooms == {("xmpp", xmpp_room), ("matrix", matrix_room)}
    state = await ma.link.group_state(matrix_room)
    assert state.group_id == group_id and state.hub_user == hub_user

    # an XMPP member adds a Matrix member (claiming matrix:u/...'s KeyPackage); then a
    # Matrix member adds an XMPP member and a Matrix member (claiming xmpp:...'s)
    await xa.member.add_members(group_id, [ma.identity])
    await until(lambda: in_group(ma, group_id), "ma's Welcome over Matrix")
    await ma.member.add_members(group_id, [xb.identity, mb.identity])
    await until(lambda: in_group(xb, group_id) and in_group(mb, group_id),
                "xb's Welcome over XMPP and mb's over Matrix")
    await until(lambda: xmpp_room in xb.plugin.rooms, "xb entering the XMPP room")
    await until(lambda: matrix_room in mb.client.rooms, "mb entering the Matrix room")
    everyone = [xa, xb, ma, mb]
    await converge(everyone, group_id)
    identities = {p.identity for p in everyone}
    assert {i.split(":", 1)[0] for i in identities} == {"xmpp", "matrix"}
    assert all(roster(p, group_id) == identities for p in everyone)

    chat = Chat()
    await chat.round(everyone, group_id, "hello")
    await chat.round([mb, xb, ma, xa], group_id, "again")
    await chat.check(everyone, group_id)

    # one commit from each network in the same epoch: one wins, the other retries
    epoch = xa.member.group(group_id).epoch
    await asyncio.gather(xb.member.update(group_id), ma.member.update(group_id))
    assert await converge(everyone, group_id) == epoch + 2
    await chat.round(everyone, group_id, "after the race")
    await chat.check(everyone, group_id)

    # a removal across networks: a Matrix moderator removes an XMPP member (mb, who
    # holds no moderator power in either room, may not)
    with pytest.raises(HubRefused) as refusal:
        await mb.member.remove_members(group_id, [xb.identity])
    assert refusal.value.code == "not-moderator"
    await ma.member.remove_members(group_id, [xb.identity])
    await until(lambda: not xb.member.group(group_id).active, "xb seeing its removal")
    remaining = [xa, ma, mb]
    await converge(remaining, group_id)
    assert all(roster(p, group_id) == identities - {xb.identity} for p in remaining)
    await chat.round(remaining, group_id, "without xb")
    await chat.check(remaining, group_id)
    await asyncio.sleep(0.3)
    assert not any(text.startswith("without xb") for _, text in texts(xb, group_id))
    assert texts(xb, group_id) == chat.readers[xb.identity]

    # the bridge only ever held ciphertext: no plaintext in its store or its logs
    await service.store.set_cursor("flush", "1")  # one more write: WAL content on disk
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("bridge.db*"))
    assert stored, "the store file is where the fixture put it"
    logged = service_log.getvalue()
    assert "xmpp:" in logged  # the handler did capture the service's log output
    plaintexts = [text.rsplit(" ", 1)[1] for _, text in chat.log]
    for secret in plaintexts:
        assert secret.encode() not in stored
        assert secret not in logged
    assert service.relay.reemits.relayed == 0 and not service.relay.puppets

    # a stopped bridge refuses new work (and stopping twice is harmless)
    await service.stop()
    refused = await service.handle(Inbound(op=Op.HUB_INFO.value, sender=xa.identity))
    assert not refused.ok and refused.code == "unavailable"
    return plaintexts
