"""The hub's authorization model, every rule in one place (``docs/SECURITY.md``).

Frame: RFC 9750 §8 (security and privacy considerations) and §4 ("Access Control":
MLS lets every member do everything; a service that wants roles must enforce them
itself, and must have "an explicit group policy setting the conditions under which
external joins are allowed"). The hub is the delivery service of its groups; it holds
no group secret, so it decides only what it can see: who asks (the identity and the
network that authenticated it), the public state of the group (members by leaf), the
rooms the group is attached to and the roles people hold there (asked from each
network's :class:`transports.interface.RoomDirectory`), and the public content of
handshake messages.

The hub's dispatcher calls :meth:`Authorizer.check` for every request before its
handler runs; handlers call the content rules (:meth:`Authorizer.check_commit`,
:meth:`Authorizer.check_message`, :meth:`Authorizer.check_key_package`) once they have
parsed what the rule needs; :meth:`Authorizer.check_network_event` judges a room
membership change reported by a transport. Each refusal is a
:class:`bridge.errors.Rejection` with a specific code. Rule ids (A1...) are those of
``docs/SECURITY.md``, which names each rule's tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bridge.errors import (
    Forbidden,
    JoinRefused,
    LifetimeTooLong,
    Malformed,
    NotMember,
    NotModerator,
    TooLarge,
    Unauthenticated,
    UnknownGroupRejection,
    Unsupported,
)
from bridge.hub.policy import HubConfig, JoinPolicy, RoomPolicy
from bridge.hub.store import Store
from bridge.identities import identity_of
from mls.messages.framing import PrivateMessage, PublicMessage
from mls.messages.key_package import KeyPackage
from mls.messages.proposals import (
    Commit,
    GroupContextExtensions,
    ReInit,
    Remove,
)
from transports.interface import (
    IDENTITY_SCHEMES,
    Inbound,
    Network,
    NetworkEvent,
    Op,
    Role,
    RoomDirectory,
    network_of,
)

#: The authority of the hub's own proposals (Removes for network leaves and kicks).
HUB = "hub"


class GroupView(Protocol):
    """What the rules read of a group's public state in its current epoch."""

    @property
    def epoch(self) -> int: ...

    @property
    def members(self) -> Mapping[int, str]: ...

    @property
    def identities(self) -> frozenset[str]: ...


LoadView = Callable[[bytes], Awaitable[GroupView]]


@dataclass(frozen=True, slots=True)
class CommitChanges:
    """What a commit changes, as the rules need it (RFC 9420 §12.4.2).

    ``removals``: (authority, removed identity) per removed leaf, where the authority is
    the identity whose decision it is -- the committer for a Remove by value or a
    proposal the hub did not queue, :data:`HUB` for the hub's own queued Removes.
    ``renamed``: identities of leaves that now name another identity (an Update or
    path that swaps the credential). ``context_changed``: GroupContextExtensions;
    ``reinit``: a ReInit."""

    committer: str
    external: bool
    removals: tuple[tuple[str, str], ...] = ()
    renamed: tuple[str, ...] = ()
    context_changed: bool = False
    reinit: bool = False


class Authorizer:
    """The rules of ``docs/SECURITY.md`` (see the module docstring).

    ``directories`` maps each network to its hub-side transport's room roles; room
    pairs from the configuration are registered with :meth:`configure`."""

    def __init__(self, store: Store, config: HubConfig, load: LoadView) -> None:
        self.store = store
        self.config = config
        self._load = load
        self.directories: dict[str, RoomDirectory] = {}
        self._policies: dict[tuple[str, str], RoomPolicy] = {}
        self._rules: dict[str, Callable[[Inbound], Awaitable[None]]] = {
            Op.HUB_INFO: self._anyone,
            Op.CREATE_GROUP: self._create_group,
            Op.ATTACH_ROOM: self._configuration_only,
            Op.SUBMIT_COMMIT: self._anyone,  # A6-A11: check_commit, on the parsed commit
            Op.SEND: self._anyone,  # A12: check_message, on the parsed message
            Op.FETCH_LOG: self._member,
            Op.GET_GROUP_INFO: self._group_info,
            Op.PUBLISH_KEY_PACKAGE: self._publish,
            Op.CLAIM_KEY_PACKAGE: self._claim,
            Op.LIST_KEY_PACKAGES: self._own_listing,
            Op.FETCH_WELCOMES: self._anyone,  # A18: only the requester's own, by query
            Op.LEAVE: self._leave,
            Op.KICK: self._network_only,
        }

    # -- configuration ----------------------------------------------------------------

    def configure(self, policy: RoomPolicy) -> None:
        """Adopt a configured room pair: its join policy and administrators."""
        for room in policy.rooms:
            self._policies[room] = policy

    def policy(self, transport: str, room: str) -> RoomPolicy | None:
        return self._policies.get((transport, room))

    # -- the dispatcher's hook ----------------------------------------------------------

    async def check(self, request: Inbound) -> None:
        """Every request-level rule, before the handler runs (raises a Rejection)."""
        rule = self._rules.get(request.op)
        if rule is None:
            raise Unsupported(f"unknown request {request.op!r}")
        self._authenticate(request)
        await rule(request)

    def _authenticate(self, request: Inbound) -> None:
        """The requester: an identity of the network that authenticated it (a relay
        puppet, network ``local``, may carry either network's identities)."""
        if request.network == Network.LOCAL:
            if not network_of(request.sender):
                raise Unauthenticated(f"{request.sender!r} is not an identity URI")
            return
        scheme = IDENTITY_SCHEMES.get(request.network)
        if scheme is None:
            raise Unauthenticated(f"unknown network {request.network!r}")
        if not request.sender.startswith(scheme) or len(request.sender) == len(scheme):
            raise Unauthenticated(f"an identity of {request.network} must start with "
                                  f"{scheme!r}")

    async def _anyone(self, request: Inbound) -> None:
        """A1, A18: any authenticated requester (content rules come later)."""

    async def _configuration_only(self, request: Inbound) -> None:
        """A5: rooms are attached by the configuration, never by a client."""
        raise Forbidden("rooms are attached by the bridge's configuration only")

    async def _network_only(self, request: Inbound) -> None:
        """A20: kicks are network events reported by a transport, never requests."""
        raise Forbidden("kicks happen on the network (room moderation), not by request")

    async def _member(self, request: Inbound) -> None:
        """A13: the log is for current members."""
        view = await self._load(request.group_id)
        if request.sender not in view.identities:
            raise NotMember(f"{request.sender} is not a member of the group")

    async def _group_info(self, request: Inbound) -> None:
        """A14: a member, or whoever the join policy lets join by external commit."""
        view = await self._load(request.group_id)
        if request.sender not in view.identities:
            await self._check_join(request.group_id, request)

    async def _leave(self, request: Inbound) -> None:
        """A19: a requester leaves for itself only."""
        if request.target and request.target != request.sender:
            raise Forbidden("a leave request removes its sender only")

    async def _own_listing(self, request: Inbound) -> None:
        """A17: only the identity itself lists its KeyPackages."""
        if request.target and request.target != request.sender:
            raise Forbidden("only the user itself may list its KeyPackages")

    # -- groups and rooms (A2-A4) ---------------------------------------------------------

    async def _create_group(self, request: Inbound) -> None:
        """A4: no room, anyone. A2: a configured pair's room, a moderator of one of the
        pair's rooms on the requester's own network (the bridge then attaches both).
        A3: an unconfigured room, its moderator, on the requester's own network."""
        if not request.transport and not request.room_id:
            return
        if not request.transport or not request.room_id:
            raise Malformed("a room needs both its transport and its id")
        policy = self.policy(request.transport, request.room_id)
        if policy is not None:
            own = [room for room in policy.rooms if room[0] == request.network]
            if not await self._holds(own, request.sender, Role.MODERATOR):
                raise NotModerator("only a moderator of one of the pair's rooms may "
                                   "create its group")
            return
        if request.transport != request.network:
            raise Forbidden("a room of another network is attached by configuration only")
        if not await self._holds([(request.transport, request.room_id)], request.sender,
                                 Role.MODERATOR):
            raise NotModerator("only a moderator of the room may create its group")

    async def role(self, transport: str, room: str, identity: str) -> Role:
        """``identity``'s role in a room: only an identity of the room's own network
        holds one; a configured administrator of the room is ADMIN; otherwise the
        network's directory decides."""
        if network_of(identity) != transport:
            return Role.NONE
        policy = self.policy(transport, room)
        if policy is not None and identity in policy.admins:
            return Role.ADMIN
        directory = self.directories.get(transport)
        return Role.NONE if directory is None else await directory.role(room, identity)

    async def _holds(self, rooms: Iterable[tuple[str, str]], identity: str, role: Role
                     ) -> bool:
        for transport, room in rooms:
            if await self.role(transport, room, identity) >= role:
                return True
        return False

    async def _rooms(self, group_id: bytes) -> list[tuple[str, str]]:
        return [(room.transport, room.room_id) for room in await self.store.group_rooms(group_id)]

    async def _moderates(self, group_id: bytes, identity: str) -> bool:
        """A moderator of an attached room; in a room-less group every member is equal
        (RFC 9750 §4: MLS itself lets every member do everything)."""
        rooms = await self._rooms(group_id)
        return not rooms or await self._holds(rooms, identity, Role.MODERATOR)

    # -- joining (A11, A14) -----------------------------------------------------------------

    async def join_policy(self, group_id: bytes) -> JoinPolicy:
        """The strictest policy among the group's rooms (``default_join`` for a room
        that is not configured, and for a group without rooms)."""
        policies = [policy.join if (policy := self.policy(*room)) is not None
                    else self.config.default_join for room in await self._rooms(group_id)]
        return min(policies or [self.config.default_join], key=lambda p: p.rank)

    async def _check_join(self, group_id: bytes, request: Inbound) -> None:
        if request.network == Network.LOCAL:
            return  # the relay's puppets, for rooms the operator put in relay mode
        policy = await self.join_policy(group_id)
        if policy == JoinPolicy.OPEN:
            return
        if policy == JoinPolicy.ROOM:
            own = [room for room in await self._rooms(group_id) if room[0] == request.network]
            if await self._holds(own, request.sender, Role.MEMBER):
                return
            raise JoinRefused("only members of the group's room on your network may join")
        raise JoinRefused("this group is joined by invitation only")

    # -- commits and proposals (A6-A12) ---------------------------------------------------

    async def check_commit(self, request: Inbound, view: GroupView,
                           changes: CommitChanges) -> None:
        """A11: an external commit by a newcomer follows the join policy (a member
        resyncing its own identity always may). A8: removing another identity needs
        a moderator of an attached room (the hub's queued Removes need nobody).
        A9: GroupContextExtensions and ReInit need a moderator. A10: a leaf keeps its
        identity."""
        group_id = request.group_id
        if changes.external and request.sender not in view.identities:
            await self._check_join(group_id, request)
        if changes.renamed:
            raise Forbidden("a leaf may not change its identity; add the new one instead")
        others = {target for authority, target in changes.removals
                  if authority not in (HUB, target)}
        needs = ("remove other members" if others else
                 "change the group context" if changes.context_changed else
                 "reinitialize the group" if changes.reinit else "")
        if needs and not await self._moderates(group_id, request.sender):
            raise NotModerator(f"only a moderator of the group's rooms may {needs}")

    async def check_message(self, request: Inbound, view: GroupView,
                            body: PublicMessage | PrivateMessage) -> None:
        """A12: a member sends; a proposal travels as a PublicMessage (the hub
        authorizes what it sees) and follows A8/A9 for what it proposes."""
        if request.sender not in view.identities:
            raise NotMember(f"{request.sender} is not a member of the group")
        if isinstance(body, PrivateMessage):
            if body.content_type.name == "PROPOSAL":
                raise Forbidden("proposals must be PublicMessages so the hub can check them")
            return
        proposal = body.content.content
        if isinstance(proposal, Remove):
            if view.members.get(proposal.removed) in (request.sender, None):
                return
            needs = "propose removing other members"
        elif isinstance(proposal, GroupContextExtensions | ReInit):
            needs = "propose changing the group context"
        else:
            return
        if not await self._moderates(request.group_id or body.content.group_id,
                                     request.sender):
            raise NotModerator(f"only a moderator of the group's rooms may {needs}")

    # -- KeyPackage directory (A15-A17) -------------------------------------------------------

    async def _publish(self, request: Inbound) -> None:
        """A15 (before parsing): the device name and the payload's size."""
        if len(request.device) > self.config.max_device_name:
            raise TooLarge(f"device names have at most {self.config.max_device_name} "
                           "characters")
        if len(request.payload) > self.config.max_key_package_size:
            raise TooLarge(f"KeyPackages have at most {self.config.max_key_package_size} "
                           "bytes")

    def check_key_package(self, request: Inbound, key_package: KeyPackage) -> None:
        """A15: only the identity the credential names publishes, with a lifetime of at
        most ``max_key_package_lifetime`` (RFC 9750 §5.3: a bounded lifetime limits a
        stale KeyPackage's damage). The per-device and per-user quotas are enforced by
        the store, atomically with the write."""
        if identity_of(key_package.leaf_node.credential) != request.sender:
            raise Forbidden("a KeyPackage may only be published by the user it names")
        lifetime = key_package.leaf_node.lifetime
        if lifetime is None:
            raise Malformed("a KeyPackage's leaf has a lifetime")
        if lifetime.not_after - lifetime.not_before > self.config.max_key_package_lifetime:
            raise LifetimeTooLong(f"the lifetime exceeds "
                                  f"{self.config.max_key_package_lifetime} seconds")

    async def _claim(self, request: Inbound) -> None:
        """A16: a claim names the group it adds the target to, and its requester is a
        member of that group (the outstanding-claims bound is the store's, atomic)."""
        if not request.target:
            raise Malformed("claim-key-package needs the target user")
        if not request.group_id:
            raise Malformed("claim-key-package names the group the target is added to")
        await self._member(request)

    # -- network events (A20) -----------------------------------------------------------------

    async def check_network_event(self, event: NetworkEvent) -> bytes:
        """A20: a room membership change acts only on an attached room of the network
        that reports it, on an identity of that network that was a member of the room
        before the event and is not after it, and -- when someone else made the change
        (a kick, a ban) -- only if that actor held the moderator role. Returns the
        group to remove the target from."""
        if network_of(event.target) != event.network:
            raise Forbidden("a network acts on its own identities only")
        group_id = await self.store.room_group(event.network, event.room)
        if group_id is None:
            raise UnknownGroupRejection(f"no group is attached to {event.room}")
        if not event.before.in_room:
            raise Forbidden("the target was not a member of the room")
        if event.after.in_room:
            raise Forbidden("the target is still a member of the room")
        if event.actor != event.target and not event.actor_moderator:
            raise NotModerator("the actor is not a moderator of the room")
        return group_id

    # -- reading the log (A13) ---------------------------------------------------------------

    async def readable_from(self, group_id: bytes, identity: str, current: int) -> int:
        """The first epoch whose log entries ``identity`` may read: the one it joined
        in (MLS gives a newcomer no key to earlier epochs, RFC 9750 §4 "Membership
        Changes"; the hub does not hand out their ciphertext either)."""
        since = await self.store.member_since(group_id, identity)
        return current if since is None else since


def commit_changes(view: GroupView, commit: Commit, committer: str, external: bool,
                   new_members: Mapping[int, str], hub_removes: Mapping[bytes, int]
                   ) -> CommitChanges:
    """Read a commit's changes from its proposals and the new member list.

    A Remove by value is the committer's decision; by reference, the hub's own queued
    Removes (``hub_removes``: ProposalRef -> removed leaf) are the hub's, and a leaf
    that disappears through any other reference is the committer's (it chose to commit
    that proposal). ``renamed``: a leaf present before and after, not removed, whose
    identity changed. GroupContextExtensions and ReInit count by value; a member's
    proposal of either was judged when it was sent (A12)."""
    removals: list[tuple[str, str]] = []
    removed: set[int] = set()
    context_changed = reinit = False
    for entry in commit.proposals:
        proposal = entry.proposal
        if entry.reference is not None and entry.reference in hub_removes:
            leaf = hub_removes[entry.reference]
            removed.add(leaf)
            removals.append((HUB, view.members.get(leaf, "")))
        elif isinstance(proposal, Remove):
            removed.add(proposal.removed)
            removals.append((committer, view.members.get(proposal.removed, "")))
        context_changed |= isinstance(proposal, GroupContextExtensions)
        reinit |= isinstance(proposal, ReInit)
    removals.extend((committer, who) for leaf, who in view.members.items()
                    if leaf not in new_members and leaf not in removed)
    renamed = tuple(sorted({who for leaf, who in view.members.items()
                            if leaf in new_members and new_members[leaf] != who
                            and leaf not in removed}))
    return CommitChanges(committer, external, tuple(removals), renamed, context_changed,
                         reinit)
