"""secret-tree.json: sender data keys and sender ratchets (RFC 9420 §6.3.2, §9)."""

from __future__ import annotations

from typing import Any

from mls.crypto import suite
from mls.schedule.secret_tree import RatchetKind, SecretTree, sender_data_key_nonce


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    sender_data = case["sender_data"]
    key, nonce = sender_data_key_nonce(cs, bytes.fromhex(sender_data["sender_data_secret"]),
                                       bytes.fromhex(sender_data["ciphertext"]))
    assert key.hex() == sender_data["key"], "sender_data key"
    assert nonce.hex() == sender_data["nonce"], "sender_data nonce"

    leaves = case["leaves"]
    tree = SecretTree(cs, bytes.fromhex(case["encryption_secret"]), len(leaves),
                      max_forward_distance=1 << 16)
    for leaf, entries in enumerate(leaves):
        for entry in entries:
            generation = entry["generation"]
            for kind, prefix in ((RatchetKind.HANDSHAKE, "handshake"),
                                 (RatchetKind.APPLICATION, "application")):
                key, nonce = tree.key_for(leaf, kind, generation)
                where = f"leaf {leaf} generation {generation} {prefix}"
                assert key.hex() == entry[f"{prefix}_key"], f"{where} key"
                assert nonce.hex() == entry[f"{prefix}_nonce"], f"{where} nonce"
