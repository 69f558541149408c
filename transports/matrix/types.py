"""The value types the Matrix transport exchanges with the bridge (bytes, str, int only).

They mirror :mod:`bridge.transport` field for field. They are defined here because
importing anything under ``bridge`` runs ``bridge/__init__.py``, which imports the hub
and the member client and therefore ``mls``: the transport must never load ``mls``
(import-linter contract, checked at run time by the tests). :mod:`bridge.services.matrix`
converts between these and :mod:`bridge.transport`'s classes (same names and fields).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Op(enum.StrEnum):
    """What an :class:`Inbound` asks of the hub (values equal bridge.transport.Op's)."""

    HUB_INFO = "hub-info"
    CREATE_GROUP = "create-group"
    ATTACH_ROOM = "attach-room"
    SUBMIT_COMMIT = "submit-commit"
    SEND = "send"
    FETCH_LOG = "fetch-log"
    GET_GROUP_INFO = "get-group-info"
    PUBLISH_KEY_PACKAGE = "publish-key-package"
    CLAIM_KEY_PACKAGE = "claim-key-package"
    LIST_KEY_PACKAGES = "list-key-packages"
    FETCH_WELCOMES = "fetch-welcomes"
    LEAVE = "leave"
    KICK = "kick"


class Kind(enum.StrEnum):
    """What an :class:`Outbound` carries (values equal bridge.transport.Kind's)."""

    REPLY = "reply"
    COMMIT = "commit"
    PROPOSAL = "proposal"
    APPLICATION = "application"
    WELCOME = "welcome"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request to the hub (bridge.transport.Inbound's fields)."""

    op: str
    sender: str
    request_id: str = ""
    group_id: bytes = b""
    payload: bytes = field(default=b"", repr=False)
    welcome: bytes = field(default=b"", repr=False)
    group_info: bytes = field(default=b"", repr=False)
    ratchet_tree: bytes = field(default=b"", repr=False)
    target: str = ""
    device: str = ""
    transport: str = ""
    room_id: str = ""
    cipher_suite: int = 0
    after_seq: int = 0
    limit: int = 0
    last_resort: bool = False

    def size(self) -> int:
        return (len(self.payload) + len(self.welcome) + len(self.group_info)
                + len(self.ratchet_tree))


@dataclass(frozen=True, slots=True)
class KeyPackageListing:
    ref: bytes
    user: str
    device: str
    cipher_suite: int
    expires_at: int
    last_resort: bool


@dataclass(frozen=True, slots=True)
class Outbound:
    """A reply or a delivery from the hub (bridge.transport.Outbound's fields)."""

    kind: str
    recipients: tuple[str, ...] = ()
    request_id: str = ""
    group_id: bytes = b""
    seq: int = 0
    epoch: int = 0
    sender: str = ""
    payload: bytes = field(default=b"", repr=False)
    ratchet_tree: bytes = field(default=b"", repr=False)
    ok: bool = True
    code: str = ""
    reason: str = ""
    rooms: tuple[tuple[str, str], ...] = ()
    entries: tuple[Outbound, ...] = field(default=(), repr=False)
    key_packages: tuple[KeyPackageListing, ...] = ()


class HubService(Protocol):
    async def handle(self, request: Inbound) -> Outbound: ...


class DeliverySink(Protocol):
    async def deliver(self, message: Outbound) -> None: ...
