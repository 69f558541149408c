"""Resolving pre-shared keys (RFC 9420 §8.4, §8.6).

External PSKs are provisioned by the application under their ``psk_id``; resumption
PSKs are the ``resumption_psk`` of an earlier epoch of some group (§8.6), looked up
through a callback so that the group layer decides how many past epochs it keeps.
A PSK that cannot be found makes the Commit or Welcome that needs it unprocessable
(§12.4.2: "Verify that all PreSharedKey proposals ... are available").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from mls.enums import PSKType
from mls.errors import ValidationError
from mls.messages.psk import PreSharedKeyID

#: ``(group_id, epoch) -> resumption_psk`` or ``None`` when unknown.
ResumptionLookup = Callable[[bytes, int], bytes | None]

_NO_EXTERNAL_PSKS: Mapping[bytes, bytes] = MappingProxyType({})


def _no_resumption_psk(group_id: bytes, epoch: int) -> bytes | None:
    return None


def describe_psk_id(psk_id: PreSharedKeyID) -> str:
    """A log-safe name of a PSK: its id (never its value) in hex."""
    if psk_id.psktype == PSKType.EXTERNAL:
        return f"external PSK {psk_id.psk_id.hex()}"
    return (f"resumption PSK of group {psk_id.psk_group_id.hex()} epoch "
            f"{psk_id.psk_epoch} ({psk_id.usage.name.lower()})")


class PskResolver:
    """Resolves PreSharedKeyIDs to PSK values (RFC 9420 §8.4).

    ``external`` maps ``psk_id`` to the external PSK; ``resumption(group_id, epoch)``
    returns that epoch's ``resumption_psk`` (§8.6) or ``None``.
    """

    __slots__ = ("_external", "_resumption")

    def __init__(self, external: Mapping[bytes, bytes] = _NO_EXTERNAL_PSKS,
                 resumption: ResumptionLookup = _no_resumption_psk) -> None:
        self._external = external
        self._resumption = resumption

    def __repr__(self) -> str:
        return f"PskResolver(external={len(self._external)} PSKs)"

    def resolve_one(self, psk_id: PreSharedKeyID) -> bytes:
        """The value of one PSK; :class:`ValidationError` naming the id if missing."""
        if psk_id.psktype == PSKType.EXTERNAL:
            value = self._external.get(psk_id.psk_id)
        else:
            value = self._resumption(psk_id.psk_group_id, psk_id.psk_epoch)
        if value is None:
            raise ValidationError(f"{describe_psk_id(psk_id)} is not available")
        return value

    def resolve(self, ids: Sequence[PreSharedKeyID]) -> list[tuple[PreSharedKeyID, bytes]]:
        """Each id with its value, in the given order (the order of the Commit's
        PreSharedKey proposals or of GroupSecrets.psks, §8.4)."""
        return [(psk_id, self.resolve_one(psk_id)) for psk_id in ids]
