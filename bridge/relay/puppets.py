"""The relay's puppets: one MLS member per legacy user, run by the bridge.

- :class:`LocalLink` -- a puppet's link straight into the hub, as its relayed identity
  (``relay+`` + the identity the legacy network authenticated);
- :class:`Puppet` -- a :class:`bridge.member.Member` whose decrypted messages go to the
  relay (:class:`ReEmitter`) and are not kept, and whose saves wait for the re-emits
  (:class:`EmittedFirst`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from bridge.member import GroupSlot, Member, Received
from transports.interface import HubService, Inbound, Network, Outbound


class LocalLink:
    """A puppet's :class:`transports.interface.HubLink`: straight into the hub, as
    its relayed identity (``relay+xmpp:...``, :func:`bridge.identities.relay_identity`),
    on network ``local`` -- the only way a relayed identity reaches the hub
    (docs/SECURITY.md, "Relay mode")."""

    def __init__(self, identity: str, hub: HubService) -> None:
        self._identity = identity
        self._hub = hub

    @property
    def identity(self) -> str:
        return self._identity

    async def request(self, request: Inbound) -> Outbound:
        return await self._hub.handle(dataclasses.replace(request, sender=self._identity,
                                                          network=Network.LOCAL))


class ReEmitter(Protocol):
    """What a puppet needs of the relay (:class:`bridge.relay.relay.Relay`)."""

    def on_decrypted(self, received: Received) -> None:
        """Take a message a puppet decrypted (to re-emit it; it is not kept)."""
        ...

    def emitted_through(self, group_id: bytes, seq: int) -> bool:
        """Whether every message of the group up to ``seq`` that a puppet decrypted
        has been re-emitted."""
        ...

    async def wait_emitted(self, group_id: bytes, seq: int) -> None:
        """Wait until :meth:`emitted_through` holds (or give up after a while)."""
        ...


class EmittedFirst:
    """A puppet's :class:`bridge.member.SavePolicy`: never save group state past a
    message the relay has not re-emitted yet."""

    def __init__(self, relay: ReEmitter) -> None:
        self._relay = relay

    def may_save(self, slot: GroupSlot) -> bool:
        return self._relay.emitted_through(slot.group.group_id, slot.next_seq - 1)

    async def settle(self, slot: GroupSlot) -> None:
        await self._relay.wait_emitted(slot.group.group_id, slot.next_seq - 1)


class Puppet(Member):
    """A legacy user's leaf. Decrypted messages go to the relay and are not kept.

    Its keys are deleted once a message is decrypted (RFC 9420 §9.2) and the plaintext
    is never stored, so the puppet must not save its group state past a message the
    relay has not yet re-emitted: after a ``kill -9`` it would not see that message
    again. Saving therefore waits (or, when lazy, is skipped) until every message up to
    the puppet's position has been handed on (:class:`EmittedFirst`)."""

    def __init__(self, link: LocalLink, relay: ReEmitter, **kwargs: Any) -> None:
        super().__init__(link, on_received=relay.on_decrypted, keep_received=False,
                         save_policy=EmittedFirst(relay), **kwargs)


__all__ = ["EmittedFirst", "LocalLink", "Puppet", "ReEmitter"]
