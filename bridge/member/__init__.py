"""The member client: the transport-agnostic MLS client that the XMPP plugin, the
Matrix helper, the relay's puppets, the demo and the tests use.

- :mod:`bridge.member.client` -- :class:`Member`: creating, joining, committing, sending;
- :mod:`bridge.member.inbox` -- its receiving half: deliveries applied in log order;
- :mod:`bridge.member.state` -- its store protocol, retry policy and per-group records;
- :mod:`bridge.member.content` -- the CBOR inner content of application messages.
"""

from __future__ import annotations

from bridge.member.client import Member
from bridge.member.content import Attachment, Content
from bridge.member.state import (
    CommitPlan,
    MemberStore,
    MemoryMemberStore,
    Received,
    RetryPolicy,
)

__all__ = [
    "Attachment",
    "CommitPlan",
    "Content",
    "Member",
    "MemberStore",
    "MemoryMemberStore",
    "Received",
    "RetryPolicy",
]
