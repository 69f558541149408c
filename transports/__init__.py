"""The transports: asyncio adapters that move opaque MLS bytes between members and the
hub. They import neither ``mls`` nor ``bridge`` (see docs/ARCHITECTURE.md).

- :mod:`transports.interface` -- the interface the bridge implements and uses: the
  request / reply value types and the four roles (hub, deliverer, link, sink);
- :mod:`transports.errors` -- :class:`TransportError` and :class:`LinkError`;
- :mod:`transports.fairness` -- the admission of requests at the hub-side transports:
  per-sender rate limits and fair, bounded queues;
- :mod:`transports.xmpp` -- XMPP: the hub as an XEP-0114 component, members as slixmpp
  clients;
- :mod:`transports.matrix` -- Matrix: the hub as a bot or application service, members
  through a client helper;
- :mod:`transports.memory` -- in-memory, for tests and local development.
"""
