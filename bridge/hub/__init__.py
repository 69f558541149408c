"""The delivery service (RFC 9750 §5.2): the hub that orders each group's commits,
keeps its log, KeyPackage directory and GroupInfo, and fans messages out.

- :mod:`bridge.hub.delivery` -- :class:`Hub`, one strongly consistent delivery service
  per group;
- :mod:`bridge.hub.commits` -- what it verifies of a new group and of every commit,
  against its own state of the group (``mls``'s PublicGroup);
- :mod:`bridge.hub.public_view` -- its view of a group through the ``mls`` API: parsing,
  identities, the ``hub_state`` record, the per-epoch cache;
- :mod:`bridge.hub.faults` -- members' reports of commits only they can find faulty,
  bans, the external-commit rate limit, and why no resync storm can be repeated;
- :mod:`bridge.hub.removals` -- the hub's own Remove proposals and their reasons;
- :mod:`bridge.hub.directory` -- the KeyPackage directory;
- :mod:`bridge.hub.attestation` -- the hub as its members' Authentication Service
  (hub-info, attest, the credential checks at publish and of Adds);
- :mod:`bridge.hub.identity` -- :class:`HubIdentity`, its name, signing keys and CA;
- :mod:`bridge.hub.policy` -- :class:`HubConfig` (local policy) and
  :class:`HubObserver` (metrics hook);
- :mod:`bridge.hub.store` -- its persistent state (SQLite, PostgreSQL).
"""

from __future__ import annotations

from bridge.hub.delivery import Hub
from bridge.hub.identity import HubIdentity
from bridge.hub.policy import HubConfig, HubObserver
from bridge.hub.removals import HUB_SENDER

__all__ = ["HUB_SENDER", "Hub", "HubConfig", "HubIdentity", "HubObserver"]
