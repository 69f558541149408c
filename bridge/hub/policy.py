"""The hub's local policy (:class:`HubConfig`) and the observer that watches it from
outside (:class:`HubObserver`, fed to the metrics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bridge.credentials import DEFAULT_VALIDITY
from transports.interface import Inbound, Outbound


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Local policy. ``max_epoch_lag``: how many epochs an application message may be
    behind the current one. ``allow_external_join(group_id, identity)`` decides who may
    fetch the GroupInfo and join by external commit (members may always resync).
    ``certificate_validity``: seconds an attestation (X.509 credential) is valid."""

    max_payload: int = 1 << 20
    max_epoch_lag: int = 1
    log_page_limit: int = 500
    certificate_validity: int = DEFAULT_VALIDITY
    allow_external_join: Callable[[bytes, str], bool] = field(
        default=lambda group_id, identity: True)


class HubObserver(Protocol):
    """Watches the hub from outside (metrics): every request and every delivery."""

    def request_started(self, request: Inbound) -> None: ...

    def request_finished(self, request: Inbound, reply: Outbound | None,
                         seconds: float) -> None: ...

    def delivery_started(self, message: Outbound) -> None: ...

    def delivery_finished(self, message: Outbound, ok: bool) -> None: ...
