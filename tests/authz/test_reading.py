"""Reading a group (docs/SECURITY.md A13, A14): its log and its GroupInfo, tried as a
stranger who knows the group id (it is public: the Matrix room's
``im.mlsbridge.group`` state names it), as a member, and from the other network."""

from __future__ import annotations

from bridge.hub.policy import JoinPolicy
from mls.codec import encode
from mls.group.group import Group
from mls.messages.framing import MLSMessage
from tests.authz.conftest import MATRIX_ROOM, XMPP_ROOM, AuthzBench, who
from tests.mls.fixtures import NOW
from transports.interface import Op, Role


async def test_knowing_a_group_id_grants_nothing(bench: AuthzBench) -> None:
    """A13, A14, A16, A12: a stranger of either network who knows the group id reads
    nothing, claims nothing, sends nothing."""
    await bench.accepted(bench.request(Op.PUBLISH_KEY_PACKAGE, "alice", payload=encode(
        MLSMessage.wrap(bench.bundle("alice").key_package))))
    _, message = bench.groups["alice"].encrypt(b"secret", rng=bench.draw)
    for name in ("mallory", "eve"):
        await bench.refused(bench.request(Op.FETCH_LOG, name, group_id=bench.group_id),
                            "not-member")
        await bench.refused(bench.request(Op.GET_GROUP_INFO, name, group_id=bench.group_id),
                            "join-policy")
        await bench.refused(bench.request(Op.CLAIM_KEY_PACKAGE, name, group_id=bench.group_id,
                                          target=who("alice"), cipher_suite=1), "not-member")
        await bench.refused(bench.request(Op.SEND, name, group_id=bench.group_id,
                                          payload=encode(message)), "not-member")


async def test_members_read_the_log_from_the_epoch_they_joined(bench: AuthzBench) -> None:
    """A13: members of either network read the log; a newcomer gets the entries of
    earlier epochs as placeholders only (seq and epoch, no ciphertext, no sender)."""
    _, early = bench.groups["carol"].encrypt(b"before eve", rng=bench.draw)
    await bench.accepted(bench.request(Op.SEND, "carol", group_id=bench.group_id,
                                       payload=encode(early)))
    eve = await bench.from_directory("eve", "alice")
    staged = bench.groups["alice"].commit(rng=bench.draw, now=NOW, add=[eve.key_package])
    await bench.commit("alice", staged)
    _, late = bench.groups["bob"].encrypt(b"with eve", rng=bench.draw)
    await bench.accepted(bench.request(Op.SEND, "bob", group_id=bench.group_id,
                                       payload=encode(late)))
    log = {name: (await bench.accepted(bench.request(Op.FETCH_LOG, name,
                                                     group_id=bench.group_id))).entries
           for name in ("alice", "carol", "eve")}
    # alice created the group (epoch 0); carol was added by the commit of epoch 0 (seq
    # 1) and reads from epoch 1; eve was added by the commit of epoch 1 (seq 3)
    assert [(e.seq, bool(e.payload)) for e in log["alice"]] == [(1, True), (2, True),
                                                                (3, True), (4, True)]
    assert [(e.seq, bool(e.payload)) for e in log["carol"]] == [(1, False), (2, True),
                                                                (3, True), (4, True)]
    assert [(e.seq, e.epoch, bool(e.payload), e.sender) for e in log["eve"]] == [
        (1, 0, False, ""), (2, 1, False, ""), (3, 1, False, ""), (4, 2, True, who("bob"))]
    await bench.refused(bench.request(Op.FETCH_LOG, "mallory", group_id=bench.group_id),
                        "not-member")


async def test_group_info_follows_the_join_policy(bench: AuthzBench) -> None:
    """A14: members always; under "room", members of the group's rooms on their own
    network; under "open", anyone."""
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM), join=JoinPolicy.ROOM)
    for name in ("alice", "carol"):
        await bench.accepted(bench.request(Op.GET_GROUP_INFO, name, group_id=bench.group_id))
    for name in ("mallory", "eve"):
        await bench.refused(bench.request(Op.GET_GROUP_INFO, name, group_id=bench.group_id),
                            "join-policy")
    bench.role("xmpp", XMPP_ROOM, "mallory", Role.MEMBER)
    bench.rooms["xmpp"].set_role(XMPP_ROOM, who("eve"), Role.MEMBER)  # not her network
    await bench.accepted(bench.request(Op.GET_GROUP_INFO, "mallory", group_id=bench.group_id))
    await bench.refused(bench.request(Op.GET_GROUP_INFO, "eve", group_id=bench.group_id),
                        "join-policy")
    bench.role("matrix", MATRIX_ROOM, "eve", Role.MEMBER)
    await bench.accepted(bench.request(Op.GET_GROUP_INFO, "eve", group_id=bench.group_id))


async def test_open_groups_and_the_strictest_room(bench: AuthzBench) -> None:
    """A11/A14: "open" admits anyone; a group whose rooms disagree follows the strictest
    (an unconfigured room counts as hub.default_join)."""
    bench.set_default_join(JoinPolicy.OPEN)
    reply = await bench.accepted(bench.request(Op.GET_GROUP_INFO, "eve",
                                               group_id=bench.group_id))
    joined, commit = Group.join_external(
        reply.payload, credential=bench.bundle("eve").key_package.leaf_node.credential,
        signature_priv=bench.person("eve").signature_priv(), rng=bench.draw, now=NOW)
    await bench.attach(("xmpp", XMPP_ROOM), configured=False)  # default_join: open
    await bench.attach(("matrix", MATRIX_ROOM), join=JoinPolicy.INVITE)
    request = bench.request(Op.SUBMIT_COMMIT, "eve", group_id=bench.group_id,
                            payload=encode(commit),
                            group_info=encode(MLSMessage.wrap(joined.group_info())))
    await bench.refused(request, "join-policy")
    await bench.attach(("matrix", MATRIX_ROOM), join=JoinPolicy.OPEN)
    await bench.accepted(request)
