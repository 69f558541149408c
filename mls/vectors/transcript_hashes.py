"""transcript-hashes.json: confirmed/interim transcript hashes and the confirmation
tag (RFC 9420 §8.2, §6.1)."""

from __future__ import annotations

from typing import Any

from mls.codec import decode
from mls.crypto import suite
from mls.enums import ContentType
from mls.messages.framing import (
    AuthenticatedContent,
    confirmed_transcript_hash_input,
    interim_transcript_hash_input,
)
from mls.schedule.transcript import (
    confirmed_transcript_hash,
    interim_transcript_hash,
    verify_confirmation_tag,
)


def check(case: dict[str, Any]) -> None:
    cs = suite(case["cipher_suite"])
    content = decode(AuthenticatedContent, bytes.fromhex(case["authenticated_content"]))
    assert content.content.content_type == ContentType.COMMIT, "content is not a Commit"
    tag = content.auth.confirmation_tag
    assert tag is not None, "Commit without confirmation_tag"

    confirmed_after = bytes.fromhex(case["confirmed_transcript_hash_after"])
    verify_confirmation_tag(cs, bytes.fromhex(case["confirmation_key"]), confirmed_after, tag)

    confirmed = confirmed_transcript_hash(
        cs, bytes.fromhex(case["interim_transcript_hash_before"]),
        confirmed_transcript_hash_input(content))
    assert confirmed == confirmed_after, "confirmed_transcript_hash_after"
    interim = interim_transcript_hash(cs, confirmed, interim_transcript_hash_input(tag))
    assert interim.hex() == case["interim_transcript_hash_after"], "interim_transcript_hash_after"
