"""An in-memory transport (asyncio queues) for tests and local development.

:class:`MemoryNetwork` plays both sides of a real transport:

* towards the hub it is the :class:`~transports.interface.Deliverer`: each delivery is put
  on one asyncio queue per registered sink of each recipient, and a pump task per sink
  hands them over in order (like a server's per-connection stream);
* towards members it hands out :class:`MemoryLink` objects (:class:`HubLink`), which
  stamp the link's identity as the request's ``sender`` and its network as the
  request's ``network`` (the network authenticates, not the client) and call the
  attached hub. A link plays the network its identity's scheme names, unless told
  otherwise (a test may pretend a network authenticated a foreign identity).

Its rooms (:class:`MemoryRooms`, one per network) are the
:class:`~transports.interface.RoomDirectory` of this transport: a test sets who holds
which role where.

The hub can be detached and another attached (a restart): requests made meanwhile
wait for the next hub. Faults can be injected: :meth:`MemoryNetwork.drop_next_reply`
loses a reply after the hub acted on the request (the member sees a LinkError).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict

from transports.errors import LinkError
from transports.interface import (
    DeliverySink,
    HubService,
    Inbound,
    Network,
    Outbound,
    Role,
    network_of,
)


class _Pump:
    """One sink's ordered delivery queue and the task that drains it."""

    def __init__(self, sink: DeliverySink) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[Outbound] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self.sink.deliver(message)
            finally:
                self.queue.task_done()


class MemoryRooms:
    """One network's rooms in memory: the roles a test gave (a ``RoomDirectory``)."""

    def __init__(self) -> None:
        self.roles: dict[str, dict[str, Role]] = {}

    def set_role(self, room: str, identity: str, role: Role) -> None:
        self.roles.setdefault(room, {})[identity] = role

    async def role(self, room: str, identity: str) -> Role:
        return self.roles.get(room, {}).get(identity, Role.NONE)


class MemoryNetwork:
    """A hub, its members' links and the delivery queues between them."""

    def __init__(self, *, request_timeout: float = 30.0) -> None:
        self._hub: HubService | None = None
        self._hub_ready = asyncio.Event()
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._pumps: dict[str, list[_Pump]] = defaultdict(list)
        self._drop_replies: dict[str, int] = defaultdict(int)
        self.request_timeout = request_timeout
        self.delivered = 0
        self.rooms = {Network.XMPP: MemoryRooms(), Network.MATRIX: MemoryRooms()}

    # -- the hub side -------------------------------------------------------------------

    def attach(self, hub: HubService) -> None:
        """Route requests to ``hub`` (waiting requests proceed)."""
        self._hub = hub
        self._hub_ready.set()

    async def detach(self) -> None:
        """Stop routing new requests and wait for those in flight to finish."""
        self._hub = None
        self._hub_ready.clear()
        await self._drained.wait()

    async def deliver(self, message: Outbound) -> None:
        """:class:`Deliverer`: queue ``message`` for every sink of every recipient."""
        for recipient in message.recipients:
            for pump in self._pumps.get(recipient, ()):
                pump.queue.put_nowait(message)
                self.delivered += 1

    # -- the member side ------------------------------------------------------------------

    def link(self, identity: str, network: str | None = None) -> MemoryLink:
        return MemoryLink(self, identity, network_of(identity) if network is None
                          else network)

    def register(self, identity: str, sink: DeliverySink) -> None:
        """Deliver what is addressed to ``identity`` to ``sink`` (one of its devices)."""
        self._pumps[identity].append(_Pump(sink))

    def unregister(self, identity: str, sink: DeliverySink) -> None:
        pumps = self._pumps.get(identity, [])
        for pump in [p for p in pumps if p.sink is sink]:
            pump.task.cancel()
            pumps.remove(pump)

    def drop_next_reply(self, identity: str) -> None:
        """Lose the reply to the next request of ``identity`` (after the hub acted)."""
        self._drop_replies[identity] += 1

    async def settle(self) -> None:
        """Wait until every delivery queued so far was handed to its sink: first those
        the attached hub still holds (if it can say: an ``idle()`` coroutine method,
        as :class:`bridge.hub.Hub` has for its fan-out queues), then the pumps."""
        idle = getattr(self._hub, "idle", None)
        if idle is not None:
            await idle()
        for pumps in list(self._pumps.values()):
            for pump in list(pumps):
                await pump.queue.join()

    async def close(self) -> None:
        tasks = [pump.task for pumps in self._pumps.values() for pump in pumps]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pumps.clear()

    async def _request(self, identity: str, network: str, request: Inbound) -> Outbound:
        hub = self._hub
        while hub is None:  # the hub may be restarting: wait for the next one
            try:
                await asyncio.wait_for(self._hub_ready.wait(), self.request_timeout)
            except TimeoutError as exc:
                raise LinkError("no hub is reachable") from exc
            hub = self._hub
        self._inflight += 1
        self._drained.clear()
        try:
            reply = await hub.handle(dataclasses.replace(request, sender=identity,
                                                         network=network))
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._drained.set()
        if self._drop_replies[identity]:
            self._drop_replies[identity] -= 1
            raise LinkError("the reply was lost")
        return reply


class MemoryLink:
    """One member's connection to the hub through a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, identity: str, network_name: str) -> None:
        self._network = network
        self._identity = identity
        self.network = network_name

    @property
    def identity(self) -> str:
        return self._identity

    async def request(self, request: Inbound) -> Outbound:
        return await self._network._request(self._identity, self.network, request)
