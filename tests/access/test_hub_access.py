"""Access control at the hub (through :meth:`Hub.handle`, as every transport calls it).

Rules tested here:

* Commits: only a member of the group may submit a member commit (``not-member``);
  an external commit follows the group's join policy (``join-policy`` under the
  default ``invite``) and its leaf must name the sender (``forbidden``).
* KeyPackage claims name the group they add the target to (``malformed`` without
  one) and may only be made by a current member of that group (``not-member``; an
  unknown group is ``unknown-group``). Publishing and listing are only for one's own
  identity (``forbidden``).
* Log, GroupInfo and sending: members only (GroupInfo also for those the join policy
  lets in); a member removed from the group loses all of it. Attaching a room is not
  a client operation (``forbidden``).

The full model, operation by operation, is tested in ``tests/authz``.
"""

from __future__ import annotations

import random
from pathlib import Path

from mls.codec import encode
from mls.messages.framing import MLSMessage
from tests.hostile.conftest import NOW, Bench, bundle, identity
from transports.interface import Inbound, Op


async def _publish(bench: Bench, name: str, seed: int) -> None:
    held = bundle(name, random.Random(seed))
    await bench.accepted(Inbound(Op.PUBLISH_KEY_PACKAGE, identity(name),
                                 payload=encode(MLSMessage.wrap(held.key_package))))


async def test_key_package_claims(bench: Bench) -> None:
    await _publish(bench, "dave", 1)
    await _publish(bench, "dave", 2)

    def claim(sender: str, group_id: bytes) -> Inbound:
        return Inbound(Op.CLAIM_KEY_PACKAGE, sender, group_id=group_id,
                       target=identity("dave"), cipher_suite=1)

    # A non-member may not claim for the group; nothing is consumed.
    await bench.refused(claim(identity("mallory"), bench.group_id), "not-member")
    reply = await bench.ask(claim(identity("mallory"), b"\x09" * 32))
    assert not reply.ok and reply.code == "unknown-group"
    reply = await bench.ask(claim(identity("mallory"), b""))
    assert not reply.ok and reply.code == "malformed"
    reply = await bench.ask(Inbound(Op.LIST_KEY_PACKAGES, identity("mallory"),
                                    target=identity("dave")))
    assert not reply.ok and reply.code == "forbidden"
    listed = await bench.ask(Inbound(Op.LIST_KEY_PACKAGES, identity("dave")))
    assert len(listed.key_packages) == 2
    # Members may, naming their group.
    reply = await bench.accepted(claim(identity("bob"), bench.group_id))
    assert reply.payload and reply.sender == identity("dave")
    reply = await bench.accepted(claim(identity("carol"), bench.group_id))
    assert reply.payload
    listed = await bench.ask(Inbound(Op.LIST_KEY_PACKAGES, identity("dave")))
    assert listed.key_packages == ()


async def test_publishing_for_someone_else_is_forbidden(bench: Bench) -> None:
    held = bundle("dave", random.Random(3))
    reply = await bench.ask(Inbound(
        Op.PUBLISH_KEY_PACKAGE, identity("mallory"),
        payload=encode(MLSMessage.wrap(held.key_package))))
    assert not reply.ok and reply.code == "forbidden"


async def test_only_members_commit_read_and_send(bench: Bench) -> None:
    alice = bench.groups["alice"]
    staged = alice.commit(rng=bench.draw, force_path=True)
    await bench.refused(bench.commit_request(identity("mallory"), staged), "not-member")
    await bench.refused(bench.commit_request(identity("bob"), staged), "not-member")
    _, message = alice.encrypt(b"hi", rng=bench.draw)
    await bench.refused(bench.send_request(identity("mallory"), message), "not-member")
    await bench.refused(Inbound(Op.FETCH_LOG, identity("mallory"), group_id=bench.group_id),
                        "not-member")
    await bench.refused(Inbound(Op.ATTACH_ROOM, identity("mallory"), group_id=bench.group_id,
                                transport="xmpp", room_id="r@mls.example.org"), "forbidden")
    # Carol removed: the same requests from her are refused from then on.
    removal = alice.commit(rng=bench.draw, remove=[2])
    await bench.commit("alice", removal, "bob")
    await bench.refused(Inbound(Op.FETCH_LOG, identity("carol"), group_id=bench.group_id),
                        "not-member")
    await bench.refused(Inbound(Op.CLAIM_KEY_PACKAGE, identity("carol"),
                                group_id=bench.group_id, target=identity("bob"),
                                cipher_suite=1), "not-member")


async def test_external_join_policy(tmp_path: Path) -> None:
    from bridge.hub import HubConfig
    from bridge.hub.policy import JoinPolicy
    from mls.group.group import Group
    from tests.hostile.conftest import three_member_bench

    async for bench in three_member_bench(tmp_path):
        await bench.refused(Inbound(Op.GET_GROUP_INFO, identity("eve"),
                                    group_id=bench.group_id), "join-policy")
        eve = bundle("eve", random.Random(4))
        info = bench.groups["alice"].group_info()
        joined, commit = Group.join_external(
            MLSMessage.wrap(info), credential=eve.key_package.leaf_node.credential,
            signature_priv=eve.signature_priv, rng=bench.draw, now=NOW)
        request = Inbound(Op.SUBMIT_COMMIT, identity("eve"), group_id=bench.group_id,
                          payload=encode(commit),
                          group_info=encode(MLSMessage.wrap(joined.group_info())))
        await bench.refused(request, "join-policy")
        # Someone else submitting Eve's external commit: the leaf names another user.
        bench.hub.config = HubConfig(default_join=JoinPolicy.OPEN)
        await bench.refused(Inbound(Op.SUBMIT_COMMIT, identity("mallory"),
                                    group_id=bench.group_id, payload=request.payload,
                                    group_info=request.group_info), "forbidden")
        await bench.accepted(request)
