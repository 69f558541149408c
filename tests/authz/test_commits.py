"""Commits and proposals (docs/SECURITY.md A6-A12), each tried as a stranger, as a
plain member and from the other network, over the in-memory bench: the group's rooms
are an XMPP room (alice moderates it, bob is a member) and a Matrix room."""

from __future__ import annotations

import dataclasses

from bridge.hub.policy import JoinPolicy
from mls.codec import encode
from mls.enums import LeafNodeSource, WireFormat
from mls.group.commit import create_proposal
from mls.group.config import GroupConfig
from mls.group.group import Group
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage
from mls.messages.proposals import GroupContextExtensions, Update
from tests.authz.conftest import MATRIX_ROOM, XMPP_ROOM, AuthzBench, who
from tests.mls.fixtures import NOW
from transports.interface import Inbound, Op, Role

BOB, CAROL = 1, 2  # leaf indexes


async def rooms(bench: AuthzBench) -> None:
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    bench.role("xmpp", XMPP_ROOM, "alice", Role.MODERATOR)
    bench.role("xmpp", XMPP_ROOM, "bob", Role.MEMBER)
    bench.role("matrix", MATRIX_ROOM, "carol", Role.MEMBER)


async def test_only_the_committer_submits_its_commit(bench: AuthzBench) -> None:
    """A6: a commit is submitted by the identity of its committing leaf."""
    staged = bench.groups["alice"].commit(rng=bench.draw, force_path=True)
    for name in ("mallory", "eve", "bob", "carol"):
        await bench.refused(bench.commit_request(name, staged), "not-member")
    await bench.commit("alice", staged)


async def test_any_member_adds(bench: AuthzBench) -> None:
    """A7: adding needs membership only (join policy "invite": members add people)."""
    await rooms(bench)
    newcomer = await bench.from_directory("eve", "bob")
    staged = bench.groups["bob"].commit(rng=bench.draw, now=NOW, add=[newcomer.key_package])
    await bench.refused(bench.commit_request("mallory", staged), "not-member")
    await bench.commit("bob", staged)


async def test_removing_others_needs_a_moderator_of_an_attached_room(
        bench: AuthzBench) -> None:
    """A8 (finding: anyone could remove anyone): a plain member may not remove another
    identity; a moderator of any of the group's rooms may, from either network."""
    await rooms(bench)
    # a moderator of a room that is not the group's is nobody here
    bench.role("xmpp", "elsewhere@mls.example.org", "bob", Role.ADMIN)
    for name, leaf in (("bob", CAROL), ("carol", BOB)):
        staged = bench.groups[name].commit(rng=bench.draw, remove=[leaf])
        await bench.refused(bench.commit_request(name, staged), "not-moderator")
    # carol moderates the Matrix room: she removes bob, an XMPP member
    bench.role("matrix", MATRIX_ROOM, "carol", Role.MODERATOR)
    await bench.commit("carol", bench.groups["carol"].commit(rng=bench.draw, remove=[BOB]))
    assert not bench.groups["bob"].active


async def test_in_a_room_less_group_every_member_removes(bench: AuthzBench) -> None:
    """A8: a group with no room has no roles (RFC 9750 §4: MLS lets every member do
    everything); strangers still may not."""
    staged = bench.groups["bob"].commit(rng=bench.draw, remove=[CAROL])
    await bench.refused(bench.commit_request("mallory", staged), "not-member")
    await bench.commit("bob", staged)


async def test_covering_the_hubs_removes_needs_no_role(bench: AuthzBench) -> None:
    """A8: the hub's queued Remove (a network leave) is committed by any member."""
    await rooms(bench)
    await bench.accepted(bench.request(Op.LEAVE, "carol", group_id=bench.group_id))
    (queued,) = await bench.store.queued_proposals(bench.group_id, 1)
    for name in ("alice", "bob", "carol"):
        bench.groups[name], _ = bench.groups[name].process(queued.payload, now=NOW)
    await bench.commit("bob", bench.groups["bob"].commit(rng=bench.draw))
    assert [m.identity for m in await bench.store.get_members(bench.group_id)] == [
        who("alice"), who("bob")]


async def test_group_context_changes_need_a_moderator(bench: AuthzBench) -> None:
    """A9: GroupContextExtensions (here: the same extensions again, the hub's
    external_senders kept) by a plain member are refused; by a moderator accepted."""
    await rooms(bench)
    change = GroupContextExtensions(bench.groups["alice"].state.context.extensions)
    for name in ("bob", "carol"):
        staged = bench.groups[name].commit(rng=bench.draw, proposals=[change])
        await bench.refused(bench.commit_request(name, staged), "not-moderator")
    await bench.commit("alice", bench.groups["alice"].commit(rng=bench.draw,
                                                             proposals=[change]))


async def test_external_joins_follow_the_join_policy(bench: AuthzBench) -> None:
    """A11 (finding: anyone who learned a group id joined by external commit and read
    the next message): "invite" lets nobody in; "room" lets a member of one of the
    group's rooms in, on its own network only; "open" anyone; a member resyncing its
    own identity always may."""
    await bench.attach(("xmpp", XMPP_ROOM), join=JoinPolicy.INVITE)

    def external(name: str, group: Group | None = None) -> tuple[Group, MLSMessage]:
        bundle = bench.bundle(name)
        source = group or bench.groups["alice"]
        return Group.join_external(
            MLSMessage.wrap(source.group_info()), credential=bundle.key_package.leaf_node
            .credential, signature_priv=bench.person(name).signature_priv(),
            rng=bench.draw, now=NOW)

    def join_request(name: str, joined: Group, commit: MLSMessage) -> Inbound:
        return bench.request(Op.SUBMIT_COMMIT, name, group_id=bench.group_id,
                             payload=encode(commit),
                             group_info=encode(MLSMessage.wrap(joined.group_info())))

    for name in ("mallory", "eve"):
        joined, commit = external(name)
        await bench.refused(join_request(name, joined, commit), "join-policy")
    # "room": mallory is a member of the XMPP room; eve is not (and may not be: a
    # Matrix identity holds no role in an XMPP room, whatever the directory says)
    await bench.attach(("xmpp", XMPP_ROOM), join=JoinPolicy.ROOM)
    bench.role("xmpp", XMPP_ROOM, "mallory", Role.MEMBER)
    bench.rooms["xmpp"].set_role(XMPP_ROOM, who("eve"), Role.MEMBER)
    joined, commit = external("eve")
    await bench.refused(join_request("eve", joined, commit), "join-policy")
    joined, commit = external("mallory")
    await bench.accepted(join_request("mallory", joined, commit))
    bench.groups["mallory"] = joined
    for name in ("alice", "bob", "carol"):
        bench.groups[name], _ = bench.groups[name].process(commit, now=NOW)


async def test_resync_is_always_allowed(bench: AuthzBench) -> None:
    """A11: a member replacing its own leaf joins by external commit under "invite"."""
    bundle = bench.bundle("bob")
    old = bench.groups["bob"]
    joined, commit = Group.join_external(
        MLSMessage.wrap(bench.groups["alice"].group_info()),
        credential=bundle.key_package.leaf_node.credential,
        signature_priv=bench.person("bob").signature_priv(), rng=bench.draw,
        resync_leaf=old.own_leaf, now=NOW)
    await bench.accepted(bench.request(Op.SUBMIT_COMMIT, "bob", group_id=bench.group_id,
                                       payload=encode(commit),
                                       group_info=encode(MLSMessage.wrap(joined.group_info()))))


async def test_proposals_follow_the_same_rules(bench: AuthzBench) -> None:
    """A12: only members send; a Remove of another identity or a GroupContextExtensions
    proposal needs a moderator; a member may propose its own removal; proposals are
    PublicMessages (the hub judges what it sees)."""
    await rooms(bench)

    def send(name: str, message: MLSMessage) -> Inbound:
        return bench.request(Op.SEND, name, group_id=bench.group_id, payload=encode(message))

    _, message = bench.groups["alice"].encrypt(b"hello", rng=bench.draw)
    for name in ("mallory", "eve"):
        await bench.refused(send(name, message), "not-member")
    _, remove_carol = bench.groups["bob"].propose_remove(CAROL, rng=bench.draw)
    await bench.refused(send("bob", remove_carol), "not-moderator")
    _, change = bench.groups["carol"].propose_group_context_extensions(
        bench.groups["carol"].state.context.extensions, rng=bench.draw)
    await bench.refused(send("carol", change), "not-moderator")
    private_bob = Group(dataclasses.replace(
        bench.groups["bob"].state,
        config=GroupConfig(handshake_wire_format=WireFormat.PRIVATE_MESSAGE)))
    _, hidden = private_bob.propose_remove(BOB, rng=bench.draw)
    await bench.refused(send("bob", hidden), "private-proposal")
    _, leaving = bench.groups["bob"].propose_remove(BOB, rng=bench.draw)
    await bench.accepted(send("bob", leaving))
    _, remove_bob = bench.groups["alice"].propose_remove(BOB, rng=bench.draw)
    await bench.accepted(send("alice", remove_bob))


async def test_an_update_keeps_its_identity(bench: AuthzBench) -> None:
    """A10: an Update proposal whose new leaf names another identity (signed by the
    member's own key) is refused; the member's honest Update is followed."""
    bob = bench.groups["bob"].state
    private, public = bob.cs.generate_hpke_key_pair(bench.draw)
    unsigned = bob.own_leaf_node().replace(
        encryption_key=public, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None,
        parent_hash=b"", signature=b"", credential=Credential.basic(who("mallory").encode()))
    signature = bob.cs.sign_with_label(bob.signature_priv, b"LeafNodeTBS",
                                       unsigned.tbs_bytes(bob.group_id, bob.own_leaf))
    _, renamed = create_proposal(bob, Update(unsigned.replace(signature=signature)),
                                 rng=bench.draw, new_keys={public: private})
    await bench.refused(bench.request(Op.SEND, "bob", group_id=bench.group_id,
                                      payload=encode(renamed)), "forbidden")
    _, honest = bench.groups["bob"].propose_update(rng=bench.draw)
    await bench.accepted(bench.request(Op.SEND, "bob", group_id=bench.group_id,
                                       payload=encode(honest)))


async def test_whose_decision_a_removal_is(bench: AuthzBench) -> None:
    """A8 by reference: a moderator's Remove proposal may be committed by any member
    (the decision is the proposer's); the proposer's role is checked again when the
    commit comes (a moderator who lost the role in between decides nothing)."""
    await rooms(bench)
    _, proposal = bench.groups["alice"].propose_remove(CAROL, rng=bench.draw)
    await bench.accepted(bench.request(Op.SEND, "alice", group_id=bench.group_id,
                                       payload=encode(proposal)))
    for name in ("alice", "bob", "carol"):
        bench.groups[name], _ = bench.groups[name].process(proposal, now=NOW)
    staged = bench.groups["bob"].commit(rng=bench.draw)
    bench.role("xmpp", XMPP_ROOM, "alice", Role.MEMBER)  # alice is no moderator now
    await bench.refused(bench.commit_request("bob", staged), "not-moderator")
    bench.role("xmpp", XMPP_ROOM, "alice", Role.MODERATOR)
    await bench.commit("bob", staged)
    assert [m.identity for m in await bench.store.get_members(bench.group_id)] == [
        who("alice"), who("bob")]
