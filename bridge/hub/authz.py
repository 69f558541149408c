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

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

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
from bridge.hub.media import media_network
from bridge.hub.policy import HubConfig, JoinPolicy, RoomPolicy
from bridge.hub.public_view import identities, leaf_identity, sender_index
from bridge.hub.store import Store
from bridge.identities import IdentityVerifier, identity_of, is_network_identity, is_relayed
from mls import (
    Add,
    GroupContextExtensions,
    KeyPackage,
    MLSMessage,
    Proposal,
    PublicCommit,
    PublicGroup,
    PublicMessage,
    ReInit,
    Remove,
    Sender,
    SenderType,
    Update,
)
from mls.messages.proposals import Commit
from transports.interface import (
    IDENTITY_SCHEMES,
    Inbound,
    MediaSource,
    Network,
    NetworkEvent,
    Op,
    Role,
    RoomDirectory,
    network_of,
)

#: The authority of the hub's own proposals (Removes for network leaves and kicks).
HUB = "hub"
SHA256_SIZE = 32


LoadView = Callable[[bytes], Awaitable[PublicGroup]]


@dataclass(frozen=True, slots=True)
class CommitChanges:
    """What a commit changes, as the rules need it (RFC 9420 §12.4.2), each change
    with its *authority*: the identity whose decision it is -- the committer for a
    proposal by value, the proposer for a member's proposal by reference, :data:`HUB`
    for the hub's own proposals (another external sender's proposal is the
    committer's: it chose to commit it).

    ``removals``: (authority, removed identity) per removed leaf; ``context_changes``
    and ``reinits``: the authorities of GroupContextExtensions and ReInit proposals;
    ``added``: the identities of the leaves the commit adds (an external commit's
    joiner included)."""

    committer: str
    external: bool
    removals: tuple[tuple[str, str], ...] = ()
    context_changes: tuple[str, ...] = ()
    reinits: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


class Authorizer:
    """The rules of ``docs/SECURITY.md`` (see the module docstring).

    ``directories`` maps each network to its hub-side transport's room roles, ``media``
    to its media store (if it keeps files behind a login); room pairs from the
    configuration are registered with :meth:`configure`."""

    def __init__(self, store: Store, config: HubConfig, load: LoadView,
                 verifier: IdentityVerifier | None) -> None:
        self.store = store
        self.config = config
        self._load = load
        #: Reads the identities of X.509 credentials (the hub's CA).
        self.verifier = verifier
        self.directories: dict[str, RoomDirectory] = {}
        self.media: dict[str, MediaSource] = {}
        self._policies: dict[tuple[str, str], RoomPolicy] = {}
        self._rules: dict[str, Callable[[Inbound], Awaitable[None]]] = {
            Op.HUB_INFO: self._anyone,
            Op.ATTEST: self._anyone,  # A15: the requester's own identity only (by design)
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
            Op.REPORT: self._member,  # A21 (what a report then does: bridge.hub.faults)
            Op.FETCH_MEDIA: self._fetch_media,  # A23 (the rate limit: bridge.hub.media)
        }

    # -- configuration ----------------------------------------------------------------

    def configure(self, policy: RoomPolicy) -> None:
        """Adopt a configured room pair: its join policy and administrators."""
        for room in policy.rooms:
            self._policies[room] = policy

    def policy(self, transport: str, room: str) -> RoomPolicy | None:
        return self._policies.get((transport, room))

    def unconfigure(self, policy: RoomPolicy) -> None:
        """Forget a room pair bridged at run time and then unbridged."""
        for room in policy.rooms:
            if self._policies.get(room) == policy:
                del self._policies[room]

    # -- room commands (A5, A22) ----------------------------------------------------------

    async def check_room_command(self, command: str, actor: str,
                                 rooms: Iterable[tuple[str, str]], *,
                                 present: bool = False) -> None:
        """A5, A22: who may give a room command about ``rooms`` (a pair's, or the one
        room a ``bridge`` request names on the actor's own network). ``bridge``: a
        moderator of that room -- the pair is made once a moderator of each room asked
        for it, so it takes both rooms' moderators; ``unbridge``, ``relay``: a
        moderator of either room of the pair (either side may take its room out, or
        turn relay mode off or on, and both rooms are told); ``status``: a member of
        either room, or an occupant of its XMPP room (``present``). Roles are held in
        rooms of one's own network only (:meth:`role`)."""
        rooms = list(rooms)
        if command == "status":
            if not present and not await self._holds(rooms, actor, Role.MEMBER):
                raise NotMember("only the rooms' members may see their bridge status")
            return
        if command not in ("bridge", "unbridge", "relay"):
            raise Unsupported(f"unknown room command {command!r}")
        if not await self._holds(rooms, actor, Role.MODERATOR):
            raise NotModerator(f"only a moderator of {' or '.join(r for _, r in rooms)} "
                               f"may {command} it")

    # -- the dispatcher's hook ----------------------------------------------------------

    async def check(self, request: Inbound) -> None:
        """Every request-level rule, before the handler runs (raises a Rejection)."""
        rule = self._rules.get(request.op)
        if rule is None:
            raise Unsupported(f"unknown request {request.op!r}")
        self._authenticate(request)
        await rule(request)

    def _authenticate(self, request: Inbound) -> None:
        """The requester: an identity of the network that authenticated it. The relay's
        in-process link (network ``local``) carries relayed identities only
        (``relay+xmpp:...``, ``relay+matrix:u/...``: :mod:`bridge.identities`), which
        no network can authenticate, so a relayed identity never acts as a network
        user and no network user acts as a relayed one (R1 of docs/SECURITY.md)."""
        if request.network == Network.LOCAL:
            if not is_relayed(request.sender):
                raise Unauthenticated("the relay link carries relayed identities "
                                      "(relay+<network identity>) only")
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
        """A13, A16, A21: for current members of the named group."""
        if not request.group_id:
            raise Malformed(f"{request.op} names its group")
        group = await self._load(request.group_id)
        if request.sender not in identities(group, self.verifier):
            raise NotMember(f"{request.sender} is not a member of the group")

    async def _fetch_media(self, request: Inbound) -> None:
        """A23: a current member of the named group, which has a room on the network
        holding the media; only media of that network's own server (the bridge's); a
        declared size within ``max_media_size`` and the SHA-256 to check."""
        await self._member(request)
        network = media_network(request.target)
        source = self.media.get(network)
        if source is None or not source.owns(request.target):
            raise Forbidden("only media of the bridge's own servers can be fetched")
        if network not in {transport for transport, _ in await self._rooms(request.group_id)}:
            raise Forbidden(f"the group has no room on {network}, where the media is")
        if not 0 < request.limit <= self.config.max_media_size:
            raise TooLarge(f"media of at most {self.config.max_media_size} bytes")
        if len(request.payload) != SHA256_SIZE:
            raise Malformed("fetch-media carries the SHA-256 of the media")

    async def _group_info(self, request: Inbound) -> None:
        """A14: a member, or whoever the join policy lets join by external commit."""
        group = await self._load(request.group_id)
        if request.sender not in identities(group, self.verifier):
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

    async def check_commit(self, request: Inbound, group: PublicGroup,
                           changes: CommitChanges) -> None:
        """A11: an external commit by a newcomer follows the join policy (a member
        resyncing its own identity always may). A8: removing another identity is the
        decision of a moderator of one of the group's rooms (the hub's Removes need
        nobody). A9: GroupContextExtensions and ReInit likewise. (A10, a leaf keeping
        its identity, is verified with the commit: :mod:`bridge.hub.commits`.)"""
        group_id = request.group_id
        if changes.external and request.sender not in identities(group, self.verifier):
            await self._check_join(group_id, request)
        self._check_relayed_joins(request, changes)
        decisions = [(authority, "remove other members") for authority, target
                     in changes.removals if authority not in (HUB, target)]
        decisions += [(authority, "change the group context")
                      for authority in changes.context_changes if authority != HUB]
        decisions += [(authority, "reinitialize the group")
                      for authority in changes.reinits if authority != HUB]
        for authority, what in decisions:
            if not await self._moderates(group_id, authority):
                raise NotModerator(f"only a moderator of the group's rooms may {what}")

    @staticmethod
    def _check_relayed_joins(request: Inbound, changes: CommitChanges) -> None:
        """R2: a relayed identity enters a group only by its own external commit over
        the relay link; nobody adds one (a member adding ``relay+xmpp:alice`` would
        plant a leaf that members show as "alice (relayed)")."""
        for added in changes.added:
            if is_relayed(added) and not (changes.external and added == request.sender
                                          and request.network == Network.LOCAL):
                raise Forbidden("relayed identities join only through the bridge's relay")

    async def check_message(self, request: Inbound, group: PublicGroup,
                            message: MLSMessage,
                            rooms: Sequence[tuple[str, str]] = ()) -> None:
        """A12: a member sends; one posted into a room (``request.event_id``: a Matrix
        member's room event) only into one of the group's ``rooms`` on its own network;
        a proposal (a PublicMessage: the hub refuses others before) follows A8/A9 for
        what it proposes, and an Update keeps its sender's identity (A10)."""
        if request.sender not in identities(group, self.verifier):
            raise NotMember(f"{request.sender} is not a member of the group")
        if request.event_id and (request.network != request.transport or (
                request.transport, request.room_id) not in rooms):
            raise Forbidden("a message is posted only into one of the group's rooms on "
                            "its sender's network")
        body = message.body
        if not isinstance(body, PublicMessage):
            return
        proposal = body.content.content
        if isinstance(proposal, Add):
            if is_relayed(identity_of(proposal.key_package.leaf_node.credential)):
                raise Forbidden("relayed identities join only through the bridge's relay")
            return
        if isinstance(proposal, Update):
            if identity_of(proposal.leaf_node.credential, self.verifier) != request.sender:
                raise Forbidden("an Update may not change its leaf's identity")
            return
        if isinstance(proposal, Remove):
            if leaf_identity(group, proposal.removed, self.verifier) in (request.sender, None):
                return
            needs = "propose removing other members"
        elif isinstance(proposal, GroupContextExtensions | ReInit):
            needs = "propose changing the group context"
        else:
            return
        if not await self._moderates(group.group_id, request.sender):
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
        if identity_of(key_package.leaf_node.credential, self.verifier) != request.sender:
            raise Forbidden("a KeyPackage may only be published by the user it names")
        if is_relayed(request.sender):
            raise Forbidden("relay puppets publish no KeyPackages: nobody adds them")
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
        if network_of(event.target) != event.network or \
                not is_network_identity(event.target):
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


def commit_changes(group: PublicGroup, message: MLSMessage, commit: PublicCommit,
                   committer: str, hub_key: bytes,
                   verifier: IdentityVerifier | None) -> CommitChanges:
    """What a commit the hub verified changes, with whose decision each change is (see
    :class:`CommitChanges`): the proposals come from the Commit itself (by value) and
    from the epoch's proposals the hub followed (by reference: their senders), the
    removed leaves from the verified :class:`~mls.PublicCommit`."""
    body = message.body
    assert isinstance(body, PublicMessage) and isinstance(body.content.content, Commit)
    pending = {event.ref: event for event in group.proposals()}
    hub_index = sender_index(group, hub_key)
    covered: list[tuple[str, Proposal]] = []
    for entry in body.content.content.proposals:
        if entry.proposal is not None:
            covered.append((committer, entry.proposal))
        elif entry.reference is not None and entry.reference in pending:
            event = pending[entry.reference]
            covered.append((_authority(group, event.sender, hub_index, committer, verifier),
                            event.proposal))
    by_leaf = {proposal.removed: who for who, proposal in covered
               if isinstance(proposal, Remove)}
    removals = tuple((by_leaf.get(int(leaf.leaf_index), committer),
                      identity_of(leaf.credential, verifier)) for leaf in commit.removed)
    return CommitChanges(
        committer, commit.external, removals,
        tuple(who for who, p in covered if isinstance(p, GroupContextExtensions)),
        tuple(who for who, p in covered if isinstance(p, ReInit)),
        tuple(identity_of(leaf.credential) for leaf in commit.added))


def _authority(group: PublicGroup, sender: Sender, hub_index: int | None,
               committer: str, verifier: IdentityVerifier | None) -> str:
    """Whose decision a proposal is: a member's own, the hub's, else the committer's."""
    if sender.sender_type == SenderType.MEMBER:
        return leaf_identity(group, sender.leaf_index, verifier) or committer
    if sender.sender_type == SenderType.EXTERNAL and sender.sender_index == hub_index:
        return HUB
    return committer
