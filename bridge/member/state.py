"""The member client's state and policy types: its persistent store, retry policy,
received-message records, per-group working slot (:class:`GroupSlot`) and the two hooks
an owner of a member may set -- what happens to received messages
(:data:`ReceivedHook`) and when group state may be saved (:class:`SavePolicy`)
(see :mod:`bridge.member`)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bridge.member.content import Content
from bridge.member.events import MembershipEvent
from mls.codec import Reader, Writer
from mls.group.commit import StagedCommit
from mls.group.group import Group
from mls.messages.key_package import KeyPackage
from transports.interface import Outbound

#: Refusals after which catching up and retrying can succeed.
RETRYABLE = frozenset({"wrong-epoch", "proposals-not-covered", "unavailable", "stale-epoch"})


class MemberStore(Protocol):
    """Where a member keeps its secrets-bearing state (bytes by key)."""

    async def load(self, key: str) -> bytes | None: ...

    async def save(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self, prefix: str) -> list[str]: ...


class MemoryMemberStore:
    """The default :class:`MemberStore`: a dict (state is lost with the process)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def load(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def save(self, key: str, value: bytes) -> None:
        self._data[key] = value

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self._data if key.startswith(prefix))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff."""

    attempts: int = 10
    base_delay: float = 0.01
    max_delay: float = 0.5

    def delay(self, attempt: int, jitter: random.Random) -> float:
        backoff: float = min(self.max_delay, self.base_delay * 2.0 ** attempt)
        return backoff * jitter.uniform(0.5, 1.5)


@dataclass(frozen=True, slots=True)
class Received:
    """An application message as received: who sent it (the MLS leaf's credential),
    its content, and where it sits in the group's log."""

    group_id: bytes
    sender: str
    content: Content
    seq: int
    epoch: int


@dataclass(frozen=True, slots=True)
class CommitPlan:
    """What one commit attempt proposes by value (pending proposals are covered too)."""

    add: tuple[KeyPackage, ...] = ()
    remove: tuple[int, ...] = ()
    force_path: bool = False


Planner = Callable[[Group], Awaitable[CommitPlan | None]]


@dataclass(eq=False)
class GroupSlot:
    """One group's working state inside the member."""

    group: Group
    next_seq: int
    #: held to read or change the group state, never across a network round trip
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: one commit (or resync) of ours at a time; held across its round trip
    committing: asyncio.Lock = field(default_factory=asyncio.Lock)
    buffer: dict[int, Outbound] = field(default_factory=dict)
    sent: set[bytes] = field(default_factory=set)
    own_seqs: set[int] = field(default_factory=set)
    staged: StagedCommit | None = None
    staged_bytes: bytes = b""
    merged_seq: int = 0
    broken: bool = False
    dirty: bool = False
    persisted_at: float = 0.0
    received: list[Received] = field(default_factory=list)
    events: list[MembershipEvent] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u64(self.next_seq)
        w.vector(sorted(self.own_seqs), Writer.u64)
        w.opaque(self.group.to_bytes())
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupSlot:
        r = Reader(data)
        next_seq = r.u64()
        own = r.vector(Reader.u64)
        group = Group.from_bytes(r.opaque())
        r.finish("member group record")
        return cls(group, next_seq, own_seqs=set(own))


def digest(data: bytes) -> bytes:
    """How a member recognises the echo of its own message in the log: SHA-256."""
    return hashlib.sha256(data).digest()


#: Called with each application message a member decrypts, in log order.
ReceivedHook = Callable[[Received], None]


class SavePolicy(Protocol):
    """When a member may save a group's state (a relay puppet may not save past a
    message whose plaintext it has not yet handed on: :mod:`bridge.relay.puppets`)."""

    def may_save(self, slot: GroupSlot) -> bool:
        """Whether the slot may be saved as it is now (lazy saves skip it if not)."""
        ...

    async def settle(self, slot: GroupSlot) -> None:
        """Wait until :meth:`may_save` holds (before a save that cannot be skipped)."""
        ...


class SaveAnytime:
    """The default :class:`SavePolicy`: a member never waits to save."""

    def may_save(self, slot: GroupSlot) -> bool:
        return True

    async def settle(self, slot: GroupSlot) -> None:
        return None
