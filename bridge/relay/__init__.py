"""Relay mode: the bridge speaks MLS for people who do not run an MLS client.

- :mod:`bridge.relay.relay` -- :class:`Relay`: puppets for legacy users, their input
  encrypted into the group, the group's messages re-emitted as plaintext;
- :mod:`bridge.relay.puppets` -- the puppet member, its in-process link to the hub and
  its key store in the hub store's cursors;
- :mod:`bridge.relay.observers` -- legacy room activity (joins, plain messages) from
  the XMPP component and the Matrix bot into the relay;
- :mod:`bridge.relay.routing` -- the protocol through which the bridge's deliverer
  hands puppets their deliveries in-process.
"""

from __future__ import annotations

from bridge.relay.relay import NOTICE, Relay

__all__ = ["NOTICE", "Relay"]
