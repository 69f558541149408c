"""Why the hub removes someone: the reason each of its Remove proposals carries in the
``authenticated_data`` it signs (RFC 9420 §6.1: the FramedContent, authenticated data
included, is covered by the sender's signature), so members can show who was removed,
by whom and why (SECURITY.md, "Identities members can check"). The hub writes it
(:mod:`bridge.hub.removals`), members read it (:mod:`bridge.member.events`).

Encoding: a CBOR map with text keys, in deterministic encoding (RFC 8949 §4.2.1)::

    { "reason": "leave" | "kick" | "fault" | "replaced",
      "by":     tstr,      ; who caused it: the leaver, the kicker, the hub itself, or
                           ; for "replaced" the identity that replaces the relay puppet
      ? "room": tstr }     ; "<transport>:<room id>" where it happened on the network

Decoding is strict (exactly such a map, canonically encoded); anything else is
``None``: a reason the hub did not write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

LEAVE = "leave"
KICK = "kick"
FAULT = "fault"
#: A relay puppet (a ``relay+`` identity, :mod:`bridge.identities`) removed because the
#: user it stood for now runs an MLS client (or, after an upgrade, because its leaf
#: still named the user's network identity): "relay puppet replaced by the user's own
#: client".
REPLACED = "replaced"
REASONS = frozenset({LEAVE, KICK, FAULT, REPLACED})
MAX_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Removal:
    """One reason for a hub Remove proposal (see the module docstring)."""

    reason: str
    by: str
    room: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown removal reason {self.reason!r}")

    def encode(self) -> bytes:
        """The canonical CBOR map."""
        value: dict[str, Any] = {"reason": self.reason, "by": self.by}
        if self.room:
            value["room"] = self.room
        return cbor2.dumps(value, canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> Removal | None:
        """The reason ``data`` encodes, or None if it is not one (see the docstring)."""
        if not data or len(data) > MAX_SIZE:
            return None
        try:
            value = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                                max_depth=1, tag_hook=_no_tags)
        except (cbor2.CBORError, ValueError, TypeError, OverflowError):
            return None
        if not isinstance(value, dict) or not set(value) <= {"reason", "by", "room"} or \
                not {"reason", "by"} <= set(value) or \
                not all(isinstance(item, str) for item in value.values()) or \
                value["reason"] not in REASONS:
            return None
        removal = cls(value["reason"], value["by"], value.get("room", ""))
        return removal if removal.encode() == data else None


def room_of(transport: str, room_id: str) -> str:
    """How a room is named in a :class:`Removal` (empty when there is none)."""
    return f"{transport}:{room_id}" if transport and room_id else ""


def _no_tags(decoder: object, tag: object) -> object:
    raise ValueError("no CBOR tags in a removal reason")
