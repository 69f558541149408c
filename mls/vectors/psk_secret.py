"""psk_secret.json: chaining external PSKs into psk_secret (RFC 9420 §8.4)."""

from __future__ import annotations

from typing import Any

from mls.crypto import suite
from mls.enums import PSKType
from mls.messages.psk import PreSharedKeyID
from mls.schedule.psk import psk_secret


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    psks = [
        (PreSharedKeyID(PSKType.EXTERNAL, psk_nonce=bytes.fromhex(p["psk_nonce"]),
                        psk_id=bytes.fromhex(p["psk_id"])),
         bytes.fromhex(p["psk"]))
        for p in case["psks"]
    ]
    assert psk_secret(cs, psks).hex() == case["psk_secret"], "psk_secret"
