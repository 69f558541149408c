"""How the relay plugs its puppets into the hub's deliveries: the relay owns this
protocol, and the bridge's delivering side implements it
(:class:`bridge.app.services.bridge.RoutingDeliverer`), so the relay never imports the
service that runs it."""

from __future__ import annotations

from typing import Protocol

from transports.interface import DeliverySink


class LocalRouting(Protocol):
    """Deliveries for a local identity go to its sink in-process (and are left out of
    what the networks see)."""

    def add_local(self, identity: str, sink: DeliverySink) -> None:
        """Deliver to ``sink`` what is addressed to ``identity`` from now on."""
        ...

    def remove_local(self, identity: str) -> None:
        """Stop delivering to ``identity`` in-process (nothing if it was not local)."""
        ...


__all__ = ["LocalRouting"]
