"""Room membership changes reported by the transports (docs/SECURITY.md A20): they
act only on an attached room of the reporting network, on an identity of that network
that was in the room before and is not after, and -- for a kick or a ban -- only when
the actor held the moderator role. Findings: a member attached her own Matrix room to
a group and banned a member there who had never joined it, and the hub removed him;
a stranger's kick removed a member."""

from __future__ import annotations

from tests.authz.conftest import MATRIX_ROOM, XMPP_ROOM, AuthzBench, who
from transports.interface import Membership, NetworkEvent

J, INV, N, B = Membership.JOINED, Membership.INVITED, Membership.NONE, Membership.BANNED


def event(network: str, room: str, target: str, actor: str, before: Membership,
          after: Membership, moderator: bool = False) -> NetworkEvent:
    return NetworkEvent(network, room, who(target), who(actor), before, after, moderator,
                        f"ev-{target}-{actor}")


async def refused(bench: AuthzBench, change: NetworkEvent, code: str) -> None:
    before = await bench.snapshot()
    reply = await bench.hub.network_event(change)
    assert (reply.ok, reply.code) == (False, code), reply.reason
    assert await bench.snapshot() == before


async def queued(bench: AuthzBench) -> list[str]:
    record = await bench.store.get_group(bench.group_id)
    return [item.sender for item in await bench.store.queued_proposals(bench.group_id,
                                                                        record.epoch)]


async def test_events_act_only_where_the_target_really_was(bench: AuthzBench) -> None:
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    # a room of the group, but the other network's identity (an XMPP member "banned"
    # from the Matrix room, or the reverse)
    await refused(bench, event("matrix", MATRIX_ROOM, "bob", "carol", J, B, True),
                  "forbidden")
    await refused(bench, event("xmpp", XMPP_ROOM, "carol", "alice", J, N, True), "forbidden")
    # a room that is not the group's (her own room) -- or the group's room reported by
    # the other network
    await refused(bench, event("matrix", "!hers:example.org", "carol", "eve", J, B, True),
                  "unknown-group")
    await refused(bench, event("xmpp", MATRIX_ROOM, "bob", "alice", J, N, True),
                  "unknown-group")
    # banned "there" though he had never joined it
    await refused(bench, event("matrix", MATRIX_ROOM, "carol", "eve", N, B, True),
                  "forbidden")
    # a kick or ban by someone without the moderator role (a stranger, a member)
    await refused(bench, event("xmpp", XMPP_ROOM, "bob", "mallory", J, N), "not-moderator")
    await refused(bench, event("matrix", MATRIX_ROOM, "carol", "eve", INV, B), "not-moderator")
    # still in the room afterwards: nothing to do
    await refused(bench, event("xmpp", XMPP_ROOM, "bob", "alice", J, J, True), "forbidden")
    assert await queued(bench) == []


async def test_leaves_kicks_and_bans_that_count(bench: AuthzBench) -> None:
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    # a member leaving the room (no role needed), a moderator's kick on Matrix (an
    # invited member counts as in the room), a moderator's ban on XMPP
    reply = await bench.hub.network_event(event("xmpp", XMPP_ROOM, "bob", "bob", J, N))
    assert reply.ok and reply.seq
    reply = await bench.hub.network_event(event("matrix", MATRIX_ROOM, "carol", "eve", INV, N,
                                                True))
    assert reply.ok and reply.seq
    assert await queued(bench) == ["hub", "hub"]
    # a stranger to the group: the room event is real, but there is no leaf to remove
    reply = await bench.hub.network_event(event("xmpp", XMPP_ROOM, "mallory", "alice", J, B,
                                                True))
    assert (reply.ok, reply.code) == (False, "not-member")
