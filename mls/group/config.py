"""Local policy of one group member (not part of the protocol state the peers share).

The values bound the work and memory a member spends on late or reordered messages
(RFC 9420 §9.1, §15.3 "deletion schedule") and choose how it frames what it sends
(RFC 9420 §6: handshake messages as PublicMessage or PrivateMessage, §6.3.1 padding,
§12.4.3.3 ratchet tree in the Welcome).
"""

from __future__ import annotations

from dataclasses import dataclass

from mls.codec import Reader, Writer
from mls.enums import WireFormat, closed_enum
from mls.errors import DecodeError, UsageError
from mls.schedule.secret_tree import DEFAULT_MAX_FORWARD_DISTANCE, DEFAULT_OUT_OF_ORDER_WINDOW


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Per-member group settings.

    ``out_of_order_window``: skipped generations whose keys are kept (§9.1).
    ``max_forward_distance``: how far a received generation may jump ahead.
    ``max_past_epochs``: how many previous epochs keep their application keys for
    late messages (0 = none).
    ``max_resumption_psks``: how many past epochs' resumption PSKs are kept (§8.6).
    ``padding_size``: PrivateMessage content is padded to a multiple of this (0 = none).
    ``ratchet_tree_in_welcome``: include the ratchet_tree extension in GroupInfo.
    ``external_pub_in_group_info``: include the external_pub extension in GroupInfo.
    ``handshake_wire_format``: PUBLIC_MESSAGE or PRIVATE_MESSAGE for proposals/commits.
    """

    out_of_order_window: int = DEFAULT_OUT_OF_ORDER_WINDOW
    max_forward_distance: int = DEFAULT_MAX_FORWARD_DISTANCE
    max_past_epochs: int = 2
    max_resumption_psks: int = 8
    padding_size: int = 0
    ratchet_tree_in_welcome: bool = True
    external_pub_in_group_info: bool = True
    handshake_wire_format: WireFormat = WireFormat.PUBLIC_MESSAGE

    def __post_init__(self) -> None:
        for name in ("out_of_order_window", "max_forward_distance", "max_past_epochs",
                     "max_resumption_psks", "padding_size"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFFFFFF:
                raise UsageError(f"GroupConfig.{name} must fit in uint32")
        if self.handshake_wire_format not in (WireFormat.PUBLIC_MESSAGE,
                                              WireFormat.PRIVATE_MESSAGE):
            raise UsageError("handshake_wire_format must be a public or private message")

    def encode(self, w: Writer) -> None:
        w.u32(self.out_of_order_window)
        w.u32(self.max_forward_distance)
        w.u32(self.max_past_epochs)
        w.u32(self.max_resumption_psks)
        w.u32(self.padding_size)
        w.boolean(self.ratchet_tree_in_welcome)
        w.boolean(self.external_pub_in_group_info)
        w.u16(self.handshake_wire_format)

    @classmethod
    def decode(cls, r: Reader) -> GroupConfig:
        values = (r.u32(), r.u32(), r.u32(), r.u32(), r.u32(), r.boolean(), r.boolean())
        wire_format = closed_enum(WireFormat, r.u16())
        try:
            return cls(*values, handshake_wire_format=wire_format)
        except UsageError as exc:
            raise DecodeError(f"invalid GroupConfig: {exc}") from exc
