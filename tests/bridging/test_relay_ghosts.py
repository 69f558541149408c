"""Relay mode with the Matrix side as an application service, over real Prosody and
Synapse: relayed XMPP people post into the Matrix room as their own ghosts (users of
the registration's namespace, display name "... (relayed)" or "... (MLS)"), never as
the bot; ghosts are never puppeted, relayed back or given a room role."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nio
import pytest

from benchmarks.bridge_run import PlainXmpp, plain_xmpp
from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.app.services.matrix import MatrixServiceConfig
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import AppServiceSpec, SynapseServer
from bridge.identities import display, relay_identity
from tests.bridging.conftest import (
    PlainMatrix,
    converge,
    owner_and_xmember,
    plain_matrix,
    relayed_group,
    roster,
    running_bridge,
    texts,
    until,
)
from tests.matrix.conftest import room_with_hub
from transports.interface import Role
from transports.matrix import events as matrix_events

SPEC = AppServiceSpec(receive_ephemeral=True)
pytestmark = pytest.mark.parametrize("synapse_server", [SPEC], indirect=True)


@pytest.fixture
async def bridge_service(prosody_server: ProsodyServer, synapse_server: SynapseServer,
                         tmp_path: Path) -> AsyncIterator[BridgeService]:
    """The combined service with the Matrix side as the application service (overrides
    the conftest's plain-bot one, and so the ``people`` built on it)."""
    matrix = MatrixServiceConfig(
        homeserver=synapse_server.url,
        appservice=str(synapse_server.appservice_registration_path),
        listen_port=synapse_server.appservice_port,
        server_name=synapse_server.server_name)
    async with running_bridge(prosody_server, tmp_path, matrix) as service:
        yield service


async def relayed_rooms(service: BridgeService, people: Any, prosody: ProsodyServer,
                        synapse: SynapseServer
                        ) -> tuple[Any, Any, PlainXmpp, PlainMatrix, str, str, bytes]:
    """A relayed pair: an MLS Matrix owner, an MLS XMPP member, a plain Matrix user and
    a plain XMPP user (both puppeted), everyone converged."""
    assert service.bot is not None
    owner, xmember = await owner_and_xmember(people)
    plain_x = await plain_xmpp(prosody, "legx")
    plain_m = await plain_matrix(synapse, "legm")
    matrix_room = await room_with_hub(owner, service.bot.user_id)
    xmpp_room = f"ghosts{secrets.token_hex(3)}@{prosody.component_name}"
    await service.attach_rooms([RoomPair(xmpp_room, matrix_room, relay=True)])
    invited = await owner.client.room_invite(matrix_room, plain_m.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    joined = await plain_m.client.join(matrix_room)
    assert isinstance(joined, nio.JoinResponse), joined
    group_id = await relayed_group(owner, xmember, matrix_room, xmpp_room, plain_x, plain_m)
    return owner, xmember, plain_x, plain_m, xmpp_room, matrix_room, group_id


async def display_name(person: PlainMatrix, room_id: str, user_id: str) -> str:
    """The display name ``user_id`` has in ``room_id`` (its member event)."""
    state = await person.client.room_get_state_event(room_id, "m.room.member", user_id)
    assert isinstance(state, nio.RoomGetStateEventResponse), state
    return str(state.content.get("displayname"))


async def test_xmpp_people_post_as_their_ghosts(bridge_service: BridgeService, people: Any,
                                                prosody_server: ProsodyServer,
                                                synapse_server: SynapseServer) -> None:
    service = bridge_service
    owner, xmember, plain_x, plain_m, xmpp_room, matrix_room, group_id = \
        await relayed_rooms(service, people, prosody_server, synapse_server)
    ghosts = service.matrix.ghosts if service.matrix is not None else None
    assert ghosts is not None and service.bot is not None
    try:
        # a relayed XMPP user's message: from its ghost, under its relayed name
        from_x = f"plain xmpp says {secrets.token_hex(4)}"
        plain_x.say(xmpp_room, from_x)
        ghost_x = ghosts.user_id("xmpp", plain_x.jid)
        assert ghost_x == f"@{SPEC.user_prefix}xmpp_" \
            f"{plain_x.jid.replace('@', '=40')}:{synapse_server.server_name}"
        await until(lambda: [e["content"]["body"] for e in plain_m.messages(matrix_room)
                             if e["sender"] == ghost_x] == [from_x],
                    "the plain Matrix user reading the ghost")
        assert await display_name(plain_m, matrix_room, ghost_x) == \
            display(relay_identity(plain_x.identity))
        # an MLS XMPP member's message: from its own ghost, marked (MLS)
        from_xmls = f"xmls says {secrets.token_hex(4)}"
        await xmember.member.send_text(group_id, from_xmls)
        ghost_xmls = ghosts.user_id("xmpp", display(xmember.identity))
        await until(lambda: [e["content"]["body"] for e in plain_m.messages(matrix_room)
                             if e["sender"] == ghost_xmls] == [from_xmls],
                    "the plain Matrix user reading the MLS member's ghost")
        assert await display_name(plain_m, matrix_room, ghost_xmls) == \
            display(xmember.identity) + " (MLS)"
        # a Matrix MLS member's message still comes from the bot, prefixed
        from_owner = f"owner says {secrets.token_hex(4)}"
        await owner.member.send_text(group_id, from_owner)
        await until(lambda: f"<{display(owner.identity)}> {from_owner}" in
                    [e["content"]["body"] for e in plain_m.messages(matrix_room)
                     if e["sender"] == service.bot.user_id],  # type: ignore[union-attr]
                    "the bot's prefixed message")
        # nothing came from the bot for the XMPP senders
        assert not [e for e in plain_m.messages(matrix_room)
                    if e["sender"] == service.bot.user_id
                    and (from_x in e["content"]["body"] or from_xmls in e["content"]["body"])]
        # ghosts are the bridge's own: not puppeted, not relayed back, no room role
        await converge([owner, xmember], group_id)
        for person in (owner, xmember):
            await person.member.idle()
            assert [t for s, t in texts(person, group_id) if t == from_x] == [from_x]
        assert roster(owner, group_id) == {
            owner.identity, xmember.identity, relay_identity(plain_x.identity),
            relay_identity(plain_m.identity)}
        assert set(service.relay.puppets) == {relay_identity(plain_x.identity),
                                              relay_identity(plain_m.identity)}
        assert await service.bot.role(matrix_room, matrix_events.user_uri(ghost_x)) \
            == Role.NONE
        assert [b for _, b in plain_x.messages].count(from_xmls) == 1
    finally:
        await plain_x.close()
        await plain_m.close()
