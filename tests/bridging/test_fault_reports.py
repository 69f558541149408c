"""The report path over the real networks (SECURITY.md A21): in a group across an XMPP
and a Matrix room, a member's commit with a zeroed membership tag is accepted by the
hub (only members can check that tag); the honest members fail it, report it over
their own network -- an XMPP IQ, a Matrix to-device request -- and resync once; the
two reports make the hub ban the committer and propose its removal."""

from __future__ import annotations

import dataclasses
import random
import secrets
from typing import Any

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.hub.policy import JoinPolicy
from mls import MLSMessage, PublicMessage, encode
from tests.bridging.conftest import converge, in_group, roster, until
from tests.matrix.conftest import room_with_hub
from transports.interface import Inbound, Op


async def test_reports_over_xmpp_and_matrix_remove_the_faulty_committer(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    service = bridge_service
    assert service.bot is not None
    xa, mallory = await people("xmpp", "xa"), await people("xmpp", "xm")
    ma = await people("matrix", "ma")
    for person in (ma, mallory):
        await person.member.publish_key_packages(1)
    matrix_room = await room_with_hub(ma, service.bot.user_id)
    xmpp_room = f"faults{secrets.token_hex(3)}@{prosody_server.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, matrix_room, join=JoinPolicy.OPEN,
                                         admins=frozenset({xa.identity}))])
    group_id = await xa.member.create_group(transport="xmpp", room_id=xmpp_room)
    await xa.member.add_members(group_id, [ma.identity, mallory.identity])
    await until(lambda: in_group(ma, group_id) and in_group(mallory, group_id), "the Welcomes")
    await converge([xa, ma, mallory], group_id)

    # Mallory stops following the group and sends a commit whose membership tag is
    # zero, over its own XMPP link: every public check passes, the hub accepts it.
    await mallory.member.stop()
    staged = mallory.member.group(group_id).commit(rng=random.Random(3).randbytes,
                                                  force_path=True)
    body = staged.message.body
    assert isinstance(body, PublicMessage)
    forged = MLSMessage.wrap(dataclasses.replace(body, membership_tag=bytes(32)))
    reply = await mallory.plugin.request(Inbound(
        Op.SUBMIT_COMMIT.value, "", group_id=group_id, payload=encode(forged),
        group_info=encode(MLSMessage.wrap(staged.group_info))))
    assert reply.ok, reply.reason

    async def banned() -> bool:
        return [ban.identity for ban in await service.store.bans(group_id)] == [
            mallory.identity]

    await until(banned, "the hub banning the committer after both reports")
    await until(lambda: xa.member.recovery.resyncs == ma.member.recovery.resyncs == 1 and
                in_group(xa, group_id) and in_group(ma, group_id), "both resyncs")
    await xa.member.idle()
    await ma.member.idle()
    assert (xa.member.recovery.reports, ma.member.recovery.reports) == (1, 1)

    # The hub's Remove of Mallory is pending; the next commit removes it for good.
    await converge([xa, ma], group_id)
    assert await xa.member.commit_pending(group_id)
    await converge([xa, ma], group_id)
    assert roster(xa, group_id) == roster(ma, group_id) == {xa.identity, ma.identity}
    # (the pair is open to anyone: what keeps Mallory out is the ban)
    again = await mallory.plugin.request(Inbound(Op.GET_GROUP_INFO.value, "",
                                                 group_id=group_id))
    assert (again.ok, again.code) == (False, "forbidden")
    assert (xa.member.recovery.resyncs, ma.member.recovery.resyncs) == (1, 1)
