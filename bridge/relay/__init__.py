"""Relay mode: the bridge speaks MLS for people who do not run an MLS client.

- :mod:`bridge.relay.relay` -- :class:`Relay`: puppets for legacy users, their input
  encrypted into the group, the group's messages re-emitted as plaintext;
- :mod:`bridge.relay.reemits` -- the group's messages the puppets decrypted, re-emitted
  exactly once across restarts (a persisted cursor; bounded queues);
- :mod:`bridge.relay.puppets` -- the puppet member and its in-process link to the hub
  (as its ``relay+`` identity);
- :mod:`bridge.relay.secrets_file` -- the puppets' keys and group state, in a 0600 file
  of their own (never in the hub's store);
- :mod:`bridge.relay.upgrade` -- earlier versions' puppets on start: moved out of the
  hub store's cursors, and those named by network identities retired;
- :mod:`bridge.relay.notices` -- what everyone in a relayed room is told, and when;
- :mod:`bridge.relay.observers` -- legacy room activity (joins, plain messages) from
  the XMPP component and the Matrix bot into the relay;
- :mod:`bridge.relay.routing` -- the protocol through which the bridge's deliverer
  hands puppets their deliveries in-process.
"""

from __future__ import annotations

from bridge.relay.notices import NOTICE, OFF_NOTICE
from bridge.relay.relay import Relay
from bridge.relay.secrets_file import PuppetSecrets

__all__ = ["NOTICE", "OFF_NOTICE", "PuppetSecrets", "Relay"]
