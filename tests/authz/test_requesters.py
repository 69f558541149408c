"""Who asks (docs/SECURITY.md, "Principals"), and the operations that are never a
client's: attach-room (A5) and kick (A20), and the ones only for oneself: hub-info
(A1), list-key-packages (A17), fetch-welcomes (A18), leave (A19). Each tried as a
stranger, as a member and from the other network."""

from __future__ import annotations

import dataclasses

import pytest

from mls.codec import encode
from mls.messages.framing import MLSMessage
from tests.authz.conftest import MATRIX_ROOM, XMPP_ROOM, AuthzBench, who
from tests.mls.fixtures import NOW
from transports.errors import LinkError
from transports.interface import Network, Op, Outbound, Role


async def test_the_network_authenticates_the_requester(bench: AuthzBench) -> None:
    """An identity only arrives over its own network; a request without a network (a
    transport that did not say who authenticated it) is refused."""
    info = bench.request(Op.HUB_INFO, "alice")
    await bench.refused(dataclasses.replace(info, network=Network.MATRIX), "unauthenticated")
    await bench.refused(dataclasses.replace(info, network=""), "unauthenticated")
    await bench.refused(dataclasses.replace(info, network="irc"), "unauthenticated")
    await bench.refused(dataclasses.replace(info, sender="xmpp:", network=Network.XMPP),
                        "unauthenticated")
    matrix_log = bench.request(Op.FETCH_LOG, "carol", group_id=bench.group_id)
    await bench.refused(dataclasses.replace(matrix_log, network=Network.XMPP),
                        "unauthenticated")
    await bench.accepted(matrix_log)  # the same request over its own network
    # the relay's in-process puppets: network "local", relayed identities only (R1)
    local = bench.request(Op.HUB_INFO, "dave-relayed")
    assert local.network == Network.LOCAL
    await bench.accepted(local)
    for sender in ("xmpp:alice@example.org", "mailto:alice@example.org", "relay+xmpp:",
                   "relay+mailto:alice@example.org", "relay+relay+xmpp:a@example.org"):
        await bench.refused(dataclasses.replace(local, sender=sender), "unauthenticated")


async def test_hub_info_is_public(bench: AuthzBench) -> None:
    """A1: the hub's external-sender key, to anyone authenticated on either network."""
    for name in ("mallory", "eve", "alice", "carol"):
        reply = await bench.accepted(bench.request(Op.HUB_INFO, name, cipher_suite=1))
        assert reply.payload and reply.sender == bench.hub.identity.name


async def test_nobody_attaches_a_room_by_request(bench: AuthzBench) -> None:
    """A5 (finding: a member attached her own Matrix room to a group, redirecting its
    deliveries): attach-room is the configuration's, whoever asks."""
    for name, transport, room in (("mallory", "xmpp", XMPP_ROOM),
                                  ("alice", "xmpp", XMPP_ROOM),
                                  ("carol", "matrix", MATRIX_ROOM),
                                  ("eve", "matrix", MATRIX_ROOM)):
        await bench.refused(bench.request(Op.ATTACH_ROOM, name, group_id=bench.group_id,
                                          transport=transport, room_id=room), "forbidden")
    assert await bench.store.group_rooms(bench.group_id) == []


async def test_nobody_kicks_by_request(bench: AuthzBench) -> None:
    """A20 (finding: a Matrix account in no room and no group sent a to-device kick
    naming an XMPP member, and the hub queued a Remove): kicks are network events
    only; a kick request is refused whoever sends it, and queues nothing."""
    await bench.attach(("xmpp", XMPP_ROOM))
    bench.role("xmpp", XMPP_ROOM, "alice", Role.ADMIN)  # even the room's admin
    for name in ("eve", "mallory", "carol", "alice"):
        for fields in ({"group_id": bench.group_id}, {"transport": "xmpp",
                                                      "room_id": XMPP_ROOM}):
            await bench.refused(bench.request(Op.KICK, name, target=who("bob"), **fields),
                                "forbidden")
    assert await bench.store.queued_proposals(bench.group_id, 1) == []


async def test_listing_key_packages_is_for_oneself(bench: AuthzBench) -> None:
    """A17: a stranger, a member and the other network may not list alice's
    KeyPackages; alice may."""
    await bench.accepted(bench.request(Op.PUBLISH_KEY_PACKAGE, "alice", payload=_kp(bench,
                                                                                      "alice")))
    for name in ("mallory", "bob", "eve", "carol"):
        await bench.refused(bench.request(Op.LIST_KEY_PACKAGES, name, target=who("alice")),
                            "forbidden")
    mine = await bench.accepted(bench.request(Op.LIST_KEY_PACKAGES, "alice"))
    assert [kp.user for kp in mine.key_packages] == [who("alice")]
    named = await bench.accepted(bench.request(Op.LIST_KEY_PACKAGES, "alice",
                                               target=who("alice")))
    assert named.key_packages == mine.key_packages
    # a stranger's own listing holds only its own (here: nothing)
    theirs = await bench.accepted(bench.request(Op.LIST_KEY_PACKAGES, "eve"))
    assert theirs.key_packages == ()


async def test_welcomes_are_fetched_by_their_recipient_only(
        bench: AuthzBench, monkeypatch: pytest.MonkeyPatch) -> None:
    """A18: pending Welcomes go to their recipient; anyone else's fetch is empty."""

    async def unreachable(message: Outbound) -> None:  # the Welcome stays pending
        raise LinkError("eve is offline")

    monkeypatch.setattr(bench.deliverer, "deliver", unreachable)
    dave = await bench.from_directory("eve", "alice")
    staged = bench.groups["alice"].commit(rng=bench.draw, now=NOW, add=[dave.key_package])
    await bench.commit("alice", staged)
    for name in ("mallory", "alice", "carol"):
        reply = await bench.accepted(bench.request(Op.FETCH_WELCOMES, name))
        assert reply.entries == ()
    (welcome,) = (await bench.accepted(bench.request(Op.FETCH_WELCOMES, "eve"))).entries
    assert welcome.group_id == bench.group_id


async def test_leave_is_for_oneself(bench: AuthzBench) -> None:
    """A19: a leave request names its sender only; a stranger has nothing to leave."""
    for name, target in (("bob", who("alice")), ("carol", who("bob")),
                         ("mallory", who("bob")), ("eve", who("carol"))):
        await bench.refused(bench.request(Op.LEAVE, name, group_id=bench.group_id,
                                          target=target), "forbidden")
    await bench.refused(bench.request(Op.LEAVE, "mallory", group_id=bench.group_id),
                        "not-member")
    await bench.refused(bench.request(Op.LEAVE, "eve", group_id=bench.group_id),
                        "not-member")
    reply = await bench.accepted(bench.request(Op.LEAVE, "carol", group_id=bench.group_id,
                                               target=who("carol")))
    (queued,) = await bench.store.queued_proposals(bench.group_id, 1)
    assert queued.seq == reply.seq and queued.sender == "hub"


def _kp(bench: AuthzBench, name: str) -> bytes:
    return encode(MLSMessage.wrap(bench.bundle(name).key_package))
