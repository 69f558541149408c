"""Shared fixtures of the MLS tests: a fixed clock, deterministic randomness, members
and small group helpers.

Everything is deterministic so that a failure reproduces: randomness comes from a
seeded generator (:func:`make_rng`) and the clock is fixed at :data:`NOW`.

- members: :class:`Person` (one identity, a signature key per suite, as many
  KeyPackages as asked), :func:`make_member` (one KeyPackage bundle), :class:`Client`
  and :func:`make_client` (one KeyPackage and the keys to re-sign it);
- groups: :func:`three_members`, :func:`deliver`, :func:`assert_rejected` (over
  :class:`mls.group.group.Group`), and :class:`TreeGroup` (a ratchet tree and
  GroupContext for the validation building blocks, without a Group);
- building inputs: :func:`resign_leaf`, :func:`resign_key_package`, :func:`with_leaf`,
  :func:`update_leaf`, :func:`by_value`, :func:`by_ref`, :func:`psk_id`,
  :func:`required_caps_ext`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from mls import codec
from mls.crypto.suite import CipherSuite, Rng, suite
from mls.enums import ExtensionType, LeafNodeSource, ProtocolVersion, PSKType
from mls.group.commit import StagedCommit
from mls.group.config import GroupConfig
from mls.group.group import Group
from mls.group.key_package import KeyPackageBundle, create_key_package
from mls.group.proposal_list import SenderProposal, validate_proposal_list
from mls.messages.credentials import Credential
from mls.messages.extension_types import RequiredCapabilities
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import MLSMessage, Sender
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import Proposal
from mls.messages.psk import PreSharedKeyID
from mls.tree.ratchet_tree import RatchetTree

NOW = 1_700_000_000  # the fixed clock (seconds): every lifetime check sees this time
CS = suite(1)
GROUP_ID = b"validation group"
PRIVATE_EXTENSION = 0xFF01  # a non-default extension type from the private-use range


def make_rng(seed: int | bytes) -> Rng:
    """A deterministic ``rng(n)``: Python's seeded Mersenne Twister (never for keys
    outside tests)."""
    return random.Random(seed).randbytes


# -- members -------------------------------------------------------------------------------


class Person:
    """One identity (a basic credential) with a signature key per cipher suite."""

    def __init__(self, name: bytes, rng: Rng) -> None:
        self.name = name
        self.rng = rng
        self._keys: dict[int, bytes] = {}

    def signature_priv(self, cs: CipherSuite = CS) -> bytes:
        if cs.id not in self._keys:
            self._keys[cs.id], _ = cs.generate_signature_key_pair(self.rng)
        return self._keys[cs.id]

    def key_package(self, cs: CipherSuite = CS, *, credential: Credential | None = None,
                    now: int = NOW, **kwargs: object) -> KeyPackageBundle:
        """A fresh KeyPackage (``kwargs`` go to :func:`create_key_package`)."""
        return create_key_package(cs, credential or Credential.basic(self.name),
                                  self.signature_priv(cs), rng=self.rng, now=now,
                                  **kwargs)  # type: ignore[arg-type]


def make_member(name: bytes, rng: Rng, cs: CipherSuite = CS) -> KeyPackageBundle:
    """A new member's KeyPackage bundle."""
    return Person(name, rng).key_package(cs)


@dataclass
class Client:
    """A member with one KeyPackage, and the keys to build and re-sign variants of it."""

    name: bytes
    signature_priv: bytes
    bundle: KeyPackageBundle
    rng: Rng

    @property
    def key_package(self) -> KeyPackage:
        return self.bundle.key_package

    @property
    def leaf(self) -> LeafNode:
        return self.bundle.key_package.leaf_node


def make_client(name: bytes, cs: CipherSuite = CS, **kwargs: object) -> Client:
    """A client seeded by its name (``kwargs`` as for :meth:`Person.key_package`)."""
    person = Person(name, make_rng(name))
    bundle = person.key_package(cs, **kwargs)  # type: ignore[arg-type]
    return Client(name, person.signature_priv(cs), bundle, person.rng)


# -- groups --------------------------------------------------------------------------------


def three_members(rng: Rng, config: GroupConfig | None = None
                  ) -> tuple[Group, Group, Group]:
    """Alice creates the group and adds Bob and Carol with one Commit."""
    alice_kp, bob_kp, carol_kp = (make_member(n, rng) for n in (b"alice", b"bob", b"carol"))
    alice = Group.create(alice_kp, group_id=b"test group", rng=rng, config=config)
    staged = alice.commit(rng=rng, add=[bob_kp.key_package, carol_kp.key_package], now=NOW)
    alice = alice.merge(staged)
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bob_kp, now=NOW, config=config)
    carol = Group.join(codec.encode(staged.welcome), carol_kp, now=NOW, config=config)
    return alice, bob, carol


def deliver(staged: StagedCommit, committer: Group, *others: Group) -> list[Group]:
    """Merge for the committer, process for everyone else."""
    out = [committer.merge(staged)]
    for other in others:
        processed, _ = other.process(staged.message)
        out.append(processed)
    authenticators = {group.epoch_authenticator() for group in out}
    assert len(authenticators) == 1
    return out


def assert_rejected(group: Group, message: MLSMessage | bytes,
                    error: type[Exception]) -> None:
    """``message`` raises ``error`` and leaves the group's state byte-identical."""
    before = group.to_bytes()
    with pytest.raises(error):
        group.process(message)
    assert group.to_bytes() == before


class TreeGroup:
    """A tree of ``n`` members built from their KeyPackages, and its context (for the
    validation building blocks, which take a tree and a GroupContext, not a Group)."""

    def __init__(self, n: int, extensions: tuple[Extension, ...] = ()) -> None:
        self.clients = [make_client(b"member %d" % i) for i in range(n)]
        self.tree = RatchetTree.one_member(CS, self.clients[0].leaf)
        for client in self.clients[1:]:
            self.tree.add_leaf(client.leaf)
        self.context = GroupContext(ProtocolVersion.MLS10, CS.id, GROUP_ID, 5,
                                    self.tree.tree_hash(), b"", extensions)

    def validate(self, proposals: Sequence[SenderProposal], committer: int = 0,
                 **kwargs: object) -> None:
        validate_proposal_list(CS, proposals, committer=Sender.member(committer),
                               tree=self.tree, group_context=self.context, now=NOW,
                               **kwargs)  # type: ignore[arg-type]


# -- building inputs -------------------------------------------------------------------------


def resign_leaf(client: Client, leaf: LeafNode, group_id: bytes | None = None,
                leaf_index: int | None = None, cs: CipherSuite = CS) -> LeafNode:
    tbs = leaf.tbs_bytes(group_id, leaf_index)
    return leaf.replace(signature=cs.sign_with_label(client.signature_priv, b"LeafNodeTBS",
                                                     tbs))


def resign_key_package(client: Client, key_package: KeyPackage,
                       cs: CipherSuite = CS) -> KeyPackage:
    return key_package.replace(signature=cs.sign_with_label(
        client.signature_priv, b"KeyPackageTBS", key_package.tbs_bytes()))


def with_leaf(client: Client, **changes: object) -> KeyPackage:
    """The client's KeyPackage with leaf fields changed, everything re-signed."""
    leaf = resign_leaf(client, client.leaf.replace(**changes))
    return resign_key_package(client, client.key_package.replace(leaf_node=leaf))


def update_leaf(client: Client, leaf_index: int, group_id: bytes = GROUP_ID,
                **changes: object) -> LeafNode:
    """A signed Update LeafNode for ``client`` at ``leaf_index`` with a fresh key."""
    _, encryption_key = CS.generate_hpke_key_pair(client.rng)
    fields: dict[str, object] = {"encryption_key": encryption_key,
                                 "leaf_node_source": LeafNodeSource.UPDATE,
                                 "lifetime": None}
    fields.update(changes)
    return resign_leaf(client, client.leaf.replace(**fields), group_id, leaf_index)


def by_value(proposal: Proposal, committer: int = 0) -> SenderProposal:
    return SenderProposal(proposal, Sender.member(committer), None)


def by_ref(proposal: Proposal, sender: Sender) -> SenderProposal:
    return SenderProposal(proposal, sender, b"ref:" + codec.encode(sender))


def psk_id(name: bytes = b"psk", nonce_byte: int = 1, **kwargs: object) -> PreSharedKeyID:
    return PreSharedKeyID(PSKType.EXTERNAL, bytes([nonce_byte]) * CS.hash_len, psk_id=name,
                          **kwargs)  # type: ignore[arg-type]


def required_caps_ext(**kwargs: tuple[int, ...]) -> Extension:
    return Extension(ExtensionType.REQUIRED_CAPABILITIES,
                     codec.encode(RequiredCapabilities(**kwargs)))
