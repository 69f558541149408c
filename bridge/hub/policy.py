"""The hub's local policy (:class:`HubConfig`) and the observer that watches it from
outside (:class:`HubObserver`, fed to the metrics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from transports.interface import Inbound, Outbound


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Local policy. ``max_epoch_lag``: how many epochs an application message may be
    behind the current one. ``allow_external_join(group_id, identity)`` decides who may
    fetch the GroupInfo and join by external commit (members may always resync).

    Faults the hub cannot verify (:mod:`bridge.hub.faults`): ``fault_quorum`` distinct
    members reporting one commit get its committer removed and banned from the group
    (every other member, if there are fewer); a report may name a commit at most
    ``report_window`` epochs old; at most ``external_commit_limit`` external commits
    per identity and group in any ``external_commit_window`` seconds."""

    max_payload: int = 1 << 20
    max_epoch_lag: int = 1
    log_page_limit: int = 500
    fault_quorum: int = 2
    report_window: int = 16
    external_commit_limit: int = 3
    external_commit_window: int = 60
    allow_external_join: Callable[[bytes, str], bool] = field(
        default=lambda group_id, identity: True)


class HubObserver(Protocol):
    """Watches the hub from outside (metrics): every request and every delivery."""

    def request_started(self, request: Inbound) -> None: ...

    def request_finished(self, request: Inbound, reply: Outbound | None,
                         seconds: float) -> None: ...

    def delivery_started(self, message: Outbound) -> None: ...

    def delivery_finished(self, message: Outbound, ok: bool) -> None: ...
