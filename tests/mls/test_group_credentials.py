"""The credential validator (RFC 9420 §5.3): :mod:`mls.group.credentials`."""

from __future__ import annotations

import pytest

from mls.errors import ValidationError
from mls.group.credentials import BasicCredentialValidator
from mls.group.group import Group
from mls.group.join import welcome_group_info
from mls.messages.credentials import Credential
from mls.messages.welcome import Welcome
from tests.mls.fixtures import NOW, assert_rejected, make_member, make_rng, three_members


def test_basic_validator_accepts_basic_and_nonempty_x509() -> None:
    validator = BasicCredentialValidator()
    validator.validate(Credential.basic(b"alice"), b"key")
    validator.validate(Credential.x509((b"cert",)), b"key")


@pytest.mark.parametrize(("credential", "message"), [
    (Credential.x509(()), "empty certificate chain"),
    (Credential.x509((b"cert", b"")), "empty certificate"),
    (Credential(0x0F0F), "not supported"),
])
def test_basic_validator_rejects(credential: Credential, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BasicCredentialValidator().validate(credential, b"key")


def test_basic_validator_successor_keeps_identity() -> None:
    validator = BasicCredentialValidator()
    validator.validate_successor(Credential.basic(b"a"), Credential.basic(b"a"))
    with pytest.raises(ValidationError, match="different identity"):
        validator.validate_successor(Credential.basic(b"a"), Credential.basic(b"b"))


def test_a_commit_path_can_carry_a_new_credential() -> None:
    """RFC 9420 §5.3.2: a member replaces its (expiring) credential through its
    UpdatePath; receivers run the successor check on it (§5.3.1)."""
    rng = make_rng(b"renew")
    alice, bob, _ = three_members(rng)
    renewed = Credential.basic(b"alice")  # the successor: same identity, new bytes
    assert renewed == alice.state.own_leaf_node().credential  # basic: equal, no path forced
    erin = make_member(b"erin", rng).key_package
    staged = alice.commit(rng=rng, add=[erin], credential=renewed, now=NOW)
    assert staged.message.body.content.content.path is None  # type: ignore[union-attr]
    x509 = Credential.x509((b"cert for alice",))
    staged = alice.commit(rng=rng, add=[erin], credential=x509, now=NOW)  # path forced
    assert staged.message.body.content.content.path is not None  # type: ignore[union-attr]
    assert staged.state.own_leaf_node().credential == x509
    bob_after, _ = bob.process(staged.message)
    assert bob_after.state.tree.leaf(alice.own_leaf).credential == x509  # type: ignore[union-attr]
    assert bob_after.epoch_authenticator() == alice.merge(staged).epoch_authenticator()
    other = Credential.basic(b"mallory")
    assert_rejected(bob, alice.commit(rng=rng, credential=other, now=NOW).message,
                    ValidationError)


def test_a_joiner_can_read_who_welcomed_it() -> None:
    rng = make_rng(b"welcomer")
    _, bob, _ = three_members(rng)
    dave = make_member(b"dave", rng)
    staged = bob.commit(rng=rng, add=[dave.key_package], now=NOW)
    assert staged.welcome is not None
    welcome = staged.welcome.body
    assert isinstance(welcome, Welcome)
    Group.join(welcome, dave, now=NOW)
    assert welcome_group_info(welcome, dave).signer == bob.own_leaf
    assert welcome_group_info(welcome, dave).group_context == staged.group_info.group_context
