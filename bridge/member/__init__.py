"""The member client: the transport-agnostic MLS client. It talks to the hub through any
:class:`transports.interface.HubLink` (the XMPP client plugin, the Matrix helper, an
in-process link); the relay's puppets, the demo and the tests are members.

- :mod:`bridge.member.client` -- :class:`Member`: creating, joining, committing, sending;
- :mod:`bridge.member.inbox` -- :class:`Inbox`, its receiving half (a collaborator the
  member owns): deliveries applied in log order, lazy saving;
- :mod:`bridge.member.recovery` -- :class:`Recovery`: a commit it cannot process is
  reported to the hub, then resynced by external commit at most once per interval;
- :mod:`bridge.member.state` -- its store protocol, retry policy, per-group slot,
  received-message records and the two hooks (on received, save policy);
- :mod:`bridge.member.content` -- the CBOR inner content of application messages
  (text, replies, edits, retractions, reactions, encrypted files);
- :mod:`bridge.member.attachments` -- end-to-end encrypted files (AES-256-GCM, a key
  per file, the ciphertext out of band);
- :mod:`bridge.member.sqlite_store` -- a device's state in a 0600 SQLite file;
- :mod:`bridge.member.safety` -- a group's safety number and members' key fingerprints;
- :mod:`bridge.member.identity` -- :class:`MemberIdentity`, its side of the bridge's
  Authentication Service: its credential (attested by the hub, X.509 mode) or basic
  one, the hub's CA pinned on first use, the validator for every leaf it accepts;
- :mod:`bridge.member.events` -- :class:`MembershipEvent`, every membership change
  (who, by whom, how).
"""

from __future__ import annotations

from bridge.member.attachments import fetch_file, open_sealed, send_file
from bridge.member.client import Member
from bridge.member.content import Attachment, Content, ExternalPart, new_message_id
from bridge.member.events import EventKind, MembershipEvent, MembershipHook
from bridge.member.identity import MemberIdentity
from bridge.member.inbox import Inbox
from bridge.member.recovery import Recovery
from bridge.member.safety import (
    MemberInfo,
    fingerprint,
    group_safety_number,
    member_list,
    safety_number,
)
from bridge.member.sqlite_store import SqliteMemberStore
from bridge.member.state import (
    CommitPlan,
    GroupSlot,
    MemberStore,
    MemoryMemberStore,
    Received,
    ReceivedHook,
    RetryPolicy,
    SaveAnytime,
    SavePolicy,
)

__all__ = [
    "Attachment",
    "CommitPlan",
    "Content",
    "EventKind",
    "ExternalPart",
    "GroupSlot",
    "Inbox",
    "Member",
    "MemberIdentity",
    "MemberInfo",
    "MemberStore",
    "MembershipEvent",
    "MembershipHook",
    "MemoryMemberStore",
    "Received",
    "ReceivedHook",
    "Recovery",
    "RetryPolicy",
    "SaveAnytime",
    "SavePolicy",
    "SqliteMemberStore",
    "fetch_file",
    "fingerprint",
    "group_safety_number",
    "member_list",
    "new_message_id",
    "open_sealed",
    "safety_number",
    "send_file",
]
