"""Passive client scenarios (test-vectors.md "Passive Client Scenarios"): the three
files passive-client-welcome, passive-client-handling-commit and
passive-client-random.

A client joins from ``welcome`` (with ``ratchet_tree`` if given and the
``external_psks``), checks the initial epoch authenticator, then for every epoch
processes the proposals and the commit and checks the epoch authenticator
(RFC 9420 §8, §12.4.2, §12.4.3.1).
"""

from __future__ import annotations

from typing import Any

from mls.codec import decode
from mls.crypto import suite
from mls.group.join import join_from_welcome
from mls.group.key_package import KeyPackageBundle
from mls.group.process import process_message
from mls.group.state import GroupState
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage
from mls.messages.welcome import Welcome


def _message(hex_data: str) -> MLSMessage:
    return decode(MLSMessage, bytes.fromhex(hex_data))


def _bundle(case: dict[str, Any]) -> KeyPackageBundle:
    cs = suite(case["cipher_suite"])
    key_package = _message(case["key_package"]).body
    assert isinstance(key_package, KeyPackage)
    signature_priv = bytes.fromhex(case["signature_priv"])
    # P-521 keys in these vectors sometimes drop a leading zero byte (65 bytes instead
    # of Nsk = 66); mls.crypto accepts such shortened scalars.
    encryption_priv = bytes.fromhex(case["encryption_priv"])
    init_priv = bytes.fromhex(case["init_priv"])
    leaf = key_package.leaf_node
    assert cs.signature_public_key(signature_priv) == leaf.signature_key, "signature_priv"
    assert cs.hpke_public_key(encryption_priv) == leaf.encryption_key, "encryption_priv"
    assert cs.hpke_public_key(init_priv) == key_package.init_key, "init_priv"
    return KeyPackageBundle(key_package, init_priv, encryption_priv, signature_priv)


def external_psks(case: dict[str, Any]) -> dict[bytes, bytes]:
    """The case's external PSKs by id."""
    return {bytes.fromhex(entry["psk_id"]): bytes.fromhex(entry["psk"])
            for entry in case["external_psks"]}


def join(case: dict[str, Any]) -> GroupState:
    """The passive client's state after joining from the case's Welcome."""
    bundle = _bundle(case)
    welcome = _message(case["welcome"]).body
    assert isinstance(welcome, Welcome)
    tree_hex = case.get("ratchet_tree")
    ratchet_tree = bytes.fromhex(tree_hex) if tree_hex else None
    return join_from_welcome(welcome, bundle, ratchet_tree=ratchet_tree,
                             external_psks=external_psks(case))


def check(case: dict[str, Any]) -> None:
    psks = external_psks(case)
    state = join(case)
    expected = bytes.fromhex(case["initial_epoch_authenticator"])
    assert state.secrets.epoch_authenticator == expected, "initial epoch_authenticator"
    for number, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            state, _ = process_message(state, _message(proposal), external_psks=psks)
        state, _ = process_message(state, _message(epoch["commit"]), external_psks=psks)
        expected = bytes.fromhex(epoch["epoch_authenticator"])
        assert state.secrets.epoch_authenticator == expected, f"epoch {number} authenticator"
