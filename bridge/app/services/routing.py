"""Routing the hub's deliveries by recipient URI, for the bridge's one hub.

:class:`RoutingDeliverer` is the :class:`transports.interface.Deliverer` (and the
:class:`bridge.hub.fanout.Split`) of :class:`bridge.app.services.bridge.BridgeService`:
each recipient gets its delivery over the network its URI names (``xmpp:`` via the
component, ``matrix:u/`` via the bot) or, for relay puppets, in-process
(:class:`bridge.relay.routing.LocalRouting`). The hub's fan-out sends each lane --
the puppets, each network -- from its own ordered queue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial

from bridge.hub.fanout import Send, lane_send
from transports.errors import LinkError
from transports.interface import (
    IDENTITY_SCHEMES,
    Deliverer,
    DeliverySink,
    Kind,
    Outbound,
    network_of,
)


class RoutingDeliverer:
    """The hub's one :class:`Deliverer`: routes each delivery by recipient URI.

    Local sinks (relay puppets) get theirs in-process and are left out of what the
    networks see. Room events go to every network transport (each posts into the
    group's rooms on its network, or to its own recipients directly when the group has
    no room there); a Welcome only to the joiner's network. Failures on one network do
    not stop the other; they are raised together afterwards as one LinkError (the hub
    logs it; a Welcome stays pending for fetch-welcomes)."""

    def __init__(self) -> None:
        self.networks: dict[str, Deliverer] = {}
        self.local: dict[str, DeliverySink] = {}

    def add_local(self, identity: str, sink: DeliverySink) -> None:
        """:class:`bridge.relay.routing.LocalRouting`: ``identity`` is served in-process."""
        self.local[identity] = sink

    def remove_local(self, identity: str) -> None:
        self.local.pop(identity, None)

    def split(self, message: Outbound) -> list[tuple[str, Send, Outbound]]:
        """:class:`bridge.hub.fanout.Split`: one lane for the local sinks (enqueue
        only), one per network (its recipients only; a Welcome only to the joiner's),
        and for a Welcome with recipients on no network, a lane that fails it."""
        remote = tuple(r for r in message.recipients if r not in self.local)
        lanes: list[tuple[str, Send, Outbound]] = []
        sinks = [self.local[r] for r in message.recipients if r in self.local]
        if sinks:
            lanes.append(("local", partial(_to_sinks, sinks), message))
        for transport, deliverer in self.networks.items():
            mine = tuple(r for r in remote if r.startswith(IDENTITY_SCHEMES[transport]))
            if message.kind == Kind.WELCOME and not mine:
                continue
            lanes.append((transport, lane_send(deliverer),
                          dataclasses.replace(message, recipients=mine)))
        unroutable = [r for r in remote if not network_of(r) or network_of(r)
                      not in self.networks]
        if unroutable and message.kind == Kind.WELCOME:
            lanes.append(("unroutable", partial(_unroutable, unroutable), message))
        return lanes

    async def deliver(self, message: Outbound) -> None:
        """Every lane of :meth:`split` in turn; failures on one network do not stop
        the others, they are raised together afterwards as one LinkError."""
        failures: list[str] = []
        for lane, send, part in self.split(message):
            try:
                await send(part)
            except LinkError as exc:
                failures.append(f"{lane}: {exc}")
        if failures:
            raise LinkError("; ".join(failures))


async def _to_sinks(sinks: Sequence[DeliverySink], message: Outbound) -> None:
    for sink in sinks:
        await sink.deliver(message)  # enqueues only


async def _unroutable(recipients: Sequence[str], message: Outbound) -> None:
    raise LinkError(f"no network for {', '.join(recipients)}")


__all__ = ["RoutingDeliverer"]
