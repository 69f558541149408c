"""The findings of issue 16, reproduced as a hostile user would, against the real
servers: ONE bridge (tests/bridging's ``bridge_service``) with the component on Prosody
and the bot on Synapse, MLS members on both networks (``people``).

:func:`bridged_scene` builds the honest setting: a configured room pair (an XMPP room
whose configured admin is ``xa``, a Matrix room created by ``ma``), the group created
by ``xa`` in it, ``xb`` and ``ma`` added (and, for the hostile-member attacks,
``mallory`` on the network under test, a member without any room role).

:func:`hub_state` is what an attack must leave unchanged: the hub's record of the
group (epoch, next seq = the log's length, its public state, GroupInfo, tree), its
members, bans, queued proposals and rooms; :func:`ask` sends a raw request over a
person's own network link."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from bridge.hub.policy import JoinPolicy
from mls import MLSMessage, encode
from mls.group.group import Group
from mls.messages.welcome import GroupInfo
from tests.bridging.conftest import (
    Person,
    bridge_service,
    converge,
    in_group,
    people,
    roster,
    until,
)
from tests.matrix.conftest import room_with_hub
from transports.interface import Inbound, Op

__all__ = ["NETWORKS", "Scene", "ask", "bridge_service", "bridged_scene", "external_join",
           "hub_state", "people"]

#: Parametrize an attack by the network its attacker uses.
NETWORKS = pytest.mark.parametrize("network", ["xmpp", "matrix"])


def ask(person: Person, op: str, **fields: Any) -> Any:
    """A raw request over ``person``'s own network link (the sender is whatever the
    network authenticated; the content may claim anything)."""
    return person.member.link.request(Inbound(op, "anyone", request_id=secrets.token_hex(6),
                                              **fields))


def external_join(person: Person, group_id: bytes, group_info: GroupInfo,
                  **options: Any) -> Awaitable[Any]:
    """``person`` joins ``group_id`` by an external commit made from ``group_info`` (RFC
    9420 §12.4.3.2) with her own credential and key unless ``options`` say otherwise
    (``credential``, ``signature_priv``, ``resync_leaf``, ``ratchet_tree``), and submits
    it over her own link with the GroupInfo of the epoch it makes."""
    member = person.member
    options = {"credential": member.credential, "signature_priv": member._signature_priv,
               **options}
    joined, commit = Group.join_external(MLSMessage.wrap(group_info), rng=os.urandom,
                                         now=int(time.time()), **options)
    return ask(person, Op.SUBMIT_COMMIT, group_id=group_id, payload=encode(commit),
               group_info=encode(MLSMessage.wrap(joined.group_info())))


async def hub_state(service: BridgeService, group_id: bytes) -> tuple[Any, ...]:
    """Everything the hub keeps of a group: an attack refused leaves it identical."""
    store = service.store
    record = await store.get_group(group_id)
    return (record, await store.get_members(group_id), await store.bans(group_id),
            await store.queued_proposals(group_id, record.epoch),
            await store.group_rooms(group_id))


@dataclass
class Scene:
    service: BridgeService
    pair: RoomPair
    group_id: bytes
    xa: Person  # the pair's configured admin (owner of the XMPP room)
    xb: Person
    ma: Person  # the Matrix room's creator (power level 100)
    mallory: Person | None = None  # a member holding no room role

    @property
    def members(self) -> list[Person]:
        return [self.xa, self.xb, self.ma] + ([self.mallory] if self.mallory else [])

    @property
    def attacker(self) -> Person:
        assert self.mallory is not None
        return self.mallory

    async def chat(self, text: str) -> None:
        """The honest members carry on: one message from xa reaches every member."""
        sent = f"{text} {secrets.token_hex(4)}"
        await self.xa.member.send_text(self.group_id, sent)
        current = roster(self.xa, self.group_id)
        for person in [p for p in self.members[1:] if p.identity in current]:
            await until(lambda p=person: any(r.content.body == sent for r in
                                             p.member.received(self.group_id)),
                        f"{person.identity} to receive {sent!r}")


async def bridged_scene(service: BridgeService, people: Any, prosody: ProsodyServer,
                        hostile: str = "", join: JoinPolicy = JoinPolicy.INVITE) -> Scene:
    """The honest scene; with ``hostile`` (a network), ``mallory`` of that network is
    added too, in the same commit."""
    assert service.bot is not None
    xa, xb = await people("xmpp", "xa"), await people("xmpp", "xb")
    ma = await people("matrix", "ma")
    mallory = await people(hostile, "mallory") if hostile else None
    added = [xb, ma] + ([mallory] if mallory else [])
    for person in added:
        await person.member.publish_key_packages(2)
    matrix_room = await room_with_hub(ma, service.bot.user_id)
    xmpp_room = f"pair{secrets.token_hex(3)}@{prosody.component_name}"
    pair = RoomPair(xmpp_room, matrix_room, join=join, admins=frozenset({xa.identity}))
    await service.attach_rooms([pair])
    group_id = await xa.member.create_group(transport="xmpp", room_id=xmpp_room)
    await xa.member.add_members(group_id, [p.identity for p in added])
    await until(lambda: all(in_group(p, group_id) for p in added), "the Welcomes")
    scene = Scene(service, pair, group_id, xa, xb, ma, mallory)
    await converge(scene.members, group_id)
    return scene
