"""The group manager, delivery hub and member client (see docs/ARCHITECTURE.md).

- :mod:`bridge.hub` -- :class:`Hub`, the strongly consistent delivery service per group;
- :mod:`bridge.public_view` -- what the hub checks without group secrets;
- :mod:`bridge.member` -- :class:`Member`, the transport-agnostic MLS client;
- :mod:`bridge.content` -- the CBOR inner content of application messages;
- :mod:`bridge.memory` -- an in-memory transport for tests and local development;
- :mod:`bridge.store` -- the hub's persistent state (SQLite, PostgreSQL).
"""

from __future__ import annotations

from bridge.content import Attachment, Content
from bridge.errors import (
    BridgeError,
    ContentError,
    HubRefused,
    MemberError,
    Rejection,
)
from bridge.hub import Hub, HubConfig, HubIdentity
from bridge.member import (
    CommitPlan,
    Member,
    MemberStore,
    MemoryMemberStore,
    Received,
    RetryPolicy,
)
from bridge.memory import MemoryLink, MemoryNetwork

__all__ = [
    "Attachment",
    "BridgeError",
    "CommitPlan",
    "Content",
    "ContentError",
    "Hub",
    "HubConfig",
    "HubIdentity",
    "HubRefused",
    "Member",
    "MemberError",
    "MemberStore",
    "MemoryLink",
    "MemoryMemberStore",
    "MemoryNetwork",
    "Received",
    "Rejection",
    "RetryPolicy",
]
