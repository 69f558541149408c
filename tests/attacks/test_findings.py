"""Issue 16's findings, replayed by hostile users over the real Prosody and Synapse
through ONE bridge; each is refused with a specific code while the honest members
carry on (docs/SECURITY.md names these tests next to its rules)."""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any

import nio
import pytest

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.errors import HubRefused
from mls.codec import encode
from mls.crypto import suite
from mls.group.key_package import create_key_package
from mls.messages.framing import MLSMessage
from tests.attacks.conftest import ask, bridged_scene, external_join
from tests.bridging.conftest import converge, in_group, roster, until
from tests.matrix.conftest import room_with_hub
from tests.xmpp.helpers import muc_admin, muc_admin_list, nick_of
from transports.errors import LinkError
from transports.interface import Op, Outbound

YEAR = 365 * 86400


async def test_a_matrix_strangers_to_device_kick_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """A Matrix account in no room and no group sends a to-device kick naming an XMPP
    member (by group and by room): forbidden; nothing is queued, the next commit
    removes nobody."""
    scene = await bridged_scene(bridge_service, people, prosody_server)
    eve = await people("matrix", "eve")
    for fields in ({"group_id": scene.group_id},
                   {"transport": "xmpp", "room_id": scene.pair.xmpp_room}):
        reply: Outbound = await ask(eve, Op.KICK, target=scene.xb.identity, **fields)
        assert (reply.ok, reply.code) == (False, "forbidden"), reply
    # not from a member either, over XMPP
    reply = await ask(scene.xa, Op.KICK, target=scene.xb.identity, group_id=scene.group_id)
    assert (reply.ok, reply.code) == (False, "forbidden")
    epoch = scene.xa.member.group(scene.group_id).epoch
    assert await bridge_service.store.queued_proposals(scene.group_id, epoch) == []
    await scene.xa.member.update(scene.group_id)
    await converge(scene.members, scene.group_id)
    assert scene.xb.identity in roster(scene.ma, scene.group_id)
    await scene.chat("after the kick attempts")


async def test_strangers_cannot_join_by_external_commit(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """A stranger on XMPP and one on Matrix know the group id: the GroupInfo is refused
    (join-policy), an external commit made from a leaked GroupInfo is refused
    (join-policy), and the log is closed to them (not-member)."""
    scene = await bridged_scene(bridge_service, people, prosody_server)
    for network in ("xmpp", "matrix"):
        stranger = await people(network, "stranger")
        with pytest.raises(HubRefused) as refusal:
            await stranger.member.rejoin(scene.group_id)
        assert refusal.value.code == "join-policy"
        leaked = scene.xa.member.group(scene.group_id).group_info()
        reply = await external_join(stranger, scene.group_id, leaked)
        assert (reply.ok, reply.code) == (False, "join-policy"), reply
        reply = await ask(stranger, Op.FETCH_LOG, group_id=scene.group_id)
        assert (reply.ok, reply.code) == (False, "not-member")
    assert roster(scene.xa, scene.group_id) == {p.identity for p in scene.members}
    await scene.chat("strangers stayed out")


async def test_a_configured_pair_cannot_be_hijacked(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """Strangers reach a configured pair first: entering its XMPP room makes nobody its
    owner, and neither they nor a powerless member of its Matrix room may create its
    group (not-moderator); the configured admin then creates it and the bridge
    attaches both rooms."""
    service = bridge_service
    assert service.bot is not None and service.component is not None
    xa, xs = await people("xmpp", "owner"), await people("xmpp", "squatter")
    ma, ms, mj = (await people("matrix", "creator"), await people("matrix", "stranger"),
                  await people("matrix", "joined"))
    matrix_room = await room_with_hub(ma, service.bot.user_id)
    invited = await ma.client.room_invite(matrix_room, mj.client.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    assert isinstance(await mj.client.join(matrix_room), nio.JoinResponse)
    xmpp_room = f"hijack{secrets.token_hex(3)}@{prosody_server.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, matrix_room,
                                         admins=frozenset({xa.identity}))])
    await xs.plugin.join_room(xmpp_room)  # first in: no owner for a configured room
    assert service.component.rooms.of(xmpp_room, xs.identity) == "none"
    for person, transport, room in ((xs, "xmpp", xmpp_room), (ms, "matrix", matrix_room),
                                    (mj, "matrix", matrix_room), (mj, "xmpp", xmpp_room)):
        with pytest.raises(HubRefused) as refusal:
            await person.member.create_group(transport=transport, room_id=room)
        assert refusal.value.code == "not-moderator", (person.identity, transport)
    assert await service.store.room_group("xmpp", xmpp_room) is None
    assert await service.store.room_group("matrix", matrix_room) is None
    group_id = await xa.member.create_group(transport="xmpp", room_id=xmpp_room)
    rooms = {(r.transport, r.room_id) for r in await service.store.group_rooms(group_id)}
    assert rooms == {("xmpp", xmpp_room), ("matrix", matrix_room)}


async def test_ones_own_room_and_a_ban_there_change_nothing(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        caplog: pytest.LogCaptureFixture) -> None:
    """A member of the group attaches her own Matrix room (forbidden) and bans there a
    member who never joined it: the hub does not act, the deliveries stay in the real
    room. A moderator's kick in the group's own Matrix room does remove."""
    caplog.set_level(logging.INFO, logger="transports.matrix.bot")
    scene = await bridged_scene(bridge_service, people, prosody_server)
    assert bridge_service.bot is not None
    mallory, mb = await people("matrix", "mallory"), await people("matrix", "mb")
    for person in (mallory, mb):
        await person.member.publish_key_packages(1)
    await scene.xa.member.add_members(scene.group_id, [mallory.identity, mb.identity])
    await until(lambda: in_group(mallory, scene.group_id) and in_group(mb, scene.group_id),
                "mallory and mb in the group")
    own = await room_with_hub(mallory, bridge_service.bot.user_id)
    reply = await ask(mallory, Op.ATTACH_ROOM, group_id=scene.group_id, transport="matrix",
                      room_id=own)
    assert (reply.ok, reply.code) == (False, "forbidden")
    banned = await mallory.client.room_ban(own, mb.client.user_id, reason="hostile")
    assert isinstance(banned, nio.RoomBanResponse), banned
    await until(lambda: any(mb.client.user_id in r.getMessage() and own in r.getMessage()
                            and "refused" in r.getMessage() for r in caplog.records),
                "the bot to report the ban and the hub to refuse it")
    epoch = scene.xa.member.group(scene.group_id).epoch
    assert await bridge_service.store.queued_proposals(scene.group_id, epoch) == []
    rooms = {(r.transport, r.room_id) for r in
             await bridge_service.store.group_rooms(scene.group_id)}
    assert rooms == {("xmpp", scene.pair.xmpp_room), ("matrix", scene.pair.matrix_room)}
    await scene.chat("the ban changed nothing")
    # the honest way: the Matrix room's creator kicks mb from the group's room
    await until(lambda: scene.pair.matrix_room in mb.client.rooms, "mb in the Matrix room")
    kicked = await scene.ma.client.room_kick(scene.pair.matrix_room, mb.client.user_id)
    assert isinstance(kicked, nio.RoomKickResponse), kicked
    await until(lambda: bool(scene.xa.member.group(scene.group_id).state.pending),
                "the hub's Remove after the kick")
    # the kicker's power was read from the room state at the kick (GET /context)
    assert not any("no state at" in r.getMessage() for r in caplog.records)
    await scene.xa.member.commit_pending(scene.group_id)
    # out of the room, mb hears nothing more (not even his removal): the others see it
    await until(lambda: mb.identity not in roster(scene.ma, scene.group_id), "mb removed")
    assert mallory.identity in roster(scene.xa, scene.group_id)


async def test_room_moderation_on_xmpp(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """On XMPP the room's owner bans a member (muc#admin, XEP-0045 §9.1): the hub
    removes him and he cannot re-enter; a plain member's ban is refused by the room
    and changes nothing."""
    scene = await bridged_scene(bridge_service, people, prosody_server)
    room = scene.pair.xmpp_room
    await until(lambda: room in scene.xb.plugin.rooms, "xb in the XMPP room")
    assert await muc_admin(scene.xb, room, affiliation="outcast",
                           jid=scene.xa.identity.removeprefix("xmpp:")) == "forbidden"
    assert await muc_admin(scene.xb, room, role="none", nick=nick_of(scene.xa)) == "forbidden"
    await scene.chat("still here")
    assert await muc_admin(scene.xa, room, affiliation="outcast",
                           jid=scene.xb.identity.removeprefix("xmpp:")) == ""
    await until(lambda: bool(scene.ma.member.group(scene.group_id).state.pending),
                "the hub's Remove after the ban")
    await scene.ma.member.commit_pending(scene.group_id)
    await until(lambda: scene.xb.identity not in roster(scene.xa, scene.group_id),
                "xb removed")
    with pytest.raises(LinkError):
        await scene.xb.plugin.join_room(room)
    await converge([scene.xa, scene.ma], scene.group_id)
    xa_jid, xb_jid = (p.identity.removeprefix("xmpp:") for p in (scene.xa, scene.xb))
    assert await muc_admin_list(scene.xa, room, "outcast") == [xb_jid]
    assert await muc_admin_list(scene.xa, room, "owner") == [xa_jid]
    assert await muc_admin_list(scene.xb, room, "owner") == "forbidden"


async def test_the_key_package_directory_cannot_be_exhausted(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """A Matrix user claims an XMPP user's KeyPackages: without a group (malformed),
    for a group she is not in (not-member), and for groups of her own until the bound
    (quota); the victim stays addable (its last-resort KeyPackage is never consumed)."""
    scene = await bridged_scene(bridge_service, people, prosody_server)
    victim, attacker = await people("xmpp", "victim"), await people("matrix", "hoarder")
    await victim.member.publish_key_packages(3)
    await victim.member.publish_key_packages(1, last_resort=True)

    def claim(group_id: bytes) -> Any:
        return ask(attacker, Op.CLAIM_KEY_PACKAGE, group_id=group_id,
                   target=victim.identity, cipher_suite=1)

    assert (await claim(b"")).code == "malformed"
    assert (await claim(scene.group_id)).code == "not-member"
    own = await attacker.member.create_group()
    replies = [await claim(own) for _ in range(4)]
    assert [r.ok for r in replies] == [True, True, True, False]
    assert replies[3].code == "quota"
    another = await attacker.member.create_group()
    assert (await claim(another)).code == "quota"  # the bound is per claimer too
    await scene.xa.member.add_members(scene.group_id, [victim.identity])
    await until(lambda: in_group(victim, scene.group_id), "the victim added all the same")
    await scene.chat("the victim is in")


async def test_lifetimes_and_device_names_are_capped(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    """100-year KeyPackage lifetimes and over-long device names are refused with their
    own codes on both networks (100 KB over XMPP; the Matrix binding cannot even carry
    that much in one to-device event, so 10 KB there); honest ones go through."""
    cs = suite(1)
    for network, device_name in (("xmpp", 100_000), ("matrix", 10_000)):
        person = await people(network, "publisher")
        member = person.member
        await member.refresh_credential()  # its credential, as the member would publish
        forever = create_key_package(cs, member.credential, member._signature_priv,
                                     rng=os.urandom, now=int(time.time()), lifetime=100 * YEAR)
        reply = await ask(person, Op.PUBLISH_KEY_PACKAGE,
                          payload=encode(MLSMessage.wrap(forever.key_package)))
        assert (reply.ok, reply.code) == (False, "lifetime-too-long"), reply
        fresh = create_key_package(cs, member.credential, member._signature_priv,
                                   rng=os.urandom, now=int(time.time()))
        reply = await ask(person, Op.PUBLISH_KEY_PACKAGE, device="d" * device_name,
                          payload=encode(MLSMessage.wrap(fresh.key_package)))
        assert (reply.ok, reply.code) == (False, "too-large"), reply
        await member.publish_key_packages(1)
        listed = await ask(person, Op.LIST_KEY_PACKAGES)
        assert len(listed.key_packages) == 1
