"""The group manager, delivery hub and member client (see docs/ARCHITECTURE.md).

- :mod:`bridge.hub` -- :class:`Hub`, the strongly consistent delivery service per group;
- :mod:`bridge.public_view` -- what the hub checks without group secrets;
- :mod:`bridge.member` -- :class:`Member`, the transport-agnostic MLS client;
- :mod:`bridge.content` -- the CBOR inner content of application messages;
- :mod:`bridge.transport` -- the bytes/strings/ints interface transports implement;
- :mod:`bridge.memory` -- an in-memory transport for tests and local development;
- :mod:`bridge.store` -- the hub's persistent state (SQLite, PostgreSQL).
"""

from __future__ import annotations

from bridge.content import Attachment, Content
from bridge.errors import (
    BridgeError,
    ContentError,
    HubRefused,
    LinkError,
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
from bridge.transport import (
    Deliverer,
    DeliverySink,
    HubLink,
    HubService,
    Inbound,
    KeyPackageListing,
    Kind,
    Op,
    Outbound,
)

__all__ = [
    "Attachment",
    "BridgeError",
    "CommitPlan",
    "Content",
    "ContentError",
    "Deliverer",
    "DeliverySink",
    "Hub",
    "HubConfig",
    "HubIdentity",
    "HubLink",
    "HubRefused",
    "HubService",
    "Inbound",
    "KeyPackageListing",
    "Kind",
    "LinkError",
    "Member",
    "MemberError",
    "MemberStore",
    "MemoryLink",
    "MemoryMemberStore",
    "MemoryNetwork",
    "Op",
    "Outbound",
    "Received",
    "Rejection",
    "RetryPolicy",
]
