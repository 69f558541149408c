"""The findings of issue 16, reproduced as a hostile user would, against the real
servers: ONE bridge (tests/bridging's ``bridge_service``) with the component on Prosody
and the bot on Synapse, MLS members on both networks (``people``).

:func:`bridged_scene` builds the honest setting: a configured room pair (an XMPP room
whose configured admin is ``xa``, a Matrix room created by ``ma``), the group created
by ``xa`` in it, ``xb`` and ``ma`` added."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.devservers.prosody import ProsodyServer
from tests.bridging.conftest import Person, bridge_service, converge, in_group, people, until
from tests.matrix.conftest import room_with_hub

__all__ = ["Scene", "bridge_service", "bridged_scene", "people"]


@dataclass
class Scene:
    service: BridgeService
    pair: RoomPair
    group_id: bytes
    xa: Person  # the pair's configured admin (owner of the XMPP room)
    xb: Person
    ma: Person  # the Matrix room's creator (power level 100)

    @property
    def members(self) -> list[Person]:
        return [self.xa, self.xb, self.ma]

    async def chat(self, text: str) -> None:
        """The honest members carry on: one message from xa reaches the others."""
        sent = f"{text} {secrets.token_hex(4)}"
        await self.xa.member.send_text(self.group_id, sent)
        for person in (self.xb, self.ma):
            await until(lambda p=person: any(r.content.body == sent for r in
                                             p.member.received(self.group_id)),
                        f"{person.identity} to receive {sent!r}")


async def bridged_scene(service: BridgeService, people: Any, prosody: ProsodyServer
                        ) -> Scene:
    assert service.bot is not None
    xa, xb = await people("xmpp", "xa"), await people("xmpp", "xb")
    ma = await people("matrix", "ma")
    for person in (xb, ma):
        await person.member.publish_key_packages(2)
    matrix_room = await room_with_hub(ma, service.bot.user_id)
    xmpp_room = f"pair{secrets.token_hex(3)}@{prosody.component_name}"
    pair = RoomPair(xmpp_room, matrix_room, admins=frozenset({xa.identity}))
    await service.attach_rooms([pair])
    group_id = await xa.member.create_group(transport="xmpp", room_id=xmpp_room)
    await xa.member.add_members(group_id, [xb.identity, ma.identity])
    await until(lambda: in_group(xb, group_id) and in_group(ma, group_id), "the Welcomes")
    scene = Scene(service, pair, group_id, xa, xb, ma)
    await converge(scene.members, group_id)
    return scene
