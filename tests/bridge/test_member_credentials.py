"""Identities members can check: every leaf a member accepts is attested by the hub's CA
it pinned (RFC 9420 §5.3.1), whatever the hub let through.

The finding: "A member added a KeyPackage she made herself with another user's identity
in the credential and her own key. The hub accepted the Add. The other members then
showed her messages as sent by that user." The hub now refuses such an Add; here it is
also replayed against a hub configured without that check: the honest members refuse
the commit themselves.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.credentials import CertificateAuthority, CredentialMode
from bridge.errors import CredentialRejected, PinMismatch
from bridge.hub import HubIdentity
from bridge.member import Member, MemoryMemberStore
from mls.codec import encode
from mls.crypto.suite import suite
from mls.enums import ExtensionType, LeafNodeSource
from mls.errors import ValidationError
from mls.group.credentials import BasicCredentialValidator
from mls.group.group import Group
from mls.group.join import welcome_group_info
from mls.group.key_package import create_key_package
from mls.messages.credentials import Credential
from mls.messages.extension_types import encode_external_senders
from mls.messages.extensions import Extension
from mls.messages.framing import MLSMessage
from mls.messages.proposals import Update
from tests.bridge.conftest import NOW, Harness, domain
from tests.bridge.test_hub_rejections import bundle_of
from transports.interface import Inbound, Op

CS = suite(1)
ANYTHING = BasicCredentialValidator()  # what a malicious client checks: nothing
DEFECTS = ("expired", "other CA", "other key")


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def defective(harness: Harness, defect: str, identity: str, key: bytes) -> Credential:
    """A credential for ``identity`` and ``key`` with one defect."""
    ca = harness.identity.ca
    if defect == "expired":
        return ca.issue(identity, 1, key, now=NOW - 10 * 86400, validity=86400,
                        rng=rng(41))
    if defect == "other CA":
        rogue = CertificateAuthority.generate("hub.example.org", now=NOW, rng=rng(42))
        return rogue.issue(identity, 1, key, now=NOW, validity=86400, rng=rng(43))
    _, other = CS.generate_signature_key_pair(rng(44))
    return ca.issue(identity, 1, other, now=NOW, validity=86400, rng=rng(45))


def rejected_for_its_credential(action: Callable[[], object]) -> None:
    """``action`` fails with an MLS validation error caused by the bridge's AS."""
    with pytest.raises(ValidationError) as caught:
        action()
    chain: BaseException | None = caught.value
    while chain is not None and not isinstance(chain, CredentialRejected):
        chain = chain.__cause__
    assert chain is not None, f"not a credential rejection: {caught.value!r}"


async def trio(harness: Harness) -> tuple[bytes, Member, Member, Member]:
    alice = await harness.member("alice", auto_resync=False)
    bob = await harness.member("bob", auto_resync=False)
    mallory = await harness.member("mallory", auto_resync=False)
    group_id = await alice.create_group()
    await alice.add_members(group_id, [bob.identity, mallory.identity])
    await harness.quiesce()
    return group_id, alice, bob, mallory


@pytest.mark.parametrize("credential", ["self-signed x509", "basic"])
async def test_members_reject_a_leaf_claiming_someone_elses_identity(
        harness: Harness, credential: str) -> None:
    group_id, alice, bob, mallory = await trio(harness)
    victim = domain("victim")
    await harness.member("victim")  # a real user, with real KeyPackages in the directory
    priv, key = CS.generate_signature_key_pair(rng(50))
    if credential == "basic":
        claim = Credential.basic(victim.encode())
    else:
        rogue = CertificateAuthority.generate("hub.example.org", now=NOW, rng=rng(51))
        claim = rogue.issue(victim, 1, key, now=NOW, validity=86400, rng=rng(52))
    forged = create_key_package(CS, claim, priv, rng=rng(53), now=NOW).key_package
    staged = mallory.group(group_id).commit(rng=rng(54), add=[forged], now=NOW,
                                            credential_validator=ANYTHING)
    before = {m.identity: m.group(group_id).to_bytes() for m in (alice, bob)}
    submit = Inbound(Op.SUBMIT_COMMIT, mallory.identity, **bundle_of(staged))

    # the hub, as the AS, refuses it ...
    assert harness.hub is not None
    refusal = await harness.ask(submit)
    assert (refusal.ok, refusal.code) == (False, "forbidden"), refusal.reason
    # ... and a hub configured without the check accepts and fans it out
    harness.hub.credential_validator = ANYTHING
    assert (await harness.ask(submit)).ok
    await harness.quiesce()

    for honest in (alice, bob):
        rejected_for_its_credential(lambda h=honest: h.group(group_id).process(  # type: ignore[misc]
            staged.message, now=NOW, credential_validator=h.trust.policy()))
        assert honest.group(group_id).to_bytes() == before[honest.identity]  # unchanged
        assert victim not in honest.roster(group_id)
        assert all(event.subject != victim for event in honest.events(group_id))
    # nor will they rejoin a tree holding that leaf (the GroupInfo the hub serves)
    with pytest.raises(ValidationError):
        await alice.rejoin(group_id)


@pytest.mark.parametrize("defect", DEFECTS)
async def test_a_defective_certificate_is_rejected_on_every_path(
        harness: Harness, defect: str) -> None:
    group_id, alice, bob, mallory = await trio(harness)
    policy = alice.trust.policy()
    own = mallory.group(group_id)
    mallory_key = CS.signature_public_key(own.state.signature_priv)

    def received(message: MLSMessage) -> Callable[[], object]:
        return lambda: alice.group(group_id).process(message, now=NOW,
                                                     credential_validator=policy)

    # Add: a KeyPackage with the defect
    priv, key = CS.generate_signature_key_pair(rng(60))
    bad = create_key_package(CS, defective(harness, defect, mallory.identity, key), priv,
                             rng=rng(61), now=NOW).key_package
    rejected_for_its_credential(received(own.commit(
        rng=rng(62), add=[bad], now=NOW, credential_validator=ANYTHING).message))

    # Update: her own leaf, its credential replaced by the defective one
    credential = defective(harness, defect, mallory.identity, mallory_key)
    state = own.state
    _, encryption_key = CS.generate_hpke_key_pair(rng(63))
    unsigned = state.own_leaf_node().replace(
        credential=credential, encryption_key=encryption_key,
        leaf_node_source=LeafNodeSource.UPDATE, lifetime=None, parent_hash=b"",
        signature=b"")
    signed = unsigned.replace(signature=CS.sign_with_label(
        state.signature_priv, b"LeafNodeTBS", unsigned.tbs_bytes(state.group_id,
                                                                 state.own_leaf)))
    rejected_for_its_credential(received(own.propose(Update(signed), rng=rng(64))[1]))

    # UpdatePath: a commit whose path leaf carries it
    rejected_for_its_credential(received(own.commit(
        rng=rng(65), force_path=True, credential=credential, now=NOW,
        credential_validator=ANYTHING).message))

    # external join: a newcomer's leaf carries it
    priv, key = CS.generate_signature_key_pair(rng(66))
    _, joining = Group.join_external(
        MLSMessage.wrap(bob.group(group_id).group_info()),
        credential=defective(harness, defect, domain("newcomer"), key), signature_priv=priv,
        rng=rng(67), now=NOW, credential_validator=ANYTHING)
    rejected_for_its_credential(received(joining))

    # Welcome: a group whose committer (the GroupInfo signer) holds it
    await welcome_from(harness, alice, mallory, defect, group_id)
    assert all(m.group(group_id).epoch == 1 for m in (alice, bob))  # nothing applied


async def welcome_from(harness: Harness, alice: Member, mallory: Member, defect: str,
                       shared: bytes) -> None:
    """Mallory's own group, her leaf with the defect, adds Alice (a KeyPackage claimed
    as a member of the group they share): Alice does not join."""
    priv, key = CS.generate_signature_key_pair(rng(70))
    bundle = create_key_package(CS, defective(harness, defect, mallory.identity, key), priv,
                                rng=rng(71), now=NOW)
    hub_sender = harness.identity.external_sender(1)
    group = Group.create(bundle, group_id=b"mallory's group", rng=rng(72), extensions=(
        Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders([hub_sender])),))
    claimed = await mallory._claim(shared, alice.identity)
    staged = group.commit(rng=rng(73), add=[claimed], now=NOW, credential_validator=ANYTHING)
    assert staged.welcome is not None
    welcome = staged.welcome.body
    ref = next(r for r in alice._bundles if r in {s.new_member for s in welcome.secrets})
    alice_bundle = alice._bundles[ref][0]

    def join() -> Group:
        joined = Group.join(welcome, alice_bundle, now=NOW,
                            credential_validator=alice.trust.tolerant())
        alice.trust.check_welcomer(joined, welcome_group_info(welcome, alice_bundle).signer)
        return joined

    rejected_for_its_credential(join)


async def test_the_hubs_ca_is_pinned_on_first_use(harness: Harness) -> None:
    store = MemoryMemberStore()
    first = await harness.member("alice", store=store)
    pinned = await store.load("hub-ca")
    assert pinned == harness.identity.ca.certificate
    assert first.trust.anchor is not None and first.trust.anchor.certificate == pinned

    # the same member, restarted against a hub with another CA (an impostor, or a hub
    # whose identity file was replaced): refused, and the pin is kept
    await harness.stop_hub()
    harness.identity = HubIdentity.generate("hub.example.org", rng=rng(80))
    await harness.start_hub()
    again = Member(harness.network.link(first.identity), store=store, rng=rng(81),
                   clock=lambda: NOW)
    await again.start()  # it comes up (with its groups), but trusts nothing new:
    with pytest.raises(PinMismatch, match="pinned on first use"):
        await again.publish_key_packages()
    assert await store.load("hub-ca") == pinned
    with pytest.raises(PinMismatch):
        await again.create_group()
    await again.stop()


async def test_every_suite_attests_and_checks_members(tmp_path: Path) -> None:
    """All seven cipher suites: attested KeyPackages, a group of two, verified roster."""
    for suite_id in range(1, 8):
        harness = Harness(tmp_path / f"hub{suite_id}.db")
        harness.identity = HubIdentity.generate("hub.example.org", suites=(suite_id,),
                                                rng=rng(90 + suite_id), now=NOW)
        await harness.start_hub()
        try:
            alice = await harness.member("alice", cipher_suite=suite_id)
            bob = await harness.member("bob", cipher_suite=suite_id)
            group_id = await alice.create_group()
            await alice.add_members(group_id, [bob.identity])
            await harness.quiesce()
            assert alice.roster(group_id) == bob.roster(group_id) == sorted(
                [alice.identity, bob.identity])
            assert bob.credential_mode(group_id) is CredentialMode.X509
            await bob.send_text(group_id, f"hello in suite {suite_id}")
            await harness.quiesce()
            assert [r.sender for r in alice.received(group_id)] == [bob.identity]
        finally:
            await harness.close()


async def test_basic_mode_groups_are_labelled_and_x509_members_stay_out(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="bridge.member")
    alice = await harness.member("alice", credentials="basic")
    bob = await harness.member("bob", credentials="basic")
    strict = await harness.member("carol")
    group_id = await alice.create_group()
    await alice.add_members(group_id, [bob.identity])
    await harness.quiesce()
    assert bob.roster(group_id) == sorted([alice.identity, bob.identity])
    assert bob.credential_mode(group_id) is CredentialMode.BASIC
    assert "identities vouched by the hub only" in caplog.text
    # an X.509 member refuses the Welcome into a group of basic credentials
    await alice.add_members(group_id, [strict.identity])
    await harness.quiesce()
    assert group_id not in strict.group_ids()
    assert "delivery welcome seq 2 failed: CredentialRejected" in caplog.text
    # basic-mode members check attested leaves too: carol's is shown by its verified name
    assert strict.identity in bob.roster(group_id)
    # and an X.509 member will not take a basic-mode member's KeyPackage
    dave = await harness.member("dave", credentials="basic")
    with pytest.raises(CredentialRejected, match="not accepted in x509 mode"):
        await strict.add_members(await strict.create_group(), [dave.identity])


async def test_the_credential_is_renewed_before_it_expires(tmp_path: Path) -> None:
    now = [NOW]
    harness = Harness(tmp_path / "hub.db")
    await harness.start_hub()
    assert harness.hub is not None
    harness.hub.clock = lambda: now[0]
    try:
        alice = await harness.member("alice", clock=lambda: now[0])
        bob = await harness.member("bob", clock=lambda: now[0])
        group_id = await alice.create_group()
        await alice.add_members(group_id, [bob.identity])
        await harness.quiesce()
        first = alice.credential
        now[0] += 21 * 86400  # past two thirds of the 30 days
        await alice.update(group_id)  # renews, and the path carries the new credential
        await harness.quiesce()
        assert alice.credential != first
        leaf = alice.group(group_id).state.own_leaf_node()
        assert leaf.credential == alice.credential
        assert bob.group(group_id).epoch == alice.group(group_id).epoch
        assert encode(bob.group(group_id).state.tree.leaf(
            alice.group(group_id).own_leaf).credential) == encode(alice.credential)
    finally:
        await harness.close()
