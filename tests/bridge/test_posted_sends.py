"""A send a member posted into a room itself (``Inbound.event_id``: a Matrix member's
``im.mlsbridge.send``) is accepted only from a member, only into one of the group's
rooms, only on the sender's own network (docs/SECURITY.md A12; an identity claimed
over another network is refused before, "unauthenticated"); refused, it changes
nothing. Accepted, its delivery names where it was posted (``Outbound.origin``), so
that room gets a confirmation instead of a copy."""

from __future__ import annotations

import os

from bridge.hub.store import LogKind
from mls import encode
from tests.bridge.conftest import Harness, domain
from transports.interface import Inbound, Network, Op


async def test_a_posted_send_is_a_members_into_its_groups_room_on_its_network(
        harness: Harness) -> None:
    alice = await harness.member("alice")
    await harness.member("bob")
    room = harness.room("posted@mls.example.org", alice)
    other = harness.room("other@mls.example.org", alice)
    group_id = await alice.create_group(transport="xmpp", room_id=room)
    await alice.add_members(group_id, [domain("bob")])
    await harness.quiesce()
    assert harness.store is not None

    def posted(sender: str, text: bytes, room_id: str, transport: str = "xmpp",
               network: str = Network.XMPP) -> Inbound:
        _, message = alice.group(group_id).encrypt(text, rng=os.urandom)
        return Inbound(Op.SEND, sender, os.urandom(4).hex(), group_id=group_id,
                       payload=encode(message), transport=transport, room_id=room_id,
                       event_id=f"${os.urandom(6).hex()}", network=network)

    async def log() -> list[bytes]:
        return [entry.payload for entry in await harness.store.log_since(group_id, 0, 100)
                if entry.kind == LogKind.APPLICATION]

    refused = [
        posted(domain("alice"), b"into another room", other),
        posted(domain("alice"), b"claimed from the other network", room,
               network=Network.MATRIX),
        posted(domain("alice"), b"into a room of another network", room,
               transport="matrix"),
        posted(domain("mallory"), b"by a stranger", room),
    ]
    codes = [(await harness.ask(request)).code for request in refused]
    assert codes == ["forbidden", "unauthenticated", "forbidden", "not-member"]
    assert await log() == []

    accepted = posted(domain("alice"), b"where it belongs", room)
    delivered = []
    deliver = harness.network.deliver

    async def recording(message):  # type: ignore[no-untyped-def]
        delivered.append(message)
        await deliver(message)

    harness.network.deliver = recording  # type: ignore[method-assign]
    reply = await harness.ask(accepted)
    assert reply.ok, reply
    await harness.quiesce()
    assert await log() == [accepted.payload]
    (entry,) = [m for m in delivered if m.seq == reply.seq]
    assert entry.origin == ("xmpp", room, accepted.event_id)
    assert entry.payload == accepted.payload
