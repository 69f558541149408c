"""Issue 16's relay-mode findings, replayed by hostile (or merely unlucky) users over the
real Prosody and Synapse through ONE bridge with a relayed room pair; each is refused
or prevented -- with a specific code where something is refused -- while the honest
traffic carries on (docs/SECURITY.md, "Relay mode", names these tests):

1. a legacy user could take a nickname equal to a relayed MLS member's identity;
2. the bridge made a relay puppet for a Matrix user who runs an MLS client, so his real
   client never got in;
3. XMPP MLS members got no notice that the room is relayed;
4. the puppets' signing keys and epoch secrets sat in the hub's store."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sqlite3
import stat
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import nio
from slixmpp import JID, ClientXMPP

from benchmarks.bridge_run import PlainXmpp, connect_xmpp
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.hub.removals import REPLACED, Removal
from bridge.identities import display, relay_identity
from bridge.member import Member, RetryPolicy
from bridge.member.state import GroupSlot
from bridge.relay import NOTICE
from bridge.relay.notices import HOW_TO_JOIN
from bridge.relay.relay import MLS_MARK
from mls.codec import decode
from mls.messages.framing import MLSMessage, PublicMessage
from tests.attacks.conftest import Scene
from tests.bridging.conftest import (
    Person,
    PlainMatrix,
    converge,
    groupchat,
    in_group,
    roster,
    texts,
    until,
)
from tests.matrix.conftest import login, member_record, room_with_hub
from transports.matrix.client import MatrixMemberLink
from transports.xmpp import namespace as xmpp_ns

HOW_TO_JOIN_START = HOW_TO_JOIN.split("{user}")[1][:40]


async def relayed_scene(service: BridgeService, people: Any, prosody: ProsodyServer
                        ) -> tuple[Scene, dict[str, list[tuple[str, str]]]]:
    """A relayed pair: ``xa`` (its configured admin) creates the group in the XMPP room
    and enters it, ``xb`` and ``ma`` (creator of the Matrix room) are added (``xb``
    enters the XMPP room on its Welcome); with the groupchat (body, subject) each XMPP
    member's client receives, by name."""
    assert service.bot is not None
    xa, xb = await people("xmpp", "xa"), await people("xmpp", "xb")
    seen = {"xa": groupchat(xa.client), "xb": groupchat(xb.client)}
    ma = await people("matrix", "ma")
    for person in (xb, ma):
        await person.member.publish_key_packages(2)
    matrix_room = await room_with_hub(ma, service.bot.user_id)
    xmpp_room = f"relayed{secrets.token_hex(3)}@{prosody.component_name}"
    pair = RoomPair(xmpp_room, matrix_room, relay=True, admins=frozenset({xa.identity}))
    await service.attach_rooms([pair])
    group_id = await xa.member.create_group(transport="xmpp", room_id=xmpp_room)
    await xa.plugin.join_room(xmpp_room, group_id)
    await xa.member.add_members(group_id, [xb.identity, ma.identity])
    await until(lambda: in_group(xb, group_id) and in_group(ma, group_id)
                and xmpp_room in xb.plugin.rooms, "the Welcomes")
    scene = Scene(service, pair, group_id, xa, xb, ma)
    await converge(scene.members, group_id)
    return scene, seen


async def enter(client: ClientXMPP, room: str, nick: str, *, mls_marker: bool = False
                ) -> str:
    """Send a MUC join (or nick change) presence to ``room/nick``; the error condition
    the room answers with ("" when it accepts: the occupant's own presence, status 110,
    which comes after the other occupants' presences, XEP-0045 §7.2.3)."""
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_presence(presence: Any) -> None:
        error = presence["type"] == "error"
        own = presence.xml.find(f"{{{xmpp_ns.NS_MUC_USER}}}x/"
                                f"{{{xmpp_ns.NS_MUC_USER}}}status[@code='110']") is not None
        if presence["from"].bare == room and (error or own) and not answer.done():
            answer.set_result(presence["error"]["condition"] if error else "")

    client.add_event_handler("presence", on_presence)
    presence = client.make_presence(pto=f"{room}/{nick}")
    ET.SubElement(presence.xml, f"{{{xmpp_ns.NS_MUC}}}x")
    if mls_marker:  # self-declared: anyone can add it
        ET.SubElement(presence.xml, f"{{{xmpp_ns.NS}}}{xmpp_ns.CLIENT}")
    presence.send()
    try:
        return await asyncio.wait_for(answer, 30)
    finally:
        client.del_event_handler("presence", on_presence)


async def plain_xmpp_user(prosody: ProsodyServer, prefix: str) -> tuple[PlainXmpp, str]:
    """A plain XMPP client (no MLS), and its password (for a second client later)."""
    jid, password = prosody.new_user(prefix)
    client = ClientXMPP(f"{jid}/plain", password)
    client.register_plugin("xep_0030")
    prosody.configure_client(client)
    await connect_xmpp(client, prosody)
    return PlainXmpp(client, jid), password


async def test_a_legacy_user_cannot_take_a_members_name(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """Finding 1. The relay re-emits the group's messages into the XMPP room under the
    sender's name; a legacy occupant under that name would speak as the member. Every
    name a member is shown under -- exactly, in another case, with a Cyrillic look-alike,
    as its URI, with the marks the bridge's senders carry -- and another occupant's nick
    are refused with <conflict/> (XEP-0045 §7.2.9), at entry and at a nick change, the
    self-declared MLS client marker notwithstanding. A member may use its own name."""
    scene, _ = await relayed_scene(bridge_service, people, prosody_server)
    room = scene.pair.xmpp_room
    mallory, _ = await plain_xmpp_user(prosody_server, "mallory")
    try:
        shown = display(scene.ma.identity) + MLS_MARK  # how ma's messages appear
        occupants = bridge_service.component.occupants[room]  # type: ignore[union-attr]
        xa_bare = scene.xa.identity.removeprefix("xmpp:")
        (xa_nick,) = [n for o, n in occupants.items() if JID(o).bare == xa_bare]
        taken = [shown, shown.upper(), display(scene.ma.identity),
                 display(scene.ma.identity).replace("a", "\u0430"), scene.ma.identity,
                 display(scene.xa.identity), scene.xa.identity, xa_nick.upper(),
                 "mallory (relayed)", "mallory (mls)"]
        for nick in taken:
            assert await enter(mallory.client, room, nick) == "conflict", nick
            assert await enter(mallory.client, room, nick, mls_marker=True) == "conflict"
        assert await enter(mallory.client, room, "mallory") == ""
        assert await enter(mallory.client, room, shown) == "conflict"  # a nick change
        assert "mallory" in occupants.values() and shown not in occupants.values()
        # xb, a member, may use its own name
        assert await enter(scene.xb.client, room, display(scene.xb.identity),
                           mls_marker=True) == ""

        # honest traffic carries on: ma's message reaches mallory under ma's marked
        # name; mallory's reaches the members from her puppet, shown "(relayed)"
        puppet = relay_identity(mallory.identity)
        await until(lambda: puppet in roster(scene.xa, scene.group_id), "mallory's puppet")
        await converge(scene.members, scene.group_id)
        text = f"from ma {secrets.token_hex(3)}"
        await scene.ma.member.send_text(scene.group_id, text)
        await until(lambda: (f"{room}/{shown}", text) in mallory.messages,
                    "mallory reading ma under ma's marked name")
        said = f"from mallory {secrets.token_hex(3)}"
        mallory.say(room, said)
        for person in scene.members:
            await until(lambda p=person: (puppet, said) in texts(p, scene.group_id),
                        f"{person.identity} reading mallory's puppet")
        assert display(puppet) == mallory.identity.removeprefix("xmpp:") + " (relayed)"
    finally:
        await mallory.close()


async def test_mls_users_are_never_puppeted(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer) -> None:
    """Finding 2. bob runs an MLS client (KeyPackages in the hub's directory) and joins
    the relayed Matrix room before anyone added him: no puppet, he is told how to join,
    and a member's Add lets his own client in. carol joins as a plain Matrix user
    (puppeted), then starts an MLS client: the hub removes her puppet (reason
    "replaced") and her own client gets in. dan, a plain XMPP occupant, re-enters with
    the MLS client marker: his puppet is replaced too."""
    scene, _ = await relayed_scene(bridge_service, people, prosody_server)
    service, group_id, ma = bridge_service, scene.group_id, scene.ma
    room = scene.pair.matrix_room
    bob = await people("matrix", "bob")
    await bob.member.publish_key_packages(2)
    await invite_and_join(ma, bob.client, room)
    await until(lambda: _told(bob, room), "bob told how to join", 60)
    assert relay_identity(bob.identity) not in service.relay.puppets
    await ma.member.add_members(group_id, [bob.identity])
    await until(lambda: in_group(bob, group_id), "bob's own client in the group")
    assert relay_identity(bob.identity) not in roster(ma, group_id)

    carol_id, password = synapse_server.new_user("carol")
    carol = PlainMatrix(await login(synapse_server, carol_id, password))
    carol.start()
    carol_mls: Any = None
    try:
        await invite_and_join(ma, carol.client, room)
        carol_puppet = "relay+matrix:u/" + carol_id[1:]
        await until(lambda: carol_puppet in roster(ma, group_id), "carol's puppet", 60)
        carol_mls = await mls_client(synapse_server, carol_id, password,
                                     service.bot.user_id)  # type: ignore[union-attr]
        await carol_mls.member.publish_key_packages(1)
        await until(lambda: carol_puppet not in service.relay.puppets, "the puppet dropped")
        await _replaced(service, ma, group_id, carol_puppet, carol_mls.identity)
        await ma.member.add_members(group_id, [carol_mls.identity])
        await until(lambda: in_group(carol_mls, group_id), "carol's own client in the group")
    finally:
        await carol.close()
        if carol_mls is not None:
            await carol_mls.close()

    dan, _ = await plain_xmpp_user(prosody_server, "dan")
    try:
        assert await enter(dan.client, scene.pair.xmpp_room, "dan") == ""
        dan_puppet = relay_identity(dan.identity)
        await until(lambda: dan_puppet in roster(ma, group_id), "dan's puppet", 60)
        left = dan.client.make_presence(pto=f"{scene.pair.xmpp_room}/dan",
                                        ptype="unavailable")
        left.send()
        await asyncio.sleep(0.5)
        assert await enter(dan.client, scene.pair.xmpp_room, "dan", mls_marker=True) == ""
        await until(lambda: dan_puppet not in service.relay.puppets, "dan's puppet dropped")
        await _replaced(service, ma, group_id, dan_puppet, dan.identity)
    finally:
        await dan.close()
    await scene.chat("after the puppets were replaced")


async def test_everyone_is_told_the_room_is_relayed(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """Finding 3. The XMPP MLS members are told: those inside when relay mode is turned
    on (notice and subject), those entering later (subject and notice on entry); the
    Matrix MLS member reads the m.notice in the room; every member's library marks the
    group relayed once a puppet is in."""
    scene, saw = await relayed_scene(bridge_service, people, prosody_server)
    for name in ("xa", "xb"):
        await until(lambda n=name: {(NOTICE, ""), ("", NOTICE)} <= set(saw[n]),
                    f"{name} told")
    response = await scene.ma.client.room_messages(scene.pair.matrix_room, limit=100)
    assert isinstance(response, nio.RoomMessagesResponse), response
    assert NOTICE in [e.source["content"].get("body") for e in response.chunk]
    assert all(p.member.relayed(scene.group_id) == [] for p in scene.members)
    legacy, _ = await plain_xmpp_user(prosody_server, "legacy")
    try:
        assert await enter(legacy.client, scene.pair.xmpp_room, "legacy") == ""
        puppet = relay_identity(legacy.identity)
        for person in scene.members:
            await until(lambda p=person: p.member.relayed(scene.group_id) == [puppet],
                        f"{person.identity}'s group marked relayed")
    finally:
        await legacy.close()


async def test_puppet_secrets_stay_out_of_the_hub_store(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        tmp_path: Path) -> None:
    """Finding 4. With a puppet in the group and messages relayed, nothing of the
    puppet's state is in the hub's store: no cursor holds it, and none of the bytes the
    secrets file keeps for it appears in the store's files; the secrets file is 0600."""
    scene, _ = await relayed_scene(bridge_service, people, prosody_server)
    legacy, _ = await plain_xmpp_user(prosody_server, "legacy")
    try:
        assert await enter(legacy.client, scene.pair.xmpp_room, "legacy") == ""
        puppet = relay_identity(legacy.identity)
        await until(lambda: puppet in roster(scene.xa, scene.group_id), "the puppet")
        legacy.say(scene.pair.xmpp_room, "hello from a plain client")
        await until(lambda: any(s == puppet for s, _ in texts(scene.xa, scene.group_id)),
                    "the legacy message")
        await scene.chat("while relayed")
        await bridge_service.relay.puppets[puppet].inbox.save_allowed()
    finally:
        await legacy.close()
    secrets_file = tmp_path / "relay-secrets"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    with sqlite3.connect(f"file:{secrets_file}?mode=ro", uri=True) as conn:
        rows = {str(k): bytes(v) for (k, v) in conn.execute(
            "SELECT key, value FROM puppet_state WHERE puppet = ?", (puppet,))}
    assert len(rows) >= 2  # its signature key and its group state at least
    # what is secret in them: the signature private key, and the group state's
    # private keys and epoch secrets (the state also holds public parts -- the tree,
    # the X.509 credentials -- which the hub's store holds too, rightly;
    # (the hub's CA pin, its info and the puppet's own certificate are public)
    kept = [value for key, value in rows.items() if key == "signature" or
            key.startswith("kp:")]
    assert kept, "the puppet's signature key is kept"
    for key, value in rows.items():
        if key.startswith("group:"):
            state = GroupSlot.from_bytes(value).group.state
            kept += [state.signature_priv, *_epoch_secrets(state.secrets)]
    with sqlite3.connect(f"file:{tmp_path / 'bridge.db'}?mode=ro", uri=True) as conn:
        cursors = conn.execute("SELECT name FROM cursors").fetchall()
    assert not [n for (n,) in cursors if n.startswith("relay:") and
                not n.startswith(("relay:emitted:", "relay:mode:"))]
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir()
                      if p.name.startswith("bridge.db"))
    for value in kept:
        assert value not in stored


def _epoch_secrets(secrets: Any) -> list[bytes]:
    """The epoch's secrets (RFC 9420 §8) held in a member's group state."""
    return [value for field in dataclasses.fields(secrets)
            if isinstance(value := getattr(secrets, field.name), bytes) and value]


async def _replaced(service: BridgeService, member: Person, group_id: bytes, puppet: str,
                    by: str) -> None:
    """The hub queued its Remove of ``puppet``, reason "replaced" (by ``by``); a member
    commits it and the puppet's leaf is gone."""
    async def queued() -> list[Removal | None]:
        epoch = (await service.store.get_group(group_id)).epoch
        reasons = []
        for item in await service.store.queued_proposals(group_id, epoch):
            body = decode(MLSMessage, item.payload).body
            assert isinstance(body, PublicMessage)
            reasons.append(Removal.decode(body.content.authenticated_data))
        return reasons

    await until(lambda: _has(queued, Removal(REPLACED, by)), "the hub's Remove", 60)
    await until(lambda: member.member.group(group_id).state.pending, "the proposal", 60)
    assert await member.member.commit_pending(group_id)
    await until(lambda: puppet not in roster(member, group_id), "the puppet's leaf gone")


async def _has(queued: Any, removal: Removal) -> bool:
    return removal in await queued()


async def _told(person: Any, room: str) -> bool:
    response = await person.client.room_messages(room, limit=100)
    return isinstance(response, nio.RoomMessagesResponse) and any(
        HOW_TO_JOIN_START in str(e.source["content"].get("body", ""))
        and display(person.identity) in str(e.source["content"].get("body", ""))
        for e in response.chunk)


async def invite_and_join(inviter: Person, client: nio.AsyncClient, room: str) -> None:
    invited = await inviter.client.room_invite(room, client.user_id)  # type: ignore
    assert isinstance(invited, nio.RoomInviteResponse), invited
    joined = await client.join(room)
    assert isinstance(joined, nio.JoinResponse), joined


async def mls_client(server: SynapseServer, user_id: str, password: str, hub_user: str
                     ) -> Any:
    """An MLS client on an existing Matrix account (a new device of it)."""
    client = await login(server, user_id, password)
    link = MatrixMemberLink(client, hub_user, sync_timeout_ms=1000)
    member = Member(link, retry=RetryPolicy(attempts=12, base_delay=0.05, max_delay=0.5))
    link.attach(member)
    await member.start()
    link.start()
    await asyncio.wait_for(link.synced.wait(), 30)
    return member_record(client, link, link, member)
