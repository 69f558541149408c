"""A stock XMPP client in a relayed room, over real Prosody and Synapse (issue 20):
slixmpp's plain ``xep_0045`` joins with ``join_muc_wait`` -- which waits for the
occupants' presence and the subject -- sees who is there (the XMPP MLS member with its
real JID, the relayed Matrix user as a guest), chats, and fetches the room's history
with XEP-0313 in log order, paged with XEP-0059; the archive holds what the relay
re-emitted and nothing is served to strangers or for rooms that are not relayed."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import nio
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from bridge.app.config import load_config
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import display, relay_identity
from bridge.relay import NOTICE
from bridge.relay.relay import MLS_MARK
from tests.bridging.conftest import in_group, plain_matrix, roster, texts, until
from tests.cli.conftest import minimal_config, write
from tests.matrix.conftest import room_with_hub
from tests.xmpp.test_muc_behaviour import StockClient, codes, stock_client
from transports.xmpp import namespace as xmpp_ns
from transports.xmpp.mam import NS_MAM, NS_RSM

NS_FORWARD = "urn:xmpp:forward:0"


async def mam(client: ClientXMPP, room: str, *, rsm: dict[str, str] | None = None,
              with_: str = "") -> tuple[list[tuple[str, str, str]], bool, str, str]:
    """One MAM query to ``room``: ([(id, nick, body)], complete, first, last)."""
    query_id = secrets.token_hex(4)
    found: list[tuple[str, str, str]] = []

    def on_result(message: Any) -> None:
        result = message.xml.find(f"{{{NS_MAM}}}result")
        if result is None or result.get("queryid") != query_id:
            return
        inner = result.find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")
        assert inner is not None and result.find(
            f"{{{NS_FORWARD}}}forwarded/{{urn:xmpp:delay}}delay") is not None
        found.append((result.get("id", ""), inner.get("from", "").split("/", 1)[1],
                      inner.findtext("{jabber:client}body") or ""))

    name = f"mam-{query_id}"
    client.register_handler(Callback(name, MatchXPath(
        f"{{{client.default_ns}}}message/{{{NS_MAM}}}result"), on_result))
    try:
        iq = client.make_iq_set(ito=room)
        query = ET.SubElement(iq.xml, f"{{{NS_MAM}}}query", {"queryid": query_id})
        if with_:
            form = ET.SubElement(query, "{jabber:x:data}x", {"type": "submit"})
            for var, value in (("FORM_TYPE", NS_MAM), ("with", with_)):
                field = ET.SubElement(form, "{jabber:x:data}field", {"var": var})
                ET.SubElement(field, "{jabber:x:data}value").text = value
        if rsm is not None:
            page = ET.SubElement(query, f"{{{NS_RSM}}}set")
            for key, value in rsm.items():
                ET.SubElement(page, f"{{{NS_RSM}}}{key}").text = value or None
        reply = await iq.send(timeout=30)
    finally:
        client.remove_handler(name)
    fin = reply.xml.find(f"{{{NS_MAM}}}fin")
    assert fin is not None
    first = fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}first") or ""
    last = fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last") or ""
    return found, fin.get("complete") == "true", first, last


async def refused(client: ClientXMPP, room: str) -> str:
    try:
        await mam(client, room)
    except IqError as exc:
        return str(exc.condition)
    return ""


async def test_a_stock_client_joins_a_relayed_room_chats_and_reads_its_history(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer, tmp_path: Path) -> None:
    service = bridge_service
    assert service.bot is not None
    owner, xmember = await people("matrix", "mamowner"), await people("xmpp", "mamx")
    await xmember.member.publish_key_packages(1)
    plain_m = await plain_matrix(synapse_server, "mamplain")
    stock, stranger = (await stock_client(prosody_server, "stock"),
                       await stock_client(prosody_server, "stranger"))
    try:
        matrix_room = await room_with_hub(owner, service.bot.user_id)
        room = f"mam{secrets.token_hex(3)}@{prosody_server.component_name}"
        await service.attach_rooms([RoomPair(room, matrix_room, relay=True)])
        assert isinstance(await owner.client.room_invite(matrix_room, plain_m.user_id),
                          nio.RoomInviteResponse)
        assert isinstance(await plain_m.client.join(matrix_room), nio.JoinResponse)
        group_id = await owner.member.create_group(transport="matrix", room_id=matrix_room)
        await owner.member.add_members(group_id, [xmember.identity])
        await until(lambda: in_group(xmember, group_id) and room in xmember.plugin.rooms,
                    "the XMPP member in the group and the room")
        guest = display(relay_identity(plain_m.identity))  # "@mamplain...:localhost (relayed)"
        await until(lambda: guest in service.component.presence.guests.get(room, {}),  # type: ignore[union-attr]
                    "the relayed Matrix user shown in the XMPP room")
        # the archive holds what the relay could read: its puppet must be in the group
        # (the owner's epoch) before the history is written
        await until(lambda: relay_identity(plain_m.identity) in roster(owner, group_id),
                    "the relay's puppet of the plain Matrix user in the owner's group")
        # history before the stock client comes: five from the owner, one relayed
        sent = [f"owner {i} {secrets.token_hex(3)}" for i in range(5)]
        for text in sent:
            await owner.member.send_text(group_id, text)
        relayed = f"plain matrix {secrets.token_hex(3)}"
        assert isinstance(await plain_m.client.room_send(
            matrix_room, "m.room.message", {"msgtype": "m.text", "body": relayed}),
            nio.RoomSendResponse)
        await until(lambda: (relay_identity(plain_m.identity), relayed)
                    in texts(owner, group_id), "the relayed message in the group")
        await _joins_and_sees(stock, room, xmember, guest)
        await _history(tmp_path / "bridge.db", stock, stranger, room, [*sent, relayed],
                       display(owner.identity) + MLS_MARK, guest)
        await _chats(stock, owner, group_id, room)
        # the Matrix user leaves its room: it leaves the XMPP room's occupants too
        assert isinstance(await plain_m.client.room_leave(matrix_room), nio.RoomLeaveResponse)
        await until(lambda: guest not in stock.muc.get_roster(room), "the guest gone")
    finally:
        await plain_m.close()
        await stock.close()
        await stranger.close()


async def _joins_and_sees(stock: StockClient, room: str, xmember: Any, guest: str) -> None:
    """join_muc_wait returns (it got the occupants, its own presence, the subject): the
    XMPP member with its real JID, the relayed Matrix user as a guest; status 170 (the
    room is archived); the subject is the relay notice, last."""
    own, subject, occupants, _ = await stock.join(room, "Stocky")
    assert {110, 100, 170} <= codes(own)
    assert subject["subject"] == NOTICE
    seen = {p["from"].resource: p["muc"]["jid"].bare for p in occupants}
    assert xmember.client.boundjid.bare in seen.values()
    assert seen.get(guest) == ""  # a guest has no XMPP JID
    info = await stock.client.plugin["xep_0030"].get_info(jid=room)
    assert {NS_MAM, xmpp_ns.FEATURE_RELAY} <= set(info["disco_info"]["features"])


async def _history(store: Path, stock: StockClient, stranger: StockClient,
                   room: str, sent: list[str], owner_nick: str, guest: str) -> None:
    everything, complete, first, last = await mam(stock.client, room)
    assert [body for _, _, body in everything] == sent and complete
    assert [nick for _, nick, _ in everything] == [owner_nick] * 5 + [guest]
    ids = [i for i, _, _ in everything]
    assert (first, last) == (ids[0], ids[-1])
    seqs = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # hub log order
    # RSM: pages of two forwards, then the last page backwards
    pages, after = [], ""
    while True:
        page, complete, _, last = await mam(stock.client, room,
                                            rsm={"max": "2", **({"after": after} if after
                                                                else {})})
        pages.append([i for i, _, _ in page])
        after = last
        if complete:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:6]]
    tail, complete, _, _ = await mam(stock.client, room, rsm={"max": "2", "before": ""})
    assert [i for i, _, _ in tail] == ids[-2:] and not complete
    before, _, _, _ = await mam(stock.client, room, rsm={"max": "10", "before": ids[2]})
    assert [i for i, _, _ in before] == ids[:2]
    mine, _, _, _ = await mam(stock.client, room, with_=f"{room}/{guest}")
    assert [body for _, _, body in mine] == sent[-1:]
    # a stranger (neither occupant nor member) reads nothing; an unrelayed room has none
    assert await refused(stranger.client, room) == "forbidden"
    plain_room = f"plain{secrets.token_hex(2)}@{room.split('@', 1)[1]}"
    assert await refused(stock.client, plain_room) == "feature-not-implemented"
    # the archive is in the relay's secrets file, never in the hub's store
    data = b"".join(path.read_bytes() for path in store.parent.glob(store.name + "*"))
    assert not any(text.encode() in data for text in sent)


async def _chats(stock: StockClient, owner: Any, group_id: bytes, room: str) -> None:
    """The stock client is puppeted: what it says reaches the MLS members, and what
    they say reaches it live."""
    said = f"stock says {secrets.token_hex(3)}"
    stock.client.send_message(mto=room, mbody=said, mtype="groupchat")
    await until(lambda: (relay_identity("xmpp:" + stock.jid), said) in texts(owner, group_id),
                "the MLS member reading the stock client")
    heard: list[str] = []
    stock.client.add_event_handler("groupchat_message", lambda m: heard.append(m["body"]))
    reply = f"owner replies {secrets.token_hex(3)}"
    await owner.member.send_text(group_id, reply)
    await until(lambda: reply in heard, "the stock client reading the reply live")
    await asyncio.sleep(0)


def test_the_archive_size_is_configured(tmp_path: Path) -> None:
    text = minimal_config(tmp_path, **{"bridge.relay": "archive = 25"})
    config = load_config(write(tmp_path / "c.toml", text), env={})
    assert config.relay_archive == 25
    assert any("the newest 25 re-emitted messages" in line for line in config.describe())
