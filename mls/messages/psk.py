"""Pre-shared key identifiers (RFC 9420 §8.4)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.codec import Reader, Writer
from mls.enums import PSKType, ResumptionPSKUsage, closed_enum
from mls.errors import DecodeError


@dataclass(frozen=True, slots=True)
class PreSharedKeyID:
    """RFC 9420 §8.4.  External PSKs set ``psk_id``; resumption PSKs set
    ``usage``, ``psk_group_id`` and ``psk_epoch``."""

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes = b""
    usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION
    psk_group_id: bytes = b""
    psk_epoch: int = 0

    def encode(self, w: Writer) -> None:
        w.u8(self.psktype)
        if self.psktype == PSKType.EXTERNAL:
            w.opaque(self.psk_id)
        else:
            w.u8(self.usage)
            w.opaque(self.psk_group_id)
            w.u64(self.psk_epoch)
        w.opaque(self.psk_nonce)

    @classmethod
    def decode(cls, r: Reader) -> PreSharedKeyID:
        psktype = closed_enum(PSKType, r.u8())
        if psktype == PSKType.EXTERNAL:
            psk_id = r.opaque()
            return cls(PSKType.EXTERNAL, psk_nonce=r.opaque(), psk_id=psk_id)
        if psktype == PSKType.RESUMPTION:
            usage = closed_enum(ResumptionPSKUsage, r.u8())
            group_id = r.opaque()
            epoch = r.u64()
            return cls(PSKType.RESUMPTION, psk_nonce=r.opaque(), usage=usage,
                       psk_group_id=group_id, psk_epoch=epoch)
        raise DecodeError(f"unknown PSK type {psktype}")
