"""Relayed identities (docs/SECURITY.md, "Relay mode", R1-R3): a relay puppet is named
``relay+<network identity>``, which no network authenticates; the hub takes such an
identity only over the relay link (network ``local``), lets it into a group only by its
own external commit, and never lets a network user add, impersonate or publish one.
Findings (issue 16): a legacy user could take a relayed MLS member's name; the relay
made a puppet under a Matrix user's own identity, so his real client never got in."""

from __future__ import annotations

import dataclasses

from bridge.identities import display, is_relayed, relay_identity, relayed_user
from mls.codec import encode
from mls.group.group import Group
from mls.messages.framing import MLSMessage
from tests.authz.conftest import XMPP_ROOM, AuthzBench, who
from tests.mls.fixtures import NOW
from transports.interface import Inbound, Kind, Membership, Network, NetworkEvent, Op, Role


def external(bench: AuthzBench, name: str) -> tuple[Group, MLSMessage]:
    """``name`` joins by external commit from alice's current GroupInfo."""
    bundle = bench.bundle(name)
    return Group.join_external(
        MLSMessage.wrap(bench.groups["alice"].group_info()),
        credential=bundle.key_package.leaf_node.credential,
        signature_priv=bench.person(name).signature_priv(), rng=bench.draw, now=NOW)


def join_request(bench: AuthzBench, name: str, joined: Group, commit: MLSMessage
                 ) -> Inbound:
    return bench.request(Op.SUBMIT_COMMIT, name, group_id=bench.group_id,
                         payload=encode(commit),
                         group_info=encode(MLSMessage.wrap(joined.group_info())))


async def join_puppet(bench: AuthzBench, name: str) -> None:
    """The relay's puppet ``name`` joins over the relay link; everyone follows."""
    joined, commit = external(bench, name)
    await bench.accepted(join_request(bench, name, joined, commit))
    for member in list(bench.groups):
        bench.groups[member], _ = bench.groups[member].process(commit, now=NOW)
    bench.groups[name] = joined


def test_the_relay_namespace() -> None:
    """R1: relayed identities are the network identities they stand for under
    ``relay+``; members see them marked."""
    assert relay_identity(who("dave")) == who("dave-relayed")
    assert relayed_user(who("frank-relayed")) == who("frank")
    assert display(who("dave-relayed")) == "dave@example.org (relayed)"
    assert display(who("frank-relayed")) == "@frank:example.org (relayed)"
    assert display(who("frank")) == "@frank:example.org"
    for malformed in ("relay+", "relay+xmpp:", "relay+mailto:a@b", "relay+relay+xmpp:a@b",
                      "xmpp:dave@example.org"):
        assert not is_relayed(malformed), malformed


async def test_relayed_identities_come_over_the_relay_link_only(bench: AuthzBench) -> None:
    """R1: no network authenticates a relayed identity, and the relay link carries
    nothing else (test_requesters.py tries network identities over it)."""
    info = bench.request(Op.HUB_INFO, "dave-relayed", cipher_suite=1)
    await bench.accepted(info)
    for network in (Network.XMPP, Network.MATRIX):
        await bench.refused(dataclasses.replace(info, network=network), "unauthenticated")
    # and it holds no room role, whatever a directory says
    await bench.attach(("xmpp", XMPP_ROOM))
    bench.rooms["xmpp"].set_role(XMPP_ROOM, who("dave-relayed"), Role.ADMIN)
    assert await bench.hub.authz.role("xmpp", XMPP_ROOM, who("dave-relayed")) == Role.NONE


async def test_nobody_adds_or_plants_a_relayed_identity(bench: AuthzBench) -> None:
    """R2: a member adding a KeyPackage that names ``relay+xmpp:dave`` (a leaf members
    would show as "dave (relayed)") is refused, by value and as a proposal; a network
    user's external commit under a relayed name is refused; nobody publishes a relayed
    KeyPackage. The puppet itself joins by its own external commit over the relay link,
    whatever the join policy (the operator put the room in relay mode)."""
    await bench.attach(("xmpp", XMPP_ROOM))
    planted = bench.bundle("dave-relayed").key_package
    staged = bench.groups["alice"].commit(rng=bench.draw, now=NOW, add=[planted])
    await bench.refused(bench.commit_request("alice", staged), "forbidden")
    _, proposal = bench.groups["bob"].propose_add(planted, rng=bench.draw)
    await bench.refused(bench.request(Op.SEND, "bob", group_id=bench.group_id,
                                      payload=encode(proposal)), "forbidden")
    # mallory, over XMPP, commits externally as dave's puppet (the group open to all)
    bench.set_default_join(bench.hub.config.default_join.OPEN)
    joined, commit = external(bench, "dave-relayed")
    forged = join_request(bench, "dave-relayed", joined, commit)
    await bench.refused(dataclasses.replace(forged, sender=who("mallory"),
                                            network=Network.XMPP), "forbidden")
    bench.set_default_join(bench.hub.config.default_join.INVITE)
    for name, network in (("dave-relayed", Network.LOCAL), ("mallory", Network.XMPP)):
        request = bench.request(Op.PUBLISH_KEY_PACKAGE, name, device="d",
                                payload=encode(MLSMessage.wrap(planted)))
        await bench.refused(dataclasses.replace(request, network=network,
                                                sender=who(name)), "forbidden")
    await join_puppet(bench, "dave-relayed")
    assert who("dave-relayed") in {m.identity for m in
                                   await bench.store.get_members(bench.group_id)}


async def test_a_legacy_user_leaving_takes_its_puppet_along(bench: AuthzBench) -> None:
    """R3: when the XMPP server reports that dave left the room, the hub removes the
    leaf of dave's puppet (a network never names a relayed identity itself)."""
    await bench.attach(("xmpp", XMPP_ROOM))
    await join_puppet(bench, "dave-relayed")
    named = NetworkEvent(Network.XMPP, XMPP_ROOM, who("dave-relayed"), who("alice"),
                         Membership.JOINED, Membership.NONE, True, "ev-1")
    reply = await bench.hub.network_event(named)
    assert (reply.ok, reply.code) == (False, "forbidden")
    left = NetworkEvent(Network.XMPP, XMPP_ROOM, who("dave"), who("dave"),
                        Membership.JOINED, Membership.NONE, False, "ev-2")
    reply = await bench.hub.network_event(left)
    assert reply.ok, reply.reason
    record = await bench.store.get_group(bench.group_id)
    queued = await bench.store.queued_proposals(bench.group_id, record.epoch)
    assert [item.sender for item in queued] == ["hub"]
    (proposal,) = [d for d in bench.deliverer.delivered if d.kind == Kind.PROPOSAL]
    for member in list(bench.groups):
        bench.groups[member], _ = bench.groups[member].process(proposal.payload, now=NOW)
    staged = bench.groups["alice"].commit(rng=bench.draw, now=NOW)
    await bench.commit("alice", staged)
    assert who("dave-relayed") not in {m.identity for m in
                                       await bench.store.get_members(bench.group_id)}
