"""welcome.json: decrypt a Welcome, verify its GroupInfo signature and confirmation
tag (RFC 9420 §12.4.3.1)."""

from __future__ import annotations

from typing import Any

from mls.codec import decode, encode
from mls.crypto import suite
from mls.framing.refs import key_package_ref
from mls.framing.welcome import decrypt_group_info, open_group_secrets, verify_group_info
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage
from mls.messages.welcome import Welcome
from mls.schedule import derive_welcome_secret, epoch_from_joiner, verify_confirmation_tag


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    key_package = decode(MLSMessage, bytes.fromhex(case["key_package"])).body
    welcome = decode(MLSMessage, bytes.fromhex(case["welcome"])).body
    assert isinstance(key_package, KeyPackage), "key_package is not an MLSMessage(KeyPackage)"
    assert isinstance(welcome, Welcome), "welcome is not an MLSMessage(Welcome)"

    ref = key_package_ref(cs, key_package)
    secrets = open_group_secrets(cs, welcome, key_package, ref,
                                 bytes.fromhex(case["init_priv"]))
    assert secrets.psks == (), "this vector uses no PSKs"
    welcome_secret = derive_welcome_secret(cs, secrets.joiner_secret, b"")
    group_info = decrypt_group_info(cs, welcome_secret, welcome.encrypted_group_info)
    verify_group_info(cs, group_info, bytes.fromhex(case["signer_pub"]))

    _, epoch = epoch_from_joiner(cs, secrets.joiner_secret, b"", encode(group_info.group_context))
    verify_confirmation_tag(cs, epoch.confirmation_key,
                            group_info.group_context.confirmed_transcript_hash,
                            group_info.confirmation_tag)
