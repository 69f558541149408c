"""key-schedule.json: the epoch key schedule (RFC 9420 §8, §8.5)."""

from __future__ import annotations

from typing import Any

from mls.codec import encode
from mls.crypto import suite
from mls.enums import ProtocolVersion
from mls.messages.extensions import GroupContext
from mls.schedule.key_schedule import advance_epoch, export_secret, external_key_pair

_SECRET_FIELDS = (
    "sender_data_secret", "encryption_secret", "exporter_secret", "epoch_authenticator",
    "external_secret", "confirmation_key", "membership_key", "resumption_psk",
    "init_secret",
)


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    group_id = bytes.fromhex(case["group_id"])
    init_secret = bytes.fromhex(case["initial_init_secret"])
    for epoch, ep in enumerate(case["epochs"]):
        context = GroupContext(
            version=ProtocolVersion.MLS10,
            cipher_suite=cs.id,
            group_id=group_id,
            epoch=epoch,
            tree_hash=bytes.fromhex(ep["tree_hash"]),
            confirmed_transcript_hash=bytes.fromhex(ep["confirmed_transcript_hash"]),
            extensions=(),
        )
        context_bytes = encode(context)
        assert context_bytes.hex() == ep["group_context"], f"epoch {epoch}: group_context"
        joiner, welcome, secrets = advance_epoch(
            cs, init_secret, bytes.fromhex(ep["commit_secret"]),
            bytes.fromhex(ep["psk_secret"]), context_bytes)
        assert joiner.hex() == ep["joiner_secret"], f"epoch {epoch}: joiner_secret"
        assert welcome.hex() == ep["welcome_secret"], f"epoch {epoch}: welcome_secret"
        for name in _SECRET_FIELDS:
            assert getattr(secrets, name).hex() == ep[name], f"epoch {epoch}: {name}"
        exporter = ep["exporter"]
        # The format gives the label as a *string* (its text happens to look like
        # hex); the context is hex-encoded bytes.
        exported = export_secret(cs, secrets.exporter_secret,
                                 exporter["label"].encode(),
                                 bytes.fromhex(exporter["context"]), exporter["length"])
        assert exported.hex() == exporter["secret"], f"epoch {epoch}: exporter"
        _, external_pub = external_key_pair(cs, secrets.external_secret)
        assert external_pub.hex() == ep["external_pub"], f"epoch {epoch}: external_pub"
        init_secret = secrets.init_secret
