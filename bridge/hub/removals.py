"""The hub's own Remove proposals (RFC 9420 §12.1.8.1): :class:`HubRemoves` makes them,
signed as the group's external sender with their reason (:class:`bridge.reasons.Removal`,
CBOR in the signed ``authenticated_data``) so members can show who was removed, by
whom and why; queues them for the next commit; and proposes them again after an
external commit voided them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bridge.errors import Forbidden, NotMember
from bridge.hub import public_view
from bridge.hub.identity import HubIdentity
from bridge.hub.public_view import GroupViews
from bridge.hub.store import Conflict, Store
from bridge.reasons import FAULT, KICK, LEAVE, REPLACED, Removal, room_of
from mls import (
    CredentialValidator,
    ProposalEvent,
    PublicGroup,
    Remove,
    Sender,
    SenderType,
    encode,
    external_sender_proposal,
)

#: The sender name of the hub's own log entries.
HUB_SENDER = "hub"

__all__ = ["FAULT", "HUB_SENDER", "KICK", "LEAVE", "REPLACED", "HubRemoves", "Removal", "room_of"]


class HubRemoves:
    """The hub's own Remove proposals (RFC 9420 §12.1.8.1), signed as the group's
    external sender with their :class:`Removal` in the authenticated data, queued
    for the next commit (which must cover them) and announced through ``announce``
    (the hub's fan-out of a proposal at a log seq)."""

    def __init__(self, store: Store, identity: HubIdentity, views: GroupViews,
                 clock: Callable[[], int],
                 validator: Callable[[], CredentialValidator | None],
                 announce: Callable[[PublicGroup, int, bytes], Awaitable[None]]) -> None:
        self.store = store
        self.identity = identity
        self.verifier = identity.ca.anchor  # X.509 identities, through the hub's CA
        self.views = views
        self.clock = clock
        self.validator = validator
        self.announce = announce

    def hub_key(self, group: PublicGroup) -> bytes:
        return self.identity.signature_public(group.context.cipher_suite)

    async def queue(self, group: PublicGroup, identity: str, removal: Removal,
                    signature_key: bytes | None = None) -> list[int]:
        """Queue a Remove of every leaf of ``identity`` (only the one with
        ``signature_key``, if given) not already being removed by the hub; return the
        log seqs. :class:`NotMember` if it holds no such leaf, the store's
        :class:`WrongEpoch` if another process ended the epoch meanwhile."""
        leaves = public_view.leaves_of(group, identity, self.verifier, signature_key)
        if not leaves:
            raise NotMember(f"{identity} is not a member of the group")
        suite_id = group.context.cipher_suite
        index = public_view.sender_index(group, self.hub_key(group))
        if index is None:
            raise Forbidden("the hub is not an external sender of this group")
        already = {leaf for leaf, _ in self.pending(group, index)}
        seqs = []
        for leaf in leaves:
            if leaf in already:
                continue
            message = external_sender_proposal(
                group.cs, group.group_id, group.epoch, index,
                self.identity.signature_priv(suite_id), Remove(leaf),
                authenticated_data=removal.encode())
            new, event = group.process(message, now=self.clock(),
                                       credential_validator=self.validator())
            assert isinstance(event, ProposalEvent)
            payload = encode(message)
            try:
                seq = await self.store.queue_proposal(group.group_id, group.epoch, event.ref,
                                                      payload, HUB_SENDER)
            except Conflict:
                continue
            group = new
            self.views.put(group)
            seqs.append(seq)
            await self.announce(group, seq, payload)
        return seqs

    @staticmethod
    def pending(group: PublicGroup, index: int) -> list[tuple[int, Removal]]:
        """The leaves the hub's pending Removes (external sender ``index``) remove,
        with their reasons."""
        return [(item.proposal.removed,
                 Removal.decode(item.authenticated_data) or Removal(LEAVE, HUB_SENDER))
                for item in group.proposals()
                if isinstance(item.proposal, Remove)
                and item.sender == Sender(SenderType.EXTERNAL, sender_index=index)]

    async def repropose(self, old: PublicGroup, new: PublicGroup) -> None:
        """After an external commit, which cannot cover proposals by reference (RFC
        9420 §12.4.3.2) and so voids them: propose again the hub's Removes of the old
        epoch, and those of banned identities still in the group."""
        index = public_view.sender_index(old, self.hub_key(old))
        owed: dict[str, Removal] = {}
        for leaf, removal in [] if index is None else self.pending(old, index):
            identity = public_view.leaf_identity(old, leaf, self.verifier)
            if identity is not None:
                owed.setdefault(identity, removal)
        for ban in await self.store.bans(new.group_id):
            owed.setdefault(ban.identity, Removal(FAULT, self.identity.name))
        for identity, removal in owed.items():
            if public_view.leaves_of(new, identity, self.verifier):
                await self.queue(new, identity, removal)
