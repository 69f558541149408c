"""The hub as the Authentication Service (bridge/hub/attestation.py): hub-info, attest,
the KeyPackage check at publish, Adds tied to the directory, and the CA in the hub's
identity file (rules A1, A7, A15 of the security model)."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path

import pytest

from bridge.app.services.identity import load_identity
from bridge.credentials import AttestRequest, CertificateAuthority, HubInfo
from bridge.errors import Forbidden
from bridge.identities import UNVERIFIED, identity_of
from mls import KeyPackage, LeafIndex, MemberLeaf, key_package_ref
from mls.codec import decode, encode
from mls.crypto.suite import suite
from mls.enums import CredentialType
from mls.group.key_package import create_key_package
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage
from tests.bridge.conftest import NOW, Harness, domain
from transports.interface import Inbound, Op

CS = suite(1)


def randbytes(seed: int) -> random.Random:
    return random.Random(seed)


async def attest(harness: Harness, sender: str, request: AttestRequest,
                 cipher_suite: int = 1) -> tuple[bool, str, bytes]:
    reply = await harness.ask(Inbound(Op.ATTEST, sender, payload=encode(request),
                                      cipher_suite=cipher_suite))
    return reply.ok, reply.code, reply.payload


async def test_hub_info_carries_the_external_sender_and_the_ca(harness: Harness) -> None:
    reply = await harness.ask(Inbound(Op.HUB_INFO, domain("alice"), cipher_suite=1))
    info = decode(HubInfo, reply.payload)
    assert info.ca_certificate == harness.identity.ca.certificate
    assert info.external_sender == harness.identity.external_sender(1)


async def test_attest_binds_the_requesters_own_identity_to_its_key(harness: Harness) -> None:
    priv, key = CS.generate_signature_key_pair(randbytes(1).randbytes)
    alice = domain("alice")
    ok, _, payload = await attest(harness, alice, AttestRequest.create(CS, alice, priv))
    assert ok
    credential = decode(Credential, payload)
    anchor = harness.identity.ca.anchor
    assert credential.credential_type == CredentialType.X509
    assert anchor.verify(credential, key, NOW) == alice
    assert anchor.attested(credential).not_after == NOW + 30 * 24 * 3600

    # a proof made for alice, sent by mallory: mallory gets nothing (the identity
    # certified is always the network-authenticated sender, and the proof names alice)
    ok, code, _ = await attest(harness, domain("mallory"), AttestRequest.create(CS, alice, priv))
    assert (ok, code) == (False, "forbidden")
    # mallory cannot attest alice's key as her own either: she has no proof for it
    forged = AttestRequest(1, key, AttestRequest.create(CS, domain("mallory"),
                                                        CS.generate_signature_key_pair(
                                                            randbytes(2).randbytes)[0]).signature)
    ok, code, _ = await attest(harness, domain("mallory"), forged)
    assert (ok, code) == (False, "forbidden")


async def test_attest_refuses_what_it_cannot_read(harness: Harness) -> None:
    alice = domain("alice")
    for payload, code in ((b"", "malformed"), (b"\x00\x01\x02", "malformed"),
                          (encode(AttestRequest(99, b"k", b"s")), "unsupported")):
        reply = await harness.ask(Inbound(Op.ATTEST, alice, payload=payload))
        assert (reply.ok, reply.code) == (False, code)
    priv, _ = suite(1).generate_signature_key_pair(randbytes(3).randbytes)
    wrong_suite = AttestRequest.create(suite(1), alice, priv)
    ok, code, _ = await attest(harness, alice, AttestRequest(2, wrong_suite.signature_key,
                                                             wrong_suite.signature))
    assert (ok, code) == (False, "forbidden")  # an Ed25519 key is no P-256 key


def added(key_package: KeyPackage) -> MemberLeaf:
    """The leaf a commit filled from ``key_package``, as ``mls`` reports it."""
    return MemberLeaf(LeafIndex(1), key_package.leaf_node.credential,
                      key_package.leaf_node.signature_key, key_package_ref(CS, key_package))


def key_package(credential: Credential, priv: bytes, seed: int = 5) -> bytes:
    bundle = create_key_package(CS, credential, priv, rng=randbytes(seed).randbytes, now=NOW)
    return encode(MLSMessage.wrap(bundle.key_package))


async def publish(harness: Harness, sender: str, payload: bytes) -> tuple[bool, str]:
    reply = await harness.ask(Inbound(Op.PUBLISH_KEY_PACKAGE, sender, payload=payload))
    return reply.ok, reply.code


async def test_publish_checks_the_credential_against_the_requester(harness: Harness) -> None:
    ca = harness.identity.ca
    rogue = CertificateAuthority.generate("hub.example.org", now=NOW, rng=randbytes(6).randbytes)
    alice, bob = domain("alice"), domain("bob")
    priv, key = CS.generate_signature_key_pair(randbytes(7).randbytes)

    def issued(by: CertificateAuthority, identity: str, now: int = NOW) -> Credential:
        return by.issue(identity, 1, key, now=now, validity=3600, rng=randbytes(8).randbytes)

    assert await publish(harness, alice, key_package(issued(ca, alice), priv)) == (True, "")
    assert await publish(harness, alice, key_package(Credential.basic(alice.encode()), priv,
                                                     seed=9)) == (True, "")
    refused = [
        (bob, key_package(issued(ca, alice), priv, seed=10)),  # alice's credential, bob asks
        (alice, key_package(issued(rogue, alice), priv, seed=11)),  # not this hub's CA
        (alice, key_package(issued(ca, alice, now=NOW - 7200), priv, seed=12)),  # expired
        (bob, key_package(Credential.basic(alice.encode()), priv, seed=13)),
    ]
    other_priv, _ = CS.generate_signature_key_pair(randbytes(14).randbytes)
    refused.append((alice, key_package(issued(ca, alice), other_priv, seed=15)))  # key
    for sender, payload in refused:
        assert await publish(harness, sender, payload) == (False, "forbidden")


async def test_adds_are_tied_to_the_directory(harness: Harness) -> None:
    """A7: a basic leaf must come from a KeyPackage the directory holds or held for the
    identity it names; an X.509 leaf must verify to the hub's CA."""
    assert harness.hub is not None and harness.store is not None
    attestation, store = harness.hub.attestation, harness.store
    victim = domain("victim")
    victim_priv, _ = CS.generate_signature_key_pair(randbytes(20).randbytes)
    published = create_key_package(CS, Credential.basic(victim.encode()), victim_priv,
                                   rng=randbytes(21).randbytes, now=NOW).key_package
    assert await publish(harness, victim, encode(MLSMessage.wrap(published))) == (True, "")
    await attestation.check_added(store, [added(published)])
    await store.claim_key_package(victim, 1, NOW)  # claimed: still held for the check
    await attestation.check_added(store, [added(published)])

    mallory_priv, mallory_key = CS.generate_signature_key_pair(randbytes(22).randbytes)
    forged = create_key_package(CS, Credential.basic(victim.encode()), mallory_priv,
                                rng=randbytes(23).randbytes, now=NOW).key_package
    rogue = CertificateAuthority.generate("x", now=NOW, rng=randbytes(24).randbytes)
    self_signed = create_key_package(
        CS, rogue.issue(victim, 1, mallory_key, now=NOW, validity=3600,
                        rng=randbytes(25).randbytes),
        mallory_priv, rng=randbytes(26).randbytes, now=NOW).key_package
    mallorys = create_key_package(CS, Credential.basic(domain("mallory").encode()),
                                  mallory_priv, rng=randbytes(27).randbytes, now=NOW)
    assert await publish(harness, domain("mallory"),
                         encode(MLSMessage.wrap(mallorys.key_package))) == (True, "")
    for leaves in ([forged], [self_signed], [mallorys.key_package, forged]):
        with pytest.raises(Forbidden):
            await attestation.check_added(store, [added(kp) for kp in leaves])
    attested = create_key_package(
        CS, harness.identity.ca.issue(victim, 1, mallory_key, now=NOW, validity=3600,
                                      rng=randbytes(28).randbytes),
        mallory_priv, rng=randbytes(29).randbytes, now=NOW).key_package
    joiner = MemberLeaf(LeafIndex(3), forged.leaf_node.credential,
                        forged.leaf_node.signature_key)  # an external joiner: A11's
    await attestation.check_added(store, [added(mallorys.key_package), added(published),
                                          added(attested), joiner])
    # identities in the hub's view of a group: X.509 ones only once verified
    assert identity_of(self_signed.leaf_node.credential,
                       attestation.anchor).startswith(UNVERIFIED)


def test_the_identity_file_holds_the_ca_and_old_files_get_one(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    first = load_identity(path, "hub.example.org", suites=(1, 2))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_identity(path, "ignored")
    assert again == first and again.ca == first.ca

    data = json.loads(path.read_text())
    del data["ca"]  # a file written before the hub had a CA
    old = tmp_path / "old.key"
    old.write_text(json.dumps(data))
    old.chmod(0o600)
    upgraded = load_identity(old, "ignored")
    assert upgraded.signature_keys == first.signature_keys  # groups keep trusting it
    assert upgraded.ca.certificate != first.ca.certificate
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert "ca" in json.loads(old.read_text())
    assert load_identity(old, "ignored").ca == upgraded.ca  # and it stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.key", "old.key"]


def test_an_identity_file_others_may_read_is_refused(tmp_path: Path) -> None:
    """The hub's signing and CA keys: a file its group or others may access is refused
    at start, naming the file and its mode, never its content."""
    path = tmp_path / "hub.key"
    load_identity(path, "hub.example.org", suites=(1,))
    secret = path.read_text()
    path.chmod(0o640)
    with pytest.raises(PermissionError) as refused:
        load_identity(path, "hub.example.org")
    assert "hub.key is mode 640" in str(refused.value)
    assert secret not in str(refused.value) and path.read_text() == secret
