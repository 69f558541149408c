"""The bridge's Authentication Service (bridge/credentials.py, bridge/identities.py):
certificates the hub's CA issues for every cipher suite, and every way one can fail
the checks of RFC 9420 §5.3.1."""

from __future__ import annotations

import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bridge.credentials import (
    CLOCK_SKEW,
    DEFAULT_VALIDITY,
    AttestRequest,
    CertificateAuthority,
    CredentialMode,
    CredentialPolicy,
    HubInfo,
    TrustAnchor,
    certificate_key,
    identity_uri,
    uri_identity,
)
from bridge.errors import CredentialRejected
from bridge.identities import UNVERIFIED, identity_of
from mls.codec import decode, encode
from mls.crypto.suite import suite
from mls.errors import ValidationError
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender

NOW = 1_700_000_000
ALICE = "xmpp:alice@example.org"
SUITES = range(1, 8)


def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate("hub.example.org", now=NOW, rng=rng(1).randbytes)


@pytest.fixture(scope="module")
def rogue() -> CertificateAuthority:
    """Another CA -- the one a malicious member makes for herself."""
    return CertificateAuthority.generate("hub.example.org", now=NOW, rng=rng(2).randbytes)


def key_pair(suite_id: int, seed: int = 3) -> tuple[bytes, bytes]:
    return suite(suite_id).generate_signature_key_pair(rng(seed).randbytes)


def issue(ca: CertificateAuthority, identity: str, suite_id: int, key: bytes, *,
          now: int = NOW, validity: int = DEFAULT_VALIDITY) -> Credential:
    return ca.issue(identity, suite_id, key, now=now, validity=validity,
                    rng=rng(4).randbytes)


@pytest.mark.parametrize("suite_id", SUITES)
def test_every_suite_is_issued_and_verified(ca: CertificateAuthority, suite_id: int) -> None:
    _, key = key_pair(suite_id)
    credential = issue(ca, ALICE, suite_id, key)
    assert credential.certificates[1] == ca.certificate  # the chain ends at the CA
    anchor = ca.anchor
    assert anchor.verify(credential, key, NOW) == ALICE
    assert anchor.verify(credential, key, NOW + DEFAULT_VALIDITY) == ALICE
    assert anchor.verify(Credential.x509(credential.certificates[:1]), key, NOW) == ALICE
    cert = x509.load_der_x509_certificate(credential.certificates[0])
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize("suite_id", SUITES)
def test_a_certificate_key_is_the_leaf_key_or_nothing(ca: CertificateAuthority,
                                                      suite_id: int) -> None:
    _, key = key_pair(suite_id)
    _, other = key_pair(suite_id, seed=5)
    credential = issue(ca, ALICE, suite_id, key)
    with pytest.raises(CredentialRejected, match="not the leaf's signature key"):
        ca.anchor.verify(credential, other, NOW)


def test_validity_is_judged_at_now_unless_told_not_to(ca: CertificateAuthority) -> None:
    _, key = key_pair(1)
    credential = issue(ca, ALICE, 1, key, validity=3600)
    anchor = ca.anchor
    assert anchor.verify(credential, key, NOW - CLOCK_SKEW) == ALICE  # a lagging clock
    for when in (NOW - CLOCK_SKEW - 1, NOW + 3601):
        with pytest.raises(CredentialRejected, match="expired or not yet valid"):
            anchor.verify(credential, key, when)
    assert anchor.verify(credential, key, None) == ALICE


def test_a_chain_from_another_ca_is_refused(ca: CertificateAuthority,
                                            rogue: CertificateAuthority) -> None:
    _, key = key_pair(1)
    forged = issue(rogue, ALICE, 1, key)  # same CA name, another key
    with pytest.raises(CredentialRejected, match="does not end at the pinned CA"):
        ca.anchor.verify(forged, key, NOW)
    alone = Credential.x509(forged.certificates[:1])
    with pytest.raises(CredentialRejected, match="not issued by the pinned CA"):
        ca.anchor.verify(alone, key, NOW)
    grafted = Credential.x509((forged.certificates[0], ca.certificate))
    with pytest.raises(CredentialRejected, match="not issued by the pinned CA"):
        ca.anchor.verify(grafted, key, NOW)


def test_malformed_chains_are_refused(ca: CertificateAuthority) -> None:
    _, key = key_pair(1)
    good = issue(ca, ALICE, 1, key)
    for chain in ((), (b"not der",), (good.certificates[0] + b"\0",),
                  (*good.certificates, ca.certificate), (ca.certificate,)):
        with pytest.raises(CredentialRejected):
            ca.anchor.verify(Credential.x509(chain), key, NOW)
    with pytest.raises(CredentialRejected):
        ca.anchor.verify(Credential.basic(ALICE.encode()), key, NOW)


def test_identities_travel_as_canonical_uris(ca: CertificateAuthority) -> None:
    for identity in (ALICE, "matrix:u/@bob:example.org", "xmpp:zoë%@example.org"):
        assert uri_identity(identity_uri(identity)) == identity
        _, key = key_pair(1)
        assert ca.anchor.verify(issue(ca, identity, 1, key), key, NOW) == identity
    assert identity_uri("xmpp:zoë@x") == "xmpp:zo%C3%AB@x"
    for uri in ("xmpp:%61lice@example.org", "xmpp:%FF", ""):
        with pytest.raises(CredentialRejected):
            uri_identity(uri)


def test_the_ca_signs_only_what_its_anchor_accepts(ca: CertificateAuthority) -> None:
    """A CA certificate is not an end-entity one, and an anchor needs an Ed25519 CA."""
    ca_key = ed25519.Ed25519PrivateKey.from_private_bytes(ca.private_key)
    ca_as_leaf = Credential.x509((ca.certificate,))
    raw = ca_key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    with pytest.raises(CredentialRejected):
        ca.anchor.verify(ca_as_leaf, raw, NOW)
    with pytest.raises(CredentialRejected):
        TrustAnchor(b"garbage")
    with pytest.raises(CredentialRejected):
        certificate_key(1, b"\x04" * 65)  # a P-256 point is no Ed25519 key
    with pytest.raises(CredentialRejected):
        certificate_key(2, b"\x04" + b"\x01" * 64)  # not on the curve


def test_policy_by_mode(ca: CertificateAuthority, rogue: CertificateAuthority) -> None:
    _, key = key_pair(1)
    attested = issue(ca, ALICE, 1, key)
    basic = Credential.basic(ALICE.encode())
    hub = ExternalSender(key_pair(1, seed=9)[1], Credential.basic(b"hub.example.org"))
    strict = CredentialPolicy(CredentialMode.X509, ca.anchor, clock=lambda: NOW,
                              trusted=(hub,))
    strict.validate(attested, key)
    strict.validate(hub.credential, hub.signature_key)  # the hub's own external sender
    with pytest.raises(CredentialRejected, match="not accepted in x509 mode"):
        strict.validate(basic, key)
    with pytest.raises(CredentialRejected, match="not accepted in x509 mode"):
        strict.validate(hub.credential, key)  # the hub's name with another key
    with pytest.raises(CredentialRejected):
        strict.validate(issue(rogue, ALICE, 1, key), key)
    late = CredentialPolicy(CredentialMode.X509, ca.anchor, clock=lambda: NOW + 10**8)
    with pytest.raises(CredentialRejected, match="expired"):
        late.validate(attested, key)
    late.tolerant().validate(attested, key)
    lenient = CredentialPolicy(CredentialMode.BASIC, ca.anchor, clock=lambda: NOW)
    lenient.validate(basic, key)
    lenient.validate(attested, key)
    with pytest.raises(CredentialRejected):
        lenient.validate(issue(rogue, ALICE, 1, key), key)
    with pytest.raises(CredentialRejected):
        lenient.validate(Credential.basic(b"\xff"), key)
    with pytest.raises(CredentialRejected, match="no CA is pinned"):
        CredentialPolicy(CredentialMode.X509, None).validate(attested, key)
    assert isinstance(CredentialRejected("x"), ValidationError)  # mls rejects with it


def test_a_successor_keeps_the_identity(ca: CertificateAuthority) -> None:
    _, key = key_pair(1)
    policy = CredentialPolicy(CredentialMode.BASIC, ca.anchor)
    renewed = issue(ca, ALICE, 1, key, now=NOW + 100)
    policy.validate_successor(issue(ca, ALICE, 1, key), renewed)
    policy.validate_successor(Credential.basic(ALICE.encode()), renewed)
    with pytest.raises(CredentialRejected, match="another identity"):
        policy.validate_successor(renewed, issue(ca, "xmpp:mallory@example.org", 1, key))


def test_identity_of_names_x509_only_once_verified(ca: CertificateAuthority,
                                                   rogue: CertificateAuthority) -> None:
    _, key = key_pair(1)
    attested = issue(ca, ALICE, 1, key)
    assert identity_of(Credential.basic(ALICE.encode())) == ALICE
    assert identity_of(attested, ca.anchor) == ALICE
    for unverified in (identity_of(attested), identity_of(issue(rogue, ALICE, 1, key),
                                                          ca.anchor)):
        assert unverified.startswith(UNVERIFIED) and ALICE not in unverified


def test_attest_request_proves_possession_for_one_identity() -> None:
    cs = suite(7)
    priv, key = key_pair(7)
    request = AttestRequest.create(cs, ALICE, priv)
    assert request.signature_key == key
    again = decode(AttestRequest, encode(request))
    again.check(cs, ALICE)
    with pytest.raises(CredentialRejected, match="proof of possession"):
        again.check(cs, "xmpp:mallory@example.org")
    _, other = key_pair(7, seed=8)
    for forged in (AttestRequest(7, other, request.signature),
                   AttestRequest(7, key, request.signature[:-1] + b"\0"),
                   AttestRequest(7, b"short", request.signature)):
        with pytest.raises(CredentialRejected):
            forged.check(cs, ALICE)


def test_hub_info_round_trips(ca: CertificateAuthority) -> None:
    sender = ExternalSender(key_pair(1)[1], Credential.basic(b"hub.example.org"))
    info = HubInfo(sender, ca.certificate)
    assert decode(HubInfo, encode(info)) == info
    assert TrustAnchor(decode(HubInfo, encode(info)).ca_certificate).fingerprint.count(":") == 31
