"""A hostile member of a bridged group -- ``mallory``, added like anyone else, holding
no role in the group's rooms -- attacks it over her own network (each attack once from
XMPP, once from Matrix), through the real Prosody and Synapse. Each attack is refused
with the code docs/SECURITY.md gives, the hub's state of the group is unchanged, and
the honest members carry on (docs/ATTACKS.md tabulates them)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from bridge.app.services.bridge import BridgeService
from bridge.credentials import CertificateAuthority
from bridge.devservers.prosody import ProsodyServer
from bridge.hub import faults
from bridge.hub.policy import JoinPolicy
from mls import MLSMessage, PublicMessage, StagedCommit, encode
from mls.crypto import suite
from mls.enums import ExtensionType, LeafNodeSource, WireFormat
from mls.group.group import Group
from mls.group.key_package import create_key_package
from mls.messages.credentials import Credential
from mls.messages.proposals import GroupContextExtensions, Update
from tests.attacks.conftest import (
    NETWORKS,
    Scene,
    ask,
    bridged_scene,
    external_join,
    hub_state,
)
from tests.bridge.test_hub_verifies import resigned
from tests.bridging.conftest import Person, converge, in_group, roster, until
from transports.interface import Op

CS = suite(1)


def now() -> int:
    return int(time.time())


async def scene_with(service: BridgeService, people: Any, prosody: ProsodyServer,
                     network: str, **options: Any) -> Scene:
    scene = await bridged_scene(service, people, prosody, hostile=network, **options)
    await converge(scene.members, scene.group_id)
    return scene


def group_of(person: Person, scene: Scene) -> Group:
    return person.member.group(scene.group_id)


def leaf_of(scene: Scene, identity: str) -> int:
    """The leaf index of ``identity`` in mallory's view of the group."""
    member = scene.attacker.member
    return next(int(index) for index, leaf in group_of(scene.attacker, scene).members()
                if member.trust.identity_of(leaf.credential) == identity)


def submit(person: Person, staged: StagedCommit, **fields: Any) -> Awaitable[Any]:
    """``staged`` as a submit-commit request over ``person``'s link (``fields``
    override the bundle's parts)."""
    bundle: dict[str, Any] = {
        "group_id": staged.group_info.group_context.group_id,
        "payload": encode(staged.message),
        "group_info": encode(MLSMessage.wrap(staged.group_info)),
        "welcome": encode(staged.welcome) if staged.welcome else b""}
    bundle.update(fields)
    return ask(person, Op.SUBMIT_COMMIT, **bundle)


async def refused(scene: Scene, attempt: Awaitable[Any], code: str) -> Any:
    """The attempt is refused with ``code`` and leaves the hub's group as it was."""
    before = await hub_state(scene.service, scene.group_id)
    reply = await attempt
    assert (reply.ok, reply.code) == (False, code), reply
    assert await hub_state(scene.service, scene.group_id) == before
    return reply


def renamed_update(group: Group, credential: Credential) -> MLSMessage:
    """An Update proposal whose leaf carries ``credential`` (signed by the sender)."""
    state = group.state
    _, public = state.cs.generate_hpke_key_pair(os.urandom)
    unsigned = state.own_leaf_node().replace(
        encryption_key=public, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None,
        parent_hash=b"", signature=b"", credential=credential)
    signature = state.cs.sign_with_label(state.signature_priv, b"LeafNodeTBS",
                                         unsigned.tbs_bytes(state.group_id, state.own_leaf))
    _, message = group.propose(Update(unsigned.replace(signature=signature)), rng=os.urandom)
    return message


# -- removing and steering others ------------------------------------------------------------

@NETWORKS
async def test_removing_another_member_by_commit_needs_a_moderator(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    staged = group_of(scene.attacker, scene).commit(
        rng=os.urandom, remove=[leaf_of(scene, scene.xb.identity)])
    await refused(scene, submit(scene.attacker, staged), "not-moderator")
    await scene.chat("xb is still here")


@NETWORKS
async def test_a_remove_proposal_by_a_non_moderator_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    _, proposal = group_of(scene.attacker, scene).propose_remove(
        leaf_of(scene, scene.ma.identity), rng=os.urandom)
    await refused(scene, ask(scene.attacker, Op.SEND, group_id=scene.group_id,
                             payload=encode(proposal)), "not-moderator")
    await scene.chat("ma is still here")


@NETWORKS
async def test_group_context_extensions_by_a_non_moderator_are_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """A GroupContextExtensions commit that keeps the hub (so only the role is at
    stake), by value and as a proposal."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    group = group_of(scene.attacker, scene)
    same = GroupContextExtensions(group.group_context.extensions)
    staged = group.commit(rng=os.urandom, proposals=[same])
    await refused(scene, submit(scene.attacker, staged), "not-moderator")
    _, proposal = group.propose(same, rng=os.urandom)
    await refused(scene, ask(scene.attacker, Op.SEND, group_id=scene.group_id,
                             payload=encode(proposal)), "not-moderator")
    await scene.chat("the context is the moderators'")


@NETWORKS
async def test_dropping_the_hub_from_external_senders_is_refused_over_the_wire(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """The divergence attack: a GroupContextExtensions commit without the hub, sent
    with its honest GroupInfo and with one re-signed to still list the hub."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    group = group_of(scene.attacker, scene)
    hub_senders = next(ext for ext in group.group_context.extensions
                       if ext.extension_type == ExtensionType.EXTERNAL_SENDERS)
    staged = group.commit(rng=os.urandom, proposals=[GroupContextExtensions(())])
    honest = staged.group_info
    lying = resigned(group, honest, group_context=dataclasses.replace(
        honest.group_context, extensions=(hub_senders,)))
    for info in (encode(MLSMessage.wrap(honest)), lying):
        reply = await refused(scene, submit(scene.attacker, staged, group_info=info),
                              "invalid-commit")
        assert "external_senders" in reply.reason
    await scene.chat("the hub still follows")


# -- identities ------------------------------------------------------------------------------

@NETWORKS
@pytest.mark.parametrize("claim", ["borrowed certificate", "basic credential"])
async def test_adding_a_leaf_that_claims_another_identity_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str, claim: str) -> None:
    """Mallory adds a KeyPackage of her own making, a key of hers under xb's identity:
    xb's X.509 certificate, or a basic credential naming xb."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    credential = scene.xb.member.credential if claim == "borrowed certificate" else \
        Credential.basic(scene.xb.identity.encode())
    second_key, _ = CS.generate_signature_key_pair(os.urandom)  # a key of her own
    planted = create_key_package(CS, credential, second_key, rng=os.urandom, now=now())
    staged = group_of(scene.attacker, scene).commit(rng=os.urandom,
                                                    add=[planted.key_package])
    await refused(scene, submit(scene.attacker, staged), "forbidden")
    await scene.chat("nobody speaks as xb but xb")


@NETWORKS
async def test_an_update_proposal_renaming_the_leaf_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    proposal = renamed_update(group_of(scene.attacker, scene),
                              Credential.basic(scene.xa.identity.encode()))
    await refused(scene, ask(scene.attacker, Op.SEND, group_id=scene.group_id,
                             payload=encode(proposal)), "forbidden")
    await scene.chat("xa is still xa")


@NETWORKS
async def test_a_commit_path_renaming_the_leaf_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    staged = group_of(scene.attacker, scene).commit(
        rng=os.urandom, force_path=True, credential=Credential.basic(scene.xa.identity.encode()))
    await refused(scene, submit(scene.attacker, staged), "forbidden")
    await scene.chat("xa is still xa")


@NETWORKS
@pytest.mark.parametrize("defect", ["expired", "other CA"])
async def test_a_defective_certificate_in_a_commit_path_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str, defect: str) -> None:
    """Mallory's commit path carries a certificate for her own identity and key that
    expired (one the hub issued her long ago) or that another CA issued."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    member = scene.attacker.member
    key = CS.signature_public_key(member._signature_priv)
    ca = bridge_service.identity.ca if defect == "expired" else \
        CertificateAuthority.generate("rogue", now=now(), rng=os.urandom)
    issued = now() - 10 * 86400 if defect == "expired" else now()
    credential = ca.issue(member.identity, 1, key, now=issued, validity=86400,
                          rng=os.urandom)
    staged = group_of(scene.attacker, scene).commit(rng=os.urandom, force_path=True,
                                                    credential=credential)
    await refused(scene, submit(scene.attacker, staged), "forbidden")
    await scene.chat("mallory's certificate stays the hub's")


@NETWORKS
async def test_an_external_commit_naming_another_identity_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """A basic credential naming xb, on a key of mallory's (not her leaf's)."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    second_key, _ = CS.generate_signature_key_pair(os.urandom)
    _, commit = Group.join_external(
        MLSMessage.wrap(group_of(scene.attacker, scene).group_info()),
        credential=Credential.basic(scene.xb.identity.encode()),
        signature_priv=second_key, rng=os.urandom, now=now())
    joined_info = b""  # refused before the GroupInfo is looked at
    await refused(scene, ask(scene.attacker, Op.SUBMIT_COMMIT, group_id=scene.group_id,
                             payload=encode(commit), group_info=joined_info), "forbidden")
    await scene.chat("xb has one leaf")


@NETWORKS
async def test_an_external_commit_removing_another_member_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """A 'resync' whose Remove names xb's leaf rather than mallory's own: the new
    leaf would replace xb's under another identity."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    group = group_of(scene.attacker, scene)
    await refused(scene, external_join(scene.attacker, scene.group_id, group.group_info(),
                                       ratchet_tree=group.state.tree,
                                       resync_leaf=leaf_of(scene, scene.xb.identity)),
                  "forbidden")
    await scene.chat("xb was not resynced away")


# -- commits that are not one's own ------------------------------------------------------------

@NETWORKS
async def test_another_members_commit_submitted_by_a_third_party_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Mallory got hold of a commit xa staged (not sent) and submits it as her own."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    staged = group_of(scene.xa, scene).commit(rng=os.urandom, force_path=True)
    await refused(scene, submit(scene.attacker, staged), "not-member")
    await scene.chat("xa's commit is xa's to send")


@NETWORKS
async def test_replaying_an_accepted_commit_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    seq = await scene.attacker.member.update(scene.group_id)
    await converge(scene.members, scene.group_id)
    accepted = next(entry for entry in await bridge_service.store.log_since(scene.group_id, 0, 100)
                if entry.seq == seq)
    record = await bridge_service.store.get_group(scene.group_id)
    await refused(scene, ask(scene.attacker, Op.SUBMIT_COMMIT, group_id=scene.group_id,
                             payload=accepted.payload, group_info=record.group_info or b""),
                  "wrong-epoch")
    await scene.chat("one epoch per commit")


@NETWORKS
async def test_a_commit_for_a_stale_epoch_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    stale = group_of(scene.attacker, scene).commit(rng=os.urandom, force_path=True)
    await scene.xa.member.update(scene.group_id)
    await converge(scene.members, scene.group_id)
    reply = await refused(scene, submit(scene.attacker, stale), "wrong-epoch")
    assert reply.epoch == group_of(scene.xa, scene).epoch
    await scene.chat("the hub orders one commit per epoch")


@NETWORKS
async def test_a_commit_carrying_someone_elses_welcome_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """xa staged the Add of a newcomer; mallory attaches its Welcome to a commit of
    her own (which adds nobody)."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    newcomer = await people(network, "newcomer")
    await newcomer.member.publish_key_packages(1)
    key_package = await scene.xa.member._claim(scene.group_id, newcomer.identity)
    theirs = group_of(scene.xa, scene).commit(rng=os.urandom, add=[key_package])
    assert theirs.welcome is not None
    own = group_of(scene.attacker, scene).commit(rng=os.urandom, force_path=True)
    await refused(scene, submit(scene.attacker, own, welcome=encode(theirs.welcome)),
                  "invalid-commit")
    assert not in_group(newcomer, scene.group_id)
    await scene.chat("the Welcome stayed unsent")


# -- proposals, leaving, reports --------------------------------------------------------------

@NETWORKS
async def test_a_proposal_as_a_private_message_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """A Remove proposal the hub could not read (a PrivateMessage)."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    group = group_of(scene.attacker, scene)
    config = dataclasses.replace(group.state.config,
                                 handshake_wire_format=WireFormat.PRIVATE_MESSAGE)
    hidden = Group(dataclasses.replace(group.state, config=config))
    _, proposal = hidden.propose_remove(leaf_of(scene, scene.xb.identity), rng=os.urandom)
    assert not isinstance(proposal.body, PublicMessage)
    await refused(scene, ask(scene.attacker, Op.SEND, group_id=scene.group_id,
                             payload=encode(proposal)), "private-proposal")
    await scene.chat("proposals stay visible")


@NETWORKS
async def test_a_leave_request_naming_another_member_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    scene = await scene_with(bridge_service, people, prosody_server, network)
    for target in (scene.xb.identity, scene.ma.identity):
        await refused(scene, ask(scene.attacker, Op.LEAVE, group_id=scene.group_id,
                                 target=target), "forbidden")
    await scene.chat("nobody left")


@NETWORKS
async def test_one_members_report_flood_convicts_nobody(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Mallory reports xa's honest commit again and again, with every reason: one
    report counts (of a quorum of two), the others are refused, xa stays."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    seq = await scene.xa.member.update(scene.group_id)
    await converge(scene.members, scene.group_id)
    before = await hub_state(bridge_service, scene.group_id)
    first = await ask(scene.attacker, Op.REPORT, group_id=scene.group_id, seq=seq,
                      reason=faults.MEMBERSHIP_TAG)
    assert first.ok, first
    for reason in sorted(faults.FAULT_REASONS) * 3:
        await refused(scene, ask(scene.attacker, Op.REPORT, group_id=scene.group_id,
                                 seq=seq, reason=reason), "conflict")
    assert await hub_state(bridge_service, scene.group_id) == before
    assert await bridge_service.store.fault_reporters(scene.group_id, seq) == [
        scene.attacker.identity]
    await scene.chat("xa carries on")


@NETWORKS
async def test_a_removed_member_reads_and_joins_nothing(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Removed by the room's configured admin, mallory asks for the log (not-member),
    the GroupInfo and an external commit (join-policy)."""
    scene = await scene_with(bridge_service, people, prosody_server, network)
    group = group_of(scene.attacker, scene)
    await scene.xa.member.remove_members(scene.group_id, [scene.attacker.identity])
    honest = [scene.xa, scene.xb, scene.ma]
    await converge(honest, scene.group_id)
    await until(lambda: scene.attacker.identity not in roster(scene.ma, scene.group_id),
                "mallory removed")
    await refused(scene, ask(scene.attacker, Op.FETCH_LOG, group_id=scene.group_id),
                  "not-member")
    await refused(scene, ask(scene.attacker, Op.GET_GROUP_INFO, group_id=scene.group_id),
                  "join-policy")
    await refused(scene, external_join(scene.attacker, scene.group_id, group.group_info()),
                  "wrong-epoch")
    await scene.chat("mallory is out")


@NETWORKS
async def test_a_zeroed_membership_tag_convicts_its_sender(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """The resync storm: the hub cannot check a membership tag, so mallory's commit
    with a zeroed one is accepted and fanned out; the honest members fail it, report
    it and resync once each; the quorum bans her and the hub proposes her removal.
    Her way back (the group is open) is refused: forbidden."""
    scene = await scene_with(bridge_service, people, prosody_server, network,
                             join=JoinPolicy.OPEN)
    await scene.attacker.member.stop()
    staged = group_of(scene.attacker, scene).commit(rng=os.urandom, force_path=True)
    body = staged.message.body
    assert isinstance(body, PublicMessage)
    forged = MLSMessage.wrap(dataclasses.replace(body, membership_tag=bytes(32)))
    reply = await submit(scene.attacker, staged, payload=encode(forged))
    assert reply.ok, reply  # what only members can check, the hub lets through

    async def banned() -> bool:
        return [ban.identity for ban in await bridge_service.store.bans(scene.group_id)] == [
            scene.attacker.identity]

    await until(banned, "the hub banning mallory after the reports")
    honest = [scene.xa, scene.xb, scene.ma]
    await until(lambda: all(in_group(p, scene.group_id) for p in honest)
                and all(p.member.recovery.resyncs == 1 for p in honest), "one resync each")
    await converge(honest, scene.group_id)
    await until(lambda: bool(group_of(scene.xa, scene).state.pending), "the hub's Remove")
    await scene.xa.member.commit_pending(scene.group_id)
    await converge(honest, scene.group_id)
    assert scene.attacker.identity not in roster(scene.xa, scene.group_id)
    await refused(scene, ask(scene.attacker, Op.GET_GROUP_INFO, group_id=scene.group_id),
                  "forbidden")
    await scene.chat("the storm is over")
    assert [p.member.recovery.resyncs for p in honest] == [1, 1, 1]
