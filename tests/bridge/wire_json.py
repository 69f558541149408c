"""JSON lines for Inbound/Outbound between the test and hub worker processes (base64
for bytes). A stand-in for a real transport's serialization."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from transports.interface import Inbound, KeyPackageListing, Outbound


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _bytes(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def to_json(value: Inbound | Outbound) -> dict[str, Any]:
    return dict(_plain(value))


def inbound_from_json(data: dict[str, Any]) -> Inbound:
    return Inbound(**{key: _bytes(value) for key, value in data.items()})


def outbound_from_json(data: dict[str, Any]) -> Outbound:
    fields = {key: _bytes(value) for key, value in data.items()}
    fields["recipients"] = tuple(fields["recipients"])
    fields["rooms"] = tuple(tuple(room) for room in fields["rooms"])
    fields["entries"] = tuple(outbound_from_json(item) for item in fields["entries"])
    fields["key_packages"] = tuple(
        KeyPackageListing(**{k: _bytes(v) for k, v in item.items()})
        for item in fields["key_packages"])
    return Outbound(**fields)
