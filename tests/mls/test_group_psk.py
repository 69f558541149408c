"""PSK resolution (RFC 9420 §8.4): :mod:`mls.group.psk`."""

from __future__ import annotations

import pytest

from mls.enums import PSKType
from mls.errors import ValidationError
from mls.group.psk import PskResolver
from mls.messages.psk import PreSharedKeyID
from tests.mls.fixtures import GROUP_ID, psk_id


def test_psk_resolver_external_and_resumption_in_order() -> None:
    calls: list[tuple[bytes, int]] = []

    def resumption(group_id: bytes, epoch: int) -> bytes | None:
        calls.append((group_id, epoch))
        return b"resumption secret %d" % epoch if group_id == GROUP_ID else None

    resolver = PskResolver({b"ext": b"external secret"}, resumption)
    resumed = PreSharedKeyID(PSKType.RESUMPTION, b"\x00" * 32, psk_group_id=GROUP_ID,
                             psk_epoch=7)
    external_id = psk_id(b"ext")
    assert resolver.resolve([resumed, external_id]) == [
        (resumed, b"resumption secret 7"), (external_id, b"external secret")]
    assert calls == [(GROUP_ID, 7)]
    assert resolver.resolve([]) == []


def test_psk_resolver_missing_names_id_not_value() -> None:
    resolver = PskResolver({b"\x01\x02": b"the secret value"})
    with pytest.raises(ValidationError, match="0a0b") as info:
        resolver.resolve([psk_id(b"\x01\x02"), psk_id(b"\x0a\x0b")])
    assert "secret" not in str(info.value)
    unknown_group = PreSharedKeyID(PSKType.RESUMPTION, b"\x00" * 32, psk_group_id=b"\xab",
                                   psk_epoch=3)
    with pytest.raises(ValidationError, match="group ab epoch 3"):
        PskResolver().resolve([unknown_group])
    assert "secret" not in repr(resolver)
