"""The hub's local policy (:class:`HubConfig`, :class:`JoinPolicy`, :class:`RoomPolicy`)
and the observer that watches it from outside (:class:`HubObserver`, fed to the
metrics). What the policy means is written in ``docs/SECURITY.md``; it is enforced in
one place, :mod:`bridge.hub.authz`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from bridge.credentials import DEFAULT_VALIDITY
from transports.interface import Inbound, Outbound

DAY = 86400


class JoinPolicy(enum.StrEnum):
    """Who may join a group by external commit (and read its GroupInfo), besides a
    member resyncing its own identity (RFC 9750 §4, "Access Control": an explicit
    policy for external joins).

    ``invite``: nobody (members add people); ``room``: whoever is a member of one of
    the group's rooms on its own network; ``open``: anyone authenticated."""

    INVITE = "invite"
    ROOM = "room"
    OPEN = "open"

    @property
    def rank(self) -> int:
        """Strictness order: when a group's rooms disagree, the strictest wins."""
        return (JoinPolicy.INVITE, JoinPolicy.ROOM, JoinPolicy.OPEN).index(self)


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """One configured room pair (``[[bridge.rooms]]``): its rooms as (transport, room
    id), who may join, and its administrators (identity URIs; moderators of the pair's
    room on their own network, and the owners of its XMPP room)."""

    rooms: tuple[tuple[str, str], ...]
    join: JoinPolicy = JoinPolicy.INVITE
    admins: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Local policy.

    Sizes and paging: ``max_payload`` (bytes of one request), ``max_epoch_lag`` (how
    many epochs an application message may be behind), ``log_page_limit``.
    Membership: ``default_join`` for groups without a configured room.
    KeyPackage directory quotas: ``max_key_packages_per_device`` (unexpired ones),
    ``max_devices`` (per identity), ``max_device_name`` (characters),
    ``max_key_package_lifetime`` (seconds from ``not_before`` to ``not_after``),
    ``max_key_package_size`` (bytes), ``claims_per_target`` (outstanding claims of one
    target per group, and per claimer) and ``claim_ttl`` (seconds a claim stays
    outstanding unless the commit adding the target lands first).

    Faults the hub cannot verify (:mod:`bridge.hub.faults`): ``fault_quorum`` distinct
    members reporting one commit get its committer removed and banned from the group
    (every other member, if there are fewer); a report may name a commit at most
    ``report_window`` epochs old; at most ``external_commit_limit`` external commits
    per identity and group in any ``external_commit_window`` seconds.

    Attestation (:mod:`bridge.hub.attestation`): ``certificate_validity``, the seconds
    an X.509 credential the hub issues is valid.

    Per-user quotas of what the hub stores (docs/SECURITY.md, "Limits"):
    ``max_groups_per_user`` groups an identity created that still exist,
    ``max_pending_welcomes`` Welcomes waiting for one recipient (a commit that would
    add one more is refused).

    Fan-out (:mod:`bridge.hub.fanout`): at most ``delivery_backlog`` entries of one
    group wait for delivery; a request finding no room within ``admit_timeout``
    seconds is refused as "unavailable", before anything is logged.

    Files across networks (:mod:`bridge.hub.media`): ``max_media_size`` (bytes of one
    fetched file), at most ``media_fetch_limit`` fetches per identity in any
    ``media_fetch_window`` seconds."""

    max_payload: int = 1 << 20
    max_epoch_lag: int = 1
    log_page_limit: int = 500
    default_join: JoinPolicy = JoinPolicy.INVITE
    max_key_packages_per_device: int = 100
    max_devices: int = 10
    max_device_name: int = 64
    max_key_package_lifetime: int = 91 * DAY
    max_key_package_size: int = 16384
    claims_per_target: int = 3
    claim_ttl: int = 3600
    fault_quorum: int = 2
    report_window: int = 16
    external_commit_limit: int = 3
    external_commit_window: int = 60
    certificate_validity: int = DEFAULT_VALIDITY
    max_groups_per_user: int = 100
    max_pending_welcomes: int = 64
    delivery_backlog: int = 256
    admit_timeout: float = 10.0
    max_media_size: int = 32 * 1024 * 1024
    media_fetch_limit: int = 30
    media_fetch_window: int = 60


class HubObserver(Protocol):
    """Watches the hub from outside (metrics): every request and every delivery."""

    def request_started(self, request: Inbound) -> None: ...

    def request_finished(self, request: Inbound, reply: Outbound | None,
                         seconds: float) -> None: ...

    def delivery_started(self, message: Outbound) -> None: ...

    def delivery_finished(self, message: Outbound, ok: bool) -> None: ...
