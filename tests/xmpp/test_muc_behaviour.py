"""The component's rooms behave like group chats for a stock XMPP client (XEP-0045),
over the real Prosody: slixmpp's own ``xep_0045`` plugin joins with ``join_muc_wait``,
which returns only once it has the occupants' presence, its own presence and the
subject (§7.2.3, §7.2.15). Each disco#info room property the component advertises
(§15.2.2) is checked against what the room does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import PresenceError

from benchmarks.bridge_run import connect_xmpp
from bridge.devservers.prosody import ProsodyServer
from tests.xmpp.conftest import InProcessHub, start_hub
from transports.xmpp import namespace as ns
from transports.xmpp.mam import NS_MAM
from transports.xmpp.roominfo import ROOM_FEATURES

TIMEOUT = 20.0


class StockClient:
    """A slixmpp client with nothing but XEP-0030 and XEP-0045 (no MLS plugin)."""

    def __init__(self, client: ClientXMPP, jid: str) -> None:
        self.client = client
        self.jid = jid
        self.presences: list[Any] = []  # every MUC presence received
        client.add_event_handler("groupchat_presence", self.presences.append)

    @property
    def muc(self) -> Any:
        return self.client.plugin["xep_0045"]

    async def join(self, room: str, nick: str) -> tuple[Any, Any, list[Any], list[Any]]:
        """``join_muc_wait``: (own presence, subject message, the other occupants'
        presences in the order received, history)."""
        own, subject, occupants, history = await self.muc.join_muc_wait(
            room, nick, timeout=TIMEOUT)
        assert occupants[-1] is own  # everyone else's presence came first (§7.2.3)
        return own, subject, occupants[:-1], history

    def gone(self, room: str, nick: str) -> list[Any]:
        return [p for p in self.presences if p["type"] == "unavailable"
                and p["from"].bare == room and p["from"].resource == nick]

    async def close(self) -> None:
        await self.client.disconnect(wait=1.0)


async def stock_client(server: ProsodyServer, prefix: str) -> StockClient:
    jid, password = server.new_user(prefix)
    client = ClientXMPP(f"{jid}/stock", password)
    for plugin in ("xep_0030", "xep_0045"):
        client.register_plugin(plugin)
    server.configure_client(client)
    await connect_xmpp(client, server)
    return StockClient(client, jid)


def codes(presence: Any) -> set[int]:
    return set(presence["muc"]["status_codes"])


async def until(check: Callable[[], Any], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def stock(prosody_server: ProsodyServer) -> AsyncIterator[Callable[..., Any]]:
    made: list[StockClient] = []

    async def factory(prefix: str) -> StockClient:
        made.append(await stock_client(prosody_server, prefix))
        return made[-1]

    try:
        yield factory
    finally:
        for client in made:
            await client.close()


async def test_a_stock_client_joins_and_sees_who_is_there(
        prosody_server: ProsodyServer, tmp_path: Path, stock: Callable[..., Any]) -> None:
    hub = await start_hub(prosody_server, tmp_path / "hub.db")
    try:
        await _join_sequence(hub, prosody_server, stock, tmp_path / "hub.db")
    finally:
        await hub.close()


async def _join_sequence(hub: InProcessHub, prosody: ProsodyServer,
                         stock: Callable[..., Any], db: Path) -> None:
    room = f"muc{id(hub) % 10_000}@{prosody.component_name}"
    alice, bob, carol = await stock("alice"), await stock("bob"), await stock("carol")
    # the first occupant creates the room (XEP-0045 §10.1): owner, status 201
    own, subject, occupants, history = await alice.join(room, "Alice")
    assert codes(own) >= {110, 100, 201} and 170 not in codes(own)  # not archived
    assert own["muc"]["affiliation"] == "owner" and own["muc"]["role"] == "moderator"
    assert not subject["subject"] and occupants == [] and history == []
    # the second gets Alice's presence first -- real JID, affiliation, role -- then its own
    own, subject, occupants, _ = await bob.join(room, "Bob")
    assert codes(own) >= {110, 100} and 201 not in codes(own)
    assert own["muc"]["affiliation"] == "none" and own["muc"]["role"] == "participant"
    assert [(p["from"].resource, p["muc"]["jid"].bare, p["muc"]["affiliation"],
             p["muc"]["role"]) for p in occupants] == [("Alice", alice.jid, "owner",
                                                        "moderator")]
    assert set(bob.muc.get_roster(room)) == {"Alice", "Bob"}
    # ... and Alice sees Bob come in, with his real JID (a non-anonymous room)
    await until(lambda: "Bob" in alice.muc.get_roster(room), "Alice seeing Bob")
    assert alice.muc.get_jid_property(room, "Bob", "jid").bare == bob.jid
    # a nickname in use is refused (§7.2.9), whatever its case
    with pytest.raises(PresenceError) as refused:
        await carol.join(room, "bob")
    assert refused.value.condition == "conflict"
    # Carol, affiliated nowhere, enters under a free nick: the room is open
    own, _, occupants, _ = await carol.join(room, "Carol")
    assert {p["from"].resource for p in occupants} == {"Alice", "Bob"}
    # a departure is everyone's news (§7.14)
    bob.muc.leave_muc(room, "Bob")
    await until(lambda: alice.gone(room, "Bob") and carol.gone(room, "Bob"), "Bob gone")
    assert set(alice.muc.get_roster(room)) == {"Alice", "Carol"}
    # a nick change (§7.6): 303 with the new nick, then the new presence
    carol.client.send_presence(pto=f"{room}/Caroline")
    await until(lambda: "Caroline" in alice.muc.get_roster(room), "the new nick")
    assert 303 in codes(alice.gone(room, "Carol")[0])
    assert alice.gone(room, "Carol")[0]["muc"]["item_nick"] == "Caroline"
    await _disco_is_true(hub, prosody, [alice, carol], room, db)


async def _disco_is_true(hub: InProcessHub, prosody: ProsodyServer,
                         inside: list[StockClient], room: str, db: Path) -> None:
    """Each advertised room property against the room's behaviour: open (a stranger
    entered above), non-anonymous (real JIDs above), unsecured (nobody gave a password),
    persistent (the room, its owner and its disco#info outlive its occupants and a
    restart of the component); members-only and MAM are not claimed (no archive
    outside relay mode: XEP-0313 lives in relayed rooms only)."""
    asker = inside[0]
    info = await asker.client.plugin["xep_0030"].get_info(jid=room)
    features = set(info["disco_info"]["features"])
    assert set(ROOM_FEATURES) <= features
    assert {ns.FEATURE, ns.NS_MUC} <= features
    assert not features & {"muc_membersonly", "muc_semianonymous", "muc_passwordprotected",
                           "muc_temporary", NS_MAM, ns.FEATURE_RELAY}
    # persistent: everyone leaves, the component restarts on the same store
    for client in inside:
        client.muc.leave_muc(room, JID(client.muc.get_our_jid_in_room(room)).resource)
    await until(lambda: not hub.component.occupants.get(room), "the room empty")
    await hub.component.stop()
    restarted = await start_hub(prosody, db)
    try:
        info = await asker.client.plugin["xep_0030"].get_info(jid=room)
        assert set(ROOM_FEATURES) <= set(info["disco_info"]["features"])
        assert restarted.component.rooms.of(room, "xmpp:" + asker.jid) == "owner"
    finally:
        await restarted.close()
