"""The hub verifies every commit against its own state of the group (an mls
PublicGroup) and trusts nothing a committer hands it about the new epoch: not the
GroupInfo, not the tree, not the Welcome. Each refusal has a specific code and leaves
the group's row, log, queue and members as they were (SECURITY.md A6, A9, "The hub
verifies what it relays")."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.hub import Hub
from bridge.hub.public_view import state_bytes
from bridge.hub.removals import KICK, Removal, room_of
from bridge.hub.store import LogKind
from mls import (
    Extension,
    ExtensionType,
    GroupContextExtensions,
    GroupInfo,
    MLSMessage,
    PublicGroup,
    Welcome,
    Writer,
    encode,
)
from mls.framing.welcome import sign_group_info
from mls.group.group import Group
from tests.hostile.conftest import KICK_ROOM, NOW, Bench, bundle, identity, three_member_bench
from transports.interface import Inbound, Kind, Op


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async for value in three_member_bench(tmp_path):
        yield value


def resigned(group: Group, info: GroupInfo, **changes: object) -> bytes:
    """``info`` with ``changes``, signed again by ``group``'s member: valid but lying."""
    unsigned = info.replace(signature=b"", **changes)  # type: ignore[arg-type]
    return encode(MLSMessage.wrap(sign_group_info(group.state.cs, group.state.signature_priv,
                                                  unsigned)))


def in_step(bench: Bench, *names: str) -> None:
    groups = [bench.groups[name] for name in names]
    assert len({group.epoch_authenticator() for group in groups}) == 1


async def test_dropping_the_hub_from_external_senders_is_refused(bench: Bench) -> None:
    """The divergence attack: a GroupContextExtensions commit drops the hub while the
    GroupInfo handed to the hub is re-signed to still list it. The hub computes the
    new context itself, refuses both versions, and can still remove people."""
    alice = bench.groups["alice"]
    hub_senders = next(ext for ext in alice.state.context.extensions
                       if ext.extension_type == ExtensionType.EXTERNAL_SENDERS)
    staged = alice.commit(rng=bench.draw, proposals=[GroupContextExtensions(())])
    honest = staged.group_info
    assert honest.group_context.extensions == ()
    lying = resigned(alice, honest, group_context=dataclasses.replace(
        honest.group_context, extensions=(hub_senders,)))
    for info in (encode(MLSMessage.wrap(honest)), lying):
        reply = await bench.refused(bench.commit_request(identity("alice"), staged,
                                                         group_info=info), "invalid-commit")
        assert "external_senders" in reply.reason

    # The members carry on in the hub's epoch, and the hub still removes people.
    staged = bench.groups["bob"].commit(rng=bench.draw, force_path=True)
    await bench.commit("bob", staged, "alice", "carol")
    kick = await bench.kick("carol")
    assert kick.ok and kick.seq
    proposal = bench.deliverer.delivered[-1]
    for name in ("alice", "bob"):
        bench.groups[name], event = bench.groups[name].process(proposal.payload, now=NOW)
    assert Removal.decode(event.authenticated_data) == Removal(  # type: ignore[union-attr]
        KICK, identity("moderator"), room_of("xmpp", KICK_ROOM))
    staged = bench.groups["alice"].commit(rng=bench.draw)
    await bench.commit("alice", staged, "bob")
    in_step(bench, "alice", "bob")
    members = await bench.store.get_members(bench.group_id)
    assert [m.identity for m in members] == [identity("alice"), identity("bob")]


@pytest.mark.parametrize("field", ["epoch", "tree_hash", "confirmed_transcript_hash",
                                   "extensions", "group_id", "confirmation_tag", "signer",
                                   "ratchet_tree", "signature", "missing", "not a GroupInfo"])
async def test_a_group_info_unlike_the_computed_state_is_refused(bench: Bench,
                                                                 field: str) -> None:
    bob, carol = bench.groups["bob"], bench.groups["carol"]
    staged = bob.commit(rng=bench.draw, force_path=True)
    info, context = staged.group_info, staged.group_info.group_context
    other_tree = Extension(ExtensionType.RATCHET_TREE, bob.ratchet_tree())
    lies = {
        "epoch": lambda: resigned(bob, info, group_context=dataclasses.replace(
            context, epoch=context.epoch + 1)),
        "tree_hash": lambda: resigned(bob, info, group_context=dataclasses.replace(
            context, tree_hash=bytes(32))),
        "confirmed_transcript_hash": lambda: resigned(bob, info, group_context=dataclasses
                                                      .replace(context,
                                                               confirmed_transcript_hash=bytes(32))),
        "extensions": lambda: resigned(bob, info, group_context=dataclasses.replace(
            context, extensions=(*context.extensions, Extension(0xFF01, b"x")))),
        "group_id": lambda: resigned(bob, info, group_context=dataclasses.replace(
            context, group_id=b"another group")),
        "confirmation_tag": lambda: resigned(bob, info, confirmation_tag=bytes(32)),
        "signer": lambda: resigned(carol, info, signer=int(carol.own_leaf)),
        "ratchet_tree": lambda: resigned(bob, info, extensions=(other_tree,)),
        "signature": lambda: encode(MLSMessage.wrap(info.replace(signature=bytes(64)))),
        "missing": lambda: b"",
        "not a GroupInfo": lambda: encode(staged.message),
    }
    code = {"signature": "bad-signature", "missing": "malformed",
            "not a GroupInfo": "malformed"}.get(field, "invalid-commit")
    await bench.refused(bench.commit_request(identity("bob"), staged, group_info=lies[field]()),
                        code)
    await bench.commit("bob", staged, "alice", "carol")  # the true one is accepted
    in_step(bench, "alice", "bob", "carol")


async def test_the_submitted_tree_is_never_taken(bench: Bench) -> None:
    bob = bench.groups["bob"]
    staged = bob.commit(rng=bench.draw, force_path=True)
    for tree in (bob.ratchet_tree(), b"\x01\x02", staged.state.tree.to_bytes()[:-1]):
        await bench.refused(bench.commit_request(identity("bob"), staged, ratchet_tree=tree),
                            "invalid-commit")
    await bench.accepted(bench.commit_request(identity("bob"), staged,
                                              ratchet_tree=staged.state.tree.to_bytes()))
    record = await bench.store.get_group(bench.group_id)
    assert record.ratchet_tree == staged.state.tree.to_bytes()


async def test_the_welcome_must_name_exactly_the_added_key_packages(bench: Bench) -> None:
    rng = random.Random(11)
    dave, erin = bundle("dave", rng), bundle("erin", rng)
    await bench.publish("dave", dave)
    await bench.publish("erin", erin)
    alice = bench.groups["alice"]
    staged = alice.commit(rng=bench.draw, add=[dave.key_package, erin.key_package], now=NOW)
    assert staged.welcome is not None and isinstance(staged.welcome.body, Welcome)
    welcome = staged.welcome.body
    first, second = welcome.secrets
    stranger = dataclasses.replace(first, new_member=bytes(32))
    wrong = [b"",
             dataclasses.replace(welcome, secrets=(first,)),
             dataclasses.replace(welcome, secrets=(first, second, stranger)),
             dataclasses.replace(welcome, secrets=(first, stranger)),
             dataclasses.replace(welcome, secrets=(first, first))]
    for value in wrong:
        payload = value if isinstance(value, bytes) else encode(MLSMessage.wrap(value))
        await bench.refused(bench.commit_request(identity("alice"), staged, welcome=payload),
                            "invalid-commit")
    plain = alice.commit(rng=bench.draw, force_path=True)
    await bench.refused(bench.commit_request(identity("alice"), plain,
                                             welcome=encode(staged.welcome)), "invalid-commit")
    await bench.refused(bench.commit_request(identity("alice"), staged,
                                             welcome=encode(staged.message)), "malformed")
    delivered = len(bench.deliverer.delivered)
    await bench.commit("alice", staged, "bob", "carol")
    welcomes = [d for d in bench.deliverer.delivered[delivered:] if d.kind == Kind.WELCOME]
    assert [d.recipients for d in welcomes] == [(identity("dave"),), (identity("erin"),)]
    assert {d.payload for d in welcomes} == {encode(staged.welcome)}
    for name, joiner in (("dave", dave), ("erin", erin)):
        bench.groups[name] = Group.join(welcomes[0].payload, joiner, now=NOW)
    in_step(bench, "alice", "bob", "carol", "dave", "erin")


async def test_proposals_by_reference_resolve_across_a_restart(bench: Bench) -> None:
    """A member's PublicMessage proposal and the hub's own Remove are followed by the
    hub, so a commit covering both by reference is verified -- also by a restarted hub
    that rebuilds the epoch's proposals from the log. A proposal the hub cannot read
    (PrivateMessage) is refused."""
    bob, carol = bench.groups["bob"], bench.groups["carol"]
    bob, update = bob.propose_update(rng=bench.draw)
    bench.groups["bob"] = bob
    await bench.accepted(bench.send_request(identity("bob"), update))
    kicked = await bench.kick("carol")
    assert kicked.ok
    hub_remove = bench.deliverer.delivered[-1].payload
    private = Group(carol.state.replace(config=dataclasses.replace(
        carol.state.config, handshake_wire_format=2)))  # WireFormat.PRIVATE_MESSAGE
    _, hidden = private.propose_update(rng=bench.draw)
    await bench.refused(bench.send_request(identity("carol"), hidden), "private-proposal")

    bench.hub = Hub(bench.store, bench.hub.identity, bench.deliverer, clock=lambda: NOW)
    alice = bench.groups["alice"]
    for message in (update, hub_remove):
        alice, _ = alice.process(message, now=NOW)
    bench.groups["alice"] = alice
    bench.groups["bob"], _ = bench.groups["bob"].process(hub_remove, now=NOW)
    staged = alice.commit(rng=bench.draw)
    await bench.commit("alice", staged, "bob")
    assert len(staged.event.removed) == 1 and len(staged.event.updated) == 2
    in_step(bench, "alice", "bob")


async def test_a_version_1_hub_state_is_read_and_rewritten(bench: Bench,
                                                           tmp_path: Path) -> None:
    """A database of the hub before PublicGroup: hub_state held the GroupContext and
    confirmation tag (version 1), the tree its own column. A restarted hub reads it,
    with the epoch's queued proposals, and the next commit writes version 2."""
    assert (await bench.kick("carol")).ok
    record = await bench.store.get_group(bench.group_id)
    current = PublicGroup.from_bytes(record.hub_state[1:])
    w = Writer()
    w.u8(1)
    current.context.encode(w)
    w.opaque(current.confirmation_tag)
    with sqlite3.connect(tmp_path / "hub.db") as db:
        db.execute("UPDATE groups SET hub_state = ? WHERE group_id = ?",
                   (w.getvalue(), bench.group_id))
    bench.hub = Hub(bench.store, bench.hub.identity, bench.deliverer, clock=lambda: NOW)
    info = await bench.accepted(Inbound(Op.GET_GROUP_INFO, identity("bob"),
                                        group_id=bench.group_id))
    assert info.epoch == current.epoch
    hub_remove = bench.deliverer.delivered[-1].payload
    for name in ("alice", "bob"):
        bench.groups[name], _ = bench.groups[name].process(hub_remove, now=NOW)
    staged = bench.groups["bob"].commit(rng=bench.draw)
    await bench.commit("bob", staged, "alice")
    record = await bench.store.get_group(bench.group_id)
    assert record.hub_state[0] == 2 and record.epoch == current.epoch + 1
    upgraded = PublicGroup.from_bytes(record.hub_state[1:])
    assert record.hub_state == state_bytes(upgraded)
    assert upgraded.context.to_bytes() == bench.groups["bob"].state.context.to_bytes()
    log = await bench.store.log_since(bench.group_id, 0, 100)
    assert [entry.kind for entry in log][-2:] == [LogKind.PROPOSAL, LogKind.COMMIT]
