"""Reinitialization, subgroup branching and resumption PSKs (RFC 9420 §8.6, §11.2,
§11.3, §12.4.3.1): end to end, and the joins that must fail."""

from __future__ import annotations

import pytest

from mls.crypto import suite
from mls.crypto.suite import CipherSuite, Rng
from mls.enums import PSKType, ResumptionPSKUsage
from mls.errors import ProposalValidationError, UsageError, ValidationError
from mls.group.commit import create_commit
from mls.group.config import GroupConfig
from mls.group.events import ApplicationEvent, CommitEvent, ProposalEvent
from mls.group.group import Group
from mls.group.key_package import KeyPackageBundle
from mls.group.psk import PskResolver
from mls.group.resumption import commit_linked_group, linked_psk_id, resumption_lookup
from mls.messages.extensions import Extension
from mls.messages.framing import MLSMessage
from mls.messages.proposals import Add, PreSharedKey, Proposal, ReInit
from mls.messages.psk import PreSharedKeyID
from tests.mls.fixtures import NOW, Person, assert_rejected, deliver, make_rng

APP_ID = Extension(0x0001, b"reinitialized")


def _group_of_three(cs: CipherSuite, rng: Rng, group_id: bytes = b"old group"
                    ) -> tuple[list[Person], list[Group]]:
    people = [Person(name, rng) for name in (b"alice", b"bob", b"carol")]
    bundles = [person.key_package(cs) for person in people]
    alice = Group.create(bundles[0], group_id=group_id, rng=rng)
    staged = alice.commit(rng=rng, add=[b.key_package for b in bundles[1:]], now=NOW)
    assert staged.welcome is not None
    groups = [alice.merge(staged)]
    groups += [Group.join(staged.welcome, bundle, now=NOW) for bundle in bundles[1:]]
    return people, groups


def _retire(groups: list[Group], rng: Rng, reinit: ReInit) -> list[Group]:
    """Alice proposes the ReInit, Bob commits it by reference; all are retired."""
    alice, bob, carol = groups
    alice, proposal = alice.propose(reinit, rng=rng)
    bob, event = bob.process(proposal)
    assert isinstance(event, ProposalEvent) and event.proposal == reinit
    carol, _ = carol.process(proposal)
    staged = bob.commit(rng=rng)
    assert staged.event.reinit == reinit and staged.message is not None
    bob, alice, carol = deliver(staged, bob, alice, carol)
    assert all(group.retired and group.pending_reinit == reinit
               for group in (alice, bob, carol))
    return [alice, bob, carol]


def _check_talk(groups: list[Group], rng: Rng) -> None:
    sender, *receivers = groups
    sender, message = sender.encrypt(b"in the new group", rng=rng)
    for receiver in receivers:
        _, event = receiver.process(message)
        assert isinstance(event, ApplicationEvent) and event.data == b"in the new group"


@pytest.mark.parametrize(("old_suite", "new_suite"), [(1, 1), (3, 3), (1, 2)])
def test_reinit_end_to_end(old_suite: int, new_suite: int) -> None:
    rng = make_rng(2000 + 10 * old_suite + new_suite)
    old_cs, new_cs = suite(old_suite), suite(new_suite)
    people, groups = _group_of_three(old_cs, rng)
    reinit = ReInit(b"new group", 1, new_cs.id, (APP_ID,))
    alice, bob, carol = _retire(groups, rng, reinit)

    # The retired group sends nothing more, but keeps what the new group needs.
    before = alice.to_bytes()
    with pytest.raises(UsageError):
        alice.encrypt(b"too late", rng=rng)
    with pytest.raises(UsageError):
        alice.commit(rng=rng)
    with pytest.raises(UsageError):
        alice.propose_update(rng=rng)
    assert alice.to_bytes() == before
    assert Group.from_bytes(before).pending_reinit == reinit

    # Carol (not the committer) recreates the group.
    bundles = [person.key_package(new_cs) for person in people]
    new_carol, welcome = carol.reinit(bundles[2], [b.key_package for b in bundles[:2]],
                                      rng=rng, now=NOW)
    assert welcome is not None and new_carol.epoch == 1
    context = new_carol.group_context
    assert (context.group_id, context.cipher_suite, context.extensions) == (
        b"new group", new_cs.id, (APP_ID,))
    new_alice = Group.join(welcome, bundles[0], now=NOW,
                           resumption_groups={alice.group_id: alice})
    new_bob = Group.join(welcome, bundles[1], now=NOW, resumption_groups={bob.group_id: bob})
    assert {g.epoch_authenticator() for g in (new_alice, new_bob, new_carol)} == {
        new_carol.epoch_authenticator()}
    _check_talk([new_alice, new_bob, new_carol], rng)
    staged = new_bob.commit(rng=rng)
    deliver(staged, new_bob, new_alice, new_carol)


def test_reinit_commit_by_value_and_alone() -> None:
    rng = make_rng(2100)
    cs = suite(1)
    _, (alice, bob, carol) = _group_of_three(cs, rng)
    reinit = ReInit(b"next", 1, cs.id)
    with pytest.raises(ProposalValidationError, match="only proposal"):
        alice.commit(rng=rng, proposals=[reinit], remove=[2])
    staged = alice.commit(rng=rng, proposals=[reinit])
    assert staged.event.reinit == reinit and staged.event.updated == ()
    alice, bob, carol = deliver(staged, alice, bob, carol)
    assert alice.retired and bob.retired and carol.retired


def test_retired_group_refuses_incoming_proposals() -> None:
    rng = make_rng(2150)
    cs = suite(1)
    _, (alice, bob, carol) = _group_of_three(cs, rng)
    staged = alice.commit(rng=rng, proposals=[ReInit(b"next", 1, cs.id)])
    alice, bob, carol = deliver(staged, alice, bob, carol)
    # Bob's proposal in the retired epoch (sent as if the group were not retired).
    _, proposal = Group(bob.state.replace(reinit=None)).propose_update(rng=rng)
    assert_rejected(carol, proposal, UsageError)


def test_reinit_requires_retired_group_and_matching_key_package() -> None:
    rng = make_rng(2200)
    cs = suite(1)
    people, (alice, bob, carol) = _group_of_three(cs, rng)
    bundles = [person.key_package(cs) for person in people]
    with pytest.raises(UsageError):
        alice.reinit(bundles[0], [b.key_package for b in bundles[1:]], rng=rng)
    alice, bob, carol = _retire([alice, bob, carol], rng, ReInit(b"n", 1, suite(2).id))
    with pytest.raises(UsageError):  # our KeyPackage is of the old suite
        alice.reinit(bundles[0], [b.key_package for b in bundles[1:]], rng=rng)
    new_bundles = [person.key_package(suite(2)) for person in people]
    with pytest.raises(UsageError):  # Carol would be left out
        alice.reinit(new_bundles[0], [new_bundles[1].key_package], rng=rng)


def _retired_trio(seed: int) -> tuple[list[Person], list[Group], CipherSuite]:
    rng = make_rng(seed)
    cs = suite(1)
    people, groups = _group_of_three(cs, rng)
    return people, _retire(groups, rng, ReInit(b"new group", 1, cs.id, (APP_ID,))), cs


def test_reinit_join_needs_the_old_group() -> None:
    rng = make_rng(2300)
    people, (alice, bob, _carol), cs = _retired_trio(2301)
    bundles = [person.key_package(cs) for person in people]
    _, welcome = alice.reinit(bundles[0], [b.key_package for b in bundles[1:]], rng=rng,
                              now=NOW)
    assert welcome is not None
    with pytest.raises(ValidationError, match="is not available"):
        Group.join(welcome, bundles[1], now=NOW)
    resolver = PskResolver(resumption=resumption_lookup({bob.group_id: bob.state}))
    with pytest.raises(ValidationError, match="resumption_groups"):
        Group.join(welcome, bundles[1], now=NOW, psk_resolver=resolver)
    with pytest.raises(ValidationError, match="is not available"):  # another old group
        Group.join(welcome, bundles[1], now=NOW, resumption_groups={b"other": bob})
    joined = Group.join(welcome, bundles[1], now=NOW, psk_resolver=resolver,
                        resumption_groups={bob.group_id: bob})
    assert joined.epoch == 1


def _linked_welcome(old: Group, bundle: KeyPackageBundle, others: list[KeyPackageBundle], *,
                    group_id: bytes, extensions: tuple[Extension, ...], rng: Rng,
                    usage: ResumptionPSKUsage = ResumptionPSKUsage.REINIT) -> MLSMessage:
    """A Welcome from commit_linked_group, bypassing Group.reinit's parameter choice."""
    new = Group.create(bundle, group_id=group_id, rng=rng, extensions=extensions)
    _, welcome = commit_linked_group(old.state, new.state, [b.key_package for b in others],
                                     usage=usage, rng=rng, now=NOW, credential_validator=None)
    assert welcome is not None
    return welcome


@pytest.mark.parametrize(("group_id", "extensions", "field"), [
    (b"another id", (APP_ID,), "group_id"),
    (b"new group", (), "extensions"),
])
def test_reinit_join_rejects_mismatched_parameters(group_id: bytes,
                                                   extensions: tuple[Extension, ...],
                                                   field: str) -> None:
    rng = make_rng(2400)
    people, (alice, bob, _), cs = _retired_trio(2401)
    bundles = [person.key_package(cs) for person in people]
    welcome = _linked_welcome(alice, bundles[0], bundles[1:], group_id=group_id,
                              extensions=extensions, rng=rng)
    with pytest.raises(ValidationError, match=f"{field} differs from the ReInit"):
        Group.join(welcome, bundles[1], now=NOW, resumption_groups={bob.group_id: bob})


def _welcome_with_psks(creator: Group, bundle: KeyPackageBundle, old: Group,
                       psk_ids: list[PreSharedKeyID], usage: ResumptionPSKUsage,
                       rng: Rng) -> MLSMessage:
    """A Welcome from ``creator`` adding ``bundle`` with the given PSKs, built below
    the facade (the facade never produces these)."""
    proposals: list[Proposal] = [Add(bundle.key_package)]
    proposals += [PreSharedKey(psk_id) for psk_id in psk_ids]
    resolver = PskResolver(resumption=resumption_lookup({old.group_id: old.state}))
    staged = create_commit(creator.state, rng=rng, proposals=proposals, psk_resolver=resolver,
                           now=NOW, linked_usage=usage)
    assert staged.welcome is not None
    return staged.welcome


def test_reinit_join_at_wrong_epoch_and_without_reinit() -> None:
    rng = make_rng(2500)
    people, (alice, bob, _carol), cs = _retired_trio(2501)
    bundles = [person.key_package(cs) for person in people]
    new_alice, _ = alice.reinit(bundles[0], [bundles[1].key_package, bundles[2].key_package],
                                rng=rng, now=NOW)
    # A second Commit of the new group (epoch 1 -> 2) carrying a reinit PSK again.
    late = Person(b"bob", rng).key_package(cs)
    psk = PreSharedKeyID(PSKType.RESUMPTION, rng(cs.hash_len),
                         usage=ResumptionPSKUsage.REINIT, psk_group_id=alice.group_id,
                         psk_epoch=alice.epoch)
    welcome = _welcome_with_psks(new_alice, late, alice, [psk], ResumptionPSKUsage.REINIT, rng)
    with pytest.raises(ValidationError, match="epoch 1"):
        Group.join(welcome, late, now=NOW, resumption_groups={bob.group_id: bob})

    # A reinit PSK naming an epoch whose Commit held no ReInit.
    _, (dan, erin, _) = _group_of_three(cs, rng, group_id=b"plain group")
    fresh = Group.create(Person(b"dan", rng).key_package(cs), group_id=b"new", rng=rng)
    erin_kp = Person(b"erin", rng).key_package(cs)
    psk = PreSharedKeyID(PSKType.RESUMPTION, rng(cs.hash_len),
                         usage=ResumptionPSKUsage.REINIT, psk_group_id=dan.group_id,
                         psk_epoch=dan.epoch)
    welcome = _welcome_with_psks(fresh, erin_kp, dan, [psk], ResumptionPSKUsage.REINIT, rng)
    with pytest.raises(ValidationError, match="covering a ReInit"):
        Group.join(welcome, erin_kp, now=NOW, resumption_groups={erin.group_id: erin})


def test_two_linked_psks_are_rejected() -> None:
    rng = make_rng(2600)
    cs = suite(1)
    _, (alice, _bob, _) = _group_of_three(cs, rng)
    fresh = Group.create(Person(b"alice", rng).key_package(cs), group_id=b"sub", rng=rng)
    bob_kp = Person(b"bob", rng).key_package(cs)
    psks = [PreSharedKeyID(PSKType.RESUMPTION, rng(cs.hash_len),
                           usage=ResumptionPSKUsage.BRANCH, psk_group_id=alice.group_id,
                           psk_epoch=alice.epoch) for _ in range(2)]
    with pytest.raises(ProposalValidationError, match="more than one"):
        _welcome_with_psks(fresh, bob_kp, alice, psks, ResumptionPSKUsage.BRANCH, rng)
    with pytest.raises(ValidationError, match="more than one"):
        linked_psk_id(psks)
    assert linked_psk_id(psks[:1]) == psks[0]


# -- branching -----------------------------------------------------------------------------

@pytest.mark.parametrize("suite_id", [1, 3])
def test_branch_with_a_subset_of_members(suite_id: int) -> None:
    rng = make_rng(2700 + suite_id)
    cs = suite(suite_id)
    people, (alice, bob, carol) = _group_of_three(cs, rng)
    alice_kp, bob_kp = people[0].key_package(cs), people[1].key_package(cs)
    sub_alice, welcome = alice.branch(alice_kp, [bob_kp.key_package], new_group_id=b"sub",
                                      rng=rng, now=NOW)
    assert welcome is not None and sub_alice.epoch == 1
    assert sub_alice.group_context.extensions == alice.group_context.extensions
    sub_bob = Group.join(welcome, bob_kp, now=NOW, resumption_groups={bob.group_id: bob})
    assert sub_bob.epoch_authenticator() == sub_alice.epoch_authenticator()
    assert [leaf for leaf, _ in sub_bob.members()] == [0, 1]
    _check_talk([sub_bob, sub_alice], rng)
    # The original group goes on.
    staged = carol.commit(rng=rng)
    carol, alice, bob = deliver(staged, carol, alice, bob)
    # Bob's old group moved on one epoch: the branch PSK is still retained.
    sub_bob_again = Group.join(welcome, bob_kp, now=NOW, resumption_groups={bob.group_id: bob})
    assert sub_bob_again.epoch_authenticator() == sub_alice.epoch_authenticator()


def test_branch_join_failures() -> None:
    rng = make_rng(2800)
    cs = suite(1)
    people, (alice, _bob, carol) = _group_of_three(cs, rng)
    alice_kp, bob_kp = people[0].key_package(cs), people[1].key_package(cs)
    stranger = Person(b"mallory", rng).key_package(cs)
    with pytest.raises(UsageError):  # not a member of the old group
        alice.branch(alice_kp, [stranger.key_package], new_group_id=b"sub", rng=rng)
    with pytest.raises(UsageError):  # another cipher suite
        alice.branch(people[0].key_package(suite(2)), [], new_group_id=b"sub", rng=rng)
    _, welcome = alice.branch(alice_kp, [bob_kp.key_package], new_group_id=b"sub", rng=rng,
                              now=NOW)
    assert welcome is not None
    with pytest.raises(ValidationError, match="is not available"):
        Group.join(welcome, bob_kp, now=NOW)

    # A "branch" adding someone who was never in the old group.
    fresh = Group.create(Person(b"alice", rng).key_package(cs), group_id=b"sub2", rng=rng)
    psk = PreSharedKeyID(PSKType.RESUMPTION, rng(cs.hash_len), usage=ResumptionPSKUsage.BRANCH,
                         psk_group_id=alice.group_id, psk_epoch=alice.epoch)
    welcome = _welcome_with_psks(fresh, stranger, alice, [psk], ResumptionPSKUsage.BRANCH, rng)
    with pytest.raises(ValidationError, match="not a member of the old group"):
        Group.join(welcome, stranger, now=NOW, resumption_groups={carol.group_id: carol})


def test_branch_alone_has_no_welcome() -> None:
    rng = make_rng(2900)
    cs = suite(1)
    people, (alice, _, _) = _group_of_three(cs, rng)
    solo, welcome = alice.branch(people[0].key_package(cs), [], new_group_id=b"solo", rng=rng)
    assert welcome is None and solo.epoch == 1


# -- resumption PSKs of usage application (§8.6) and PSK proposals on receipt -------------

def test_application_resumption_psk_from_retained_epochs() -> None:
    rng = make_rng(3000)
    config = GroupConfig(max_resumption_psks=1)
    cs = suite(1)
    people = [Person(name, rng) for name in (b"alice", b"bob")]
    alice = Group.create(people[0].key_package(cs), group_id=b"g", rng=rng, config=config)
    bob_kp = people[1].key_package(cs)
    staged = alice.commit(rng=rng, add=[bob_kp.key_package], now=NOW)
    assert staged.welcome is not None
    alice = alice.merge(staged)
    bob = Group.join(staged.welcome, bob_kp, now=NOW, config=config)
    for _ in range(2):
        alice, bob = deliver(alice.commit(rng=rng), alice, bob)
    assert alice.epoch == 3 and len(alice.state.resumption_psks) == 1

    def resumption(epoch: int) -> PreSharedKeyID:
        return PreSharedKeyID(PSKType.RESUMPTION, rng(cs.hash_len), psk_group_id=b"g",
                              psk_epoch=epoch)

    alice, proposal = alice.propose_psk(resumption(2), rng=rng)
    bob, _ = bob.process(proposal)
    staged = alice.commit(rng=rng)
    assert staged.event.psks[0].psk_epoch == 2
    alice, bob = deliver(staged, alice, bob)
    with pytest.raises(ValidationError, match="not available"):  # epoch 1 was dropped
        alice.commit(rng=rng, proposals=[PreSharedKey(resumption(1))])


@pytest.mark.parametrize("usage", [ResumptionPSKUsage.REINIT, ResumptionPSKUsage.BRANCH])
def test_linked_psk_proposal_rejected_on_receipt_and_commit(usage: ResumptionPSKUsage) -> None:
    rng = make_rng(3100 + usage)
    cs = suite(1)
    _, (alice, bob, _) = _group_of_three(cs, rng)
    psk = PreSharedKeyID(PSKType.RESUMPTION, rng(cs.hash_len), usage=usage,
                         psk_group_id=alice.group_id, psk_epoch=alice.epoch)
    _, proposal = alice.propose_psk(psk, rng=rng)
    assert_rejected(bob, proposal, ProposalValidationError)
    with pytest.raises(ProposalValidationError):
        bob.commit(rng=rng, proposals=[PreSharedKey(psk)])


def test_reinit_commit_event_reaches_every_member() -> None:
    rng = make_rng(3200)
    cs = suite(1)
    _, (alice, bob, carol) = _group_of_three(cs, rng)
    reinit = ReInit(b"renamed", 1, cs.id)
    staged = carol.commit(rng=rng, proposals=[reinit])
    assert staged.message.body is not None
    for member in (alice, bob):
        processed, event = member.process(staged.message)
        assert isinstance(event, CommitEvent) and event.reinit == reinit
        assert processed.retired and processed.epoch == carol.epoch + 1
