"""The delivery service (RFC 9750 §5.2): the hub that orders each group's commits,
keeps its log, KeyPackage directory and GroupInfo, and fans messages out.

- :mod:`bridge.hub.delivery` -- :class:`Hub`, one strongly consistent delivery service
  per group;
- :mod:`bridge.hub.public_view` -- what the hub checks without group secrets;
- :mod:`bridge.hub.attestation` -- the hub as its members' Authentication Service
  (hub-info, attest, the credential checks at publish and of Adds);
- :mod:`bridge.hub.identity` -- :class:`HubIdentity`, its name, signing keys and CA;
- :mod:`bridge.hub.policy` -- :class:`HubConfig` (local policy) and
  :class:`HubObserver` (metrics hook);
- :mod:`bridge.hub.store` -- its persistent state (SQLite, PostgreSQL).
"""

from __future__ import annotations

from bridge.hub.delivery import HUB_SENDER, Hub
from bridge.hub.identity import HubIdentity
from bridge.hub.policy import HubConfig, HubObserver

__all__ = ["HUB_SENDER", "Hub", "HubConfig", "HubIdentity", "HubObserver"]
