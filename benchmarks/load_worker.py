"""One worker process of the load run (``benchmarks/load.py``): it owns a share of the
accounts -- MLS members on both networks for the bridged rooms, plain clients for the
native baselines -- and runs them on its own asyncio loop. The coordinator calls the
``async`` methods below through :class:`benchmarks.workers.WorkerPool`; accounts are
named by slot keys (``x3``: XMPP member 3, ``m3``: Matrix member 3, ``nx3`` / ``nm3``:
native XMPP / Matrix account 3), rooms by their reference on that kind of endpoint (the
MLS group id, the Matrix room id or the MUC room JID).

Timestamps are ``time.monotonic()`` (CLOCK_MONOTONIC, system-wide on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from benchmarks.bridge_run import (
    Person,
    hub_joined,
    matrix_person,
    matrix_room,
    until,
    xmpp_person,
)
from benchmarks.native import NativeMatrix, NativeXmpp
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer


@dataclass(frozen=True)
class Send:
    """One sender's share of a room in a phase (``offset``: its first scheduled send,
    seconds after the phase's start, in fixed-rate mode)."""

    key: str
    room: str  # the room's name (in the message texts)
    ref: Any
    count: int
    offset: float = 0.0


@dataclass(frozen=True)
class CommitPlan:
    """An update commit by ``key`` in group ``ref``, ``at`` seconds into the phase."""

    key: str
    ref: bytes
    at: float


class Endpoint(Protocol):
    async def send(self, ref: Any, text: str) -> None: ...

    def got(self, ref: Any) -> dict[str, tuple[int, float]]: ...

    def has(self, ref: Any, texts: list[str]) -> bool: ...

    async def close(self) -> None: ...


class Bridged:
    """An MLS member as an endpoint: rooms are group ids."""

    def __init__(self, person: Person) -> None:
        self.person = person

    async def send(self, ref: bytes, text: str) -> None:
        await self.person.member.send_text(ref, text)

    def got(self, ref: bytes) -> dict[str, tuple[int, float]]:
        counts = Counter(t for _, t in self.person.texts(ref))
        arrivals = self.person.member.arrivals
        return {text: (n, arrivals.get(text, 0.0)) for text, n in counts.items()}

    def has(self, ref: bytes, texts: list[str]) -> bool:
        arrivals = self.person.member.arrivals
        return all(text in arrivals for text in texts)

    async def close(self) -> None:
        await self.person.close()


class Native:
    """A plain client (:mod:`benchmarks.native`) as an endpoint."""

    def __init__(self, client: NativeMatrix | NativeXmpp) -> None:
        self.client = client

    async def send(self, ref: str, text: str) -> None:
        await self.client.send(ref, text)

    def got(self, ref: str) -> dict[str, tuple[int, float]]:
        return self.client.arrivals.got(ref)

    def has(self, ref: str, texts: list[str]) -> bool:
        return self.client.arrivals.has(ref, texts)

    async def close(self) -> None:
        await self.client.close()


class LoadWorker:
    """The accounts of one worker process and what the coordinator asks of them."""

    def __init__(self, index: int, prosody: ProsodyServer, synapse: SynapseServer) -> None:
        self.index = index
        self.prosody = prosody
        self.synapse = synapse
        self.people: dict[str, Person] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.retired: list[Endpoint] = []  # closed, kept until the end: slixmpp leaves
        # tasks behind on disconnect that would be garbage-collected pending (and logged)

    # -- accounts ---------------------------------------------------------------------------

    async def make_people(self, keys: list[str], hub_user: str) -> dict[str, str]:
        """MLS members for the bridged rooms; their identities by key."""
        for key in keys:
            if key.startswith("x"):
                person = await xmpp_person(self.prosody, f"l{key}_", timeout=120.0,
                                           retry_window=120.0)
            else:
                person = await matrix_person(self.synapse, f"l{key}_", hub_user,
                                             request_timeout=180.0)
            self.people[key] = person
            self.endpoints[key] = Bridged(person)
        return {key: self.people[key].identity for key in keys}

    async def make_native(self, keys: list[str]) -> dict[str, str]:
        """Plain clients for the native rooms; their identities by key."""
        made: dict[str, str] = {}
        for key in keys:
            client: NativeMatrix | NativeXmpp
            if key.startswith("nm"):
                client = await NativeMatrix.create(self.synapse, f"{key}_")
            else:
                client = await NativeXmpp.create(self.prosody, f"{key}_")
            self.endpoints[key] = Native(client)
            made[key] = client.identity
        return made

    def _native(self, key: str) -> NativeMatrix | NativeXmpp:
        endpoint = self.endpoints[key]
        assert isinstance(endpoint, Native)
        return endpoint.client

    async def close_keys(self, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            endpoint = self.endpoints.pop(key)
            self.people.pop(key, None)
            self.retired.append(endpoint)
            with contextlib.suppress(Exception):
                await endpoint.close()

    async def close(self) -> None:
        await self.close_keys(list(self.endpoints))

    # -- native rooms -----------------------------------------------------------------------

    async def native_room(self, key: str, invite: list[str]) -> str:
        client = self._native(key)
        assert isinstance(client, NativeMatrix)
        return await client.create_room(invite)

    async def native_join(self, key: str, room: str) -> None:
        await self._native(key).join(room)

    async def native_joined(self, key: str, room: str, count: int) -> None:
        client = self._native(key)
        assert isinstance(client, NativeMatrix)

        async def everyone() -> bool:
            return await client.joined(room) >= count and room in client.client.rooms

        await until(everyone, f"{count} members in {room}", 120, poll=0.2)

    # -- bridged rooms and groups -----------------------------------------------------------

    async def make_room(self, key: str, hub_user: str) -> str:
        return await matrix_room(self.people[key], hub_user)

    async def hub_joined(self, key: str, room_id: str, hub_user: str) -> None:
        person = self.people[key]
        await until(lambda: hub_joined(person, room_id, hub_user), "the bot joining", 120,
                    poll=0.2)

    async def publish(self, counts: dict[str, int]) -> None:
        for key, count in counts.items():
            await self.people[key].member.publish_key_packages(count)

    async def create_group(self, key: str, xmpp_room: str, others: list[str]) -> bytes:
        member = self.people[key].member
        group_id = await member.create_group(transport="xmpp", room_id=xmpp_room)
        if others:
            await member.add_members(group_id, others)
        return group_id

    async def wait_in(self, group_id: bytes, keys: list[str], xmpp_room: str,
                      matrix_room: str, timeout: float) -> None:
        def all_in() -> bool:
            for key in keys:
                person = self.people[key]
                if not person.in_group(group_id):
                    return False
                if person.plugin is not None and xmpp_room not in person.plugin.rooms:
                    return False
                if person.link is not None and matrix_room not in person.client.rooms:
                    return False
            return True

        await until(all_in, f"everyone of this worker in group {xmpp_room}", timeout)

    async def states(self, group_id: bytes, keys: list[str]) -> list[tuple[int, bytes] | None]:
        """Each person's (epoch, epoch authenticator) in the group, None if not in it."""
        out: list[tuple[int, bytes] | None] = []
        for key in keys:
            person = self.people[key]
            if person.in_group(group_id):
                group = person.member.group(group_id)
                out.append((group.epoch, group.epoch_authenticator()))
            else:
                out.append(None)
        return out

    async def idle(self, keys: list[str], timeout: float) -> None:
        for key in keys:
            await asyncio.wait_for(self.people[key].member.idle(), timeout)

    # -- a phase ----------------------------------------------------------------------------

    async def talk(self, phase: str, sends: list[Send], commits: list[CommitPlan],
                   start_at: float, rate: float | None) -> dict[str, Any]:
        """Every share sent one after another, awaited, from ``start_at`` on (at ``rate``
        messages/s per sender when given: send n is due at ``start_at + offset + n /
        rate`` and its latency counts from then, however late it starts); the commits
        race with them. Returns the texts sent with their start (or due) times and the
        commits made."""
        sent: list[tuple[str, str, str, float]] = []  # room, sender key, text, t0

        async def share(plan: Send) -> None:
            endpoint = self.endpoints[plan.key]
            for n in range(plan.count):
                text = f"{phase} {plan.room} {plan.key} #{n}"
                if rate is None:
                    await _sleep_until(start_at)
                    t0 = time.monotonic()
                else:
                    t0 = start_at + plan.offset + n / rate
                    await _sleep_until(t0)
                sent.append((plan.room, plan.key, text, t0))
                await endpoint.send(plan.ref, text)

        async def commit(plan: CommitPlan) -> int:
            await _sleep_until(start_at + plan.at)
            return int(await self.people[plan.key].member.update(plan.ref) is not None)

        made = await asyncio.gather(*(commit(c) for c in commits),
                                    *(share(s) for s in sends))
        return {"sent": sent, "commits": sum(made[:len(commits)])}

    async def arrived(self, expect: list[tuple[str, Any, list[str]]], timeout: float) -> bool:
        """Wait until every (key, room, texts) has all its texts; False at the timeout."""
        def done() -> bool:
            return all(self.endpoints[key].has(ref, texts) for key, ref, texts in expect)

        try:
            await until(done, "every message", timeout, poll=0.1)
        except AssertionError:
            return False
        return True

    async def received(self, entries: list[tuple[str, Any]]
                       ) -> list[dict[str, tuple[int, float]]]:
        """For each (key, room): text -> (times received, first arrival)."""
        return [self.endpoints[key].got(ref) for key, ref in entries]


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
