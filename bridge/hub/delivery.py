"""The delivery hub: one strongly consistent delivery service per group (RFC 9750 §5.2).

The hub never holds group secrets and never decrypts. It follows each group with
``mls``'s PublicGroup (:mod:`bridge.hub.public_view`) and applies every commit it
accepts to its own state of the group after verifying it (:mod:`bridge.hub.commits`);
what needs secrets is bounded by fault reports (:mod:`bridge.hub.faults`). Ordering
comes from the store (``accept_commit`` is a compare-and-set on the group's epoch
inside one database transaction), never from process memory, so several hub processes
may share one PostgreSQL database. A per-group asyncio lock
in each process keeps that process's fan-out in sequence order: under it the hub only
verifies, orders and logs, and queues the deliveries; they go out outside the lock,
through per-(group, network) ordered, bounded queues (:mod:`bridge.hub.fanout`), and a
request is admitted only while its group's delivery backlog has room.

Requests arrive as :class:`transports.interface.Inbound` through :meth:`Hub.handle`, which
always answers with an :class:`transports.interface.Outbound` reply: accepted (with the
sequence number and epoch) or refused with a specific code (:mod:`bridge.errors`).
Refused requests change nothing. Before any handler runs, the dispatcher asks
:class:`bridge.hub.authz.Authorizer` (the whole authorization model of
``docs/SECURITY.md``, for both networks); handlers ask it again for the rules that need
the parsed content. Room membership changes arrive apart, as
:class:`transports.interface.NetworkEvent` through :meth:`Hub.network_event`.
Deliveries go out through the transport's :class:`transports.interface.Deliverer`:
the accepted commit to every member of the old epoch, then each Welcome to its new
member; proposals and application messages to the current members.

Member-sent proposals (PublicMessages, verified and followed by the hub, so commits may
cover them by reference) are relayed; the next committer may include them. The hub's
own proposals (Removes for members who left, were kicked on the network or were
convicted by fault reports, signed as the group's external sender, the reason in their
authenticated data: :mod:`bridge.hub.removals`) are queued: the next member commit must
include them by reference or it is refused; after an external commit, which cannot
include proposals by reference (RFC 9420 §12.4.3.2), the hub proposes them again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bridge.errors import (
    AlreadyExists,
    Forbidden,
    Malformed,
    NotMember,
    ProposalsMissing,
    QuotaExceeded,
    Rejection,
    TooLarge,
    Unavailable,
    UnknownGroupRejection,
    WrongEpochRejection,
)
from bridge.hub import directory, faults, public_view
from bridge.hub.attestation import Attestation
from bridge.hub.authz import Authorizer, commit_changes
from bridge.hub.commits import Bundle, CheckedCommit, check_commit, check_new_group
from bridge.hub.fanout import FanOut
from bridge.hub.identity import HubIdentity
from bridge.hub.media import MediaFetches
from bridge.hub.messages import MessageLog, log_page, origin, parse_send
from bridge.hub.policy import HubConfig, HubObserver
from bridge.hub.public_view import GroupViews, identities
from bridge.hub.removals import FAULT, HUB_SENDER, KICK, LEAVE, HubRemoves, Removal, room_of
from bridge.hub.store import (
    Conflict,
    ProposalsNotCovered,
    Store,
    StoreError,
    StoreQuota,
    UnknownGroup,
    WrongEpoch,
)
from bridge.identities import relay_identity
from mls import (
    ContentType,
    CredentialValidator,
    MLSError,
    PublicGroup,
    WireFormat,
)
from transports.interface import (
    AGAIN,
    Deliverer,
    Inbound,
    Kind,
    NetworkEvent,
    Op,
    Outbound,
    RoomDirectory,
)

log = logging.getLogger(__name__)

Handler = Callable[[Inbound], Awaitable[Outbound]]


class Hub:
    """The delivery hub (see the module docstring); implements :class:`HubService`."""

    def __init__(self, store: Store, identity: HubIdentity, deliverer: Deliverer, *,
                 config: HubConfig | None = None,
                 clock: Callable[[], int] | None = None,
                 observer: HubObserver | None = None,
                 credential_validator: CredentialValidator | None = None,
                 directories: Mapping[str, RoomDirectory] | None = None) -> None:
        self.store = store
        self.observer = observer
        self.identity = identity
        self.clock = clock or (lambda: int(time.time()))
        config = config or HubConfig()
        #: The hub as its members' Authentication Service (its CA: ``anchor``).
        self.attestation = Attestation(identity, lambda: self.clock(),
                                       config.certificate_validity)
        self.anchor = self.attestation.anchor
        self.authz = Authorizer(store, config, self._members, self.anchor)
        self.authz.directories.update(directories or {})
        #: Asked about every credential by every PublicGroup the hub builds or advances
        #: and at publish: by default the hub's AS (X.509: attested by its CA, valid
        #: now; basic: accepted, their Adds tied to the directory). Another validator
        #: replaces both (a hub configured without these checks).
        self.credential_validator: CredentialValidator = \
            credential_validator or self.attestation.validator
        self._locks: dict[bytes, asyncio.Lock] = {}
        self.fanout = FanOut(deliverer, backlog=self.config.delivery_backlog,
                             admit_timeout=self.config.admit_timeout,
                             observer=lambda: self.observer)
        self.views = GroupViews(store, lambda: self.clock())
        self.removes = HubRemoves(store, identity, self.views, lambda: self.clock(),
                                  lambda: self.credential_validator, self._announce)
        self._external_commits = faults.ExternalCommitLimit()
        self.messages = MessageLog(store, self.views, self.authz, self.anchor,
                                   config=lambda: self.config, clock=lambda: self.clock(),
                                   credential_validator=lambda: self.credential_validator)
        self.media = MediaFetches(lambda: self.config, lambda: self.clock(), self.authz.media)
        self._handlers: dict[str, Handler] = {
            Op.HUB_INFO: self.attestation.hub_info,
            Op.ATTEST: self.attestation.attest,
            Op.CREATE_GROUP: self._create_group,
            Op.SUBMIT_COMMIT: self._submit_commit,
            Op.SEND: self._send,
            Op.FETCH_LOG: self._fetch_log,
            Op.GET_GROUP_INFO: self._get_group_info,
            Op.PUBLISH_KEY_PACKAGE: self._publish_key_package,
            Op.CLAIM_KEY_PACKAGE: self._claim_key_package,
            Op.LIST_KEY_PACKAGES: self._list_key_packages,
            Op.FETCH_WELCOMES: self._fetch_welcomes,
            Op.LEAVE: self._leave,
            Op.REPORT: self._report,
            Op.FETCH_MEDIA: self._fetch_media,
        }

    @property
    def deliverer(self) -> Deliverer:
        """The transport the fan-out hands deliveries to."""
        return self.fanout.deliverer

    @deliverer.setter
    def deliverer(self, deliverer: Deliverer) -> None:
        self.fanout.deliverer = deliverer

    @property
    def config(self) -> HubConfig:
        """The local policy (one object, shared with the authorization rules)."""
        return self.authz.config

    @config.setter
    def config(self, config: HubConfig) -> None:
        self.authz.config = config

    # -- entry point ---------------------------------------------------------------------

    async def handle(self, request: Inbound) -> Outbound:
        """Process one request; every failure becomes a refusal reply."""
        observer = self.observer
        if observer is None:
            return await self._handle(request)
        started = time.monotonic()
        observer.request_started(request)
        reply: Outbound | None = None
        try:
            reply = await self._handle(request)
            return reply
        finally:  # reply is None if the request was cancelled or crashed
            observer.request_finished(request, reply, time.monotonic() - started)

    async def idle(self) -> None:
        """Wait until every delivery queued so far was handed to the transport."""
        await self.fanout.idle()

    async def drain(self, deadline: float) -> bool:
        """Let the fan-out queues empty until ``deadline`` (the loop's clock)."""
        return await self.fanout.drain(deadline)

    async def close(self) -> None:
        """Stop the fan-out at once (what it held is in the log)."""
        await self.fanout.close()

    async def _handle(self, request: Inbound) -> Outbound:
        try:
            if request.size() > self.config.max_payload:
                raise TooLarge(f"request of {request.size()} bytes exceeds the limit of "
                               f"{self.config.max_payload} bytes")
            if request.op == Op.GET_GROUP_INFO and not request.group_id:
                # joining by a room's address: the reply names the room's group
                request = dataclasses.replace(request, group_id=await self._group_of(request))
            await self.authz.check(request)
            return await self._handlers[request.op](request)
        except Rejection as exc:
            return self._refusal(request, exc)
        except MLSError as exc:  # bytes that parsed but cannot be used (bad tree, key...)
            return self._refusal(request, Malformed(f"unusable MLS data: {exc}"))
        except StoreError as exc:
            log.warning("store failure on %s: %s", request.op, exc)
            return self._refusal(request, Unavailable(f"store failed: {type(exc).__name__}"))

    async def network_event(self, event: NetworkEvent) -> Outbound:
        """A room membership change a transport observed (A20 of docs/SECURITY.md):
        when the rules let it act, the hub queues Removes of the target's leaves,
        saying who caused them and where."""
        request = Inbound(Op.LEAVE, event.target, event.event_id, network=event.network)
        reason = LEAVE if event.actor == event.target else KICK
        removal = Removal(reason, event.actor, room_of(event.network, event.room))
        try:
            group_id = await self.authz.check_network_event(event)
            seqs = await self._remove_network_user(group_id, event.target, removal)
        except Rejection as exc:
            return self._refusal(request, exc)
        except StoreError as exc:
            log.warning("store failure on a network event: %s", exc)
            return self._refusal(request, Unavailable(f"store failed: {type(exc).__name__}"))
        log.info("%s of %s in %s by %s: %d Remove(s) queued", event.after, event.target,
                 event.room, event.actor, len(seqs))
        return self._reply(request, group_id=group_id, seq=seqs[-1] if seqs else 0)

    async def _remove_network_user(self, group_id: bytes, identity: str,
                                   removal: Removal) -> list[int]:
        """A network user left a room: its leaves go, and so do those of the relay
        puppet that stood for it (``relay+<identity>``, :mod:`bridge.identities`)."""
        group = await self._members(group_id, proposals=True)
        targets = [t for t in (identity, relay_identity(identity))
                   if public_view.leaves_of(group, t, self.anchor)]
        if not targets:
            raise NotMember(f"{identity} is not a member of the group")
        return [seq for t in targets for seq in await self.remove_member(group_id, t, removal)]

    def _refusal(self, request: Inbound, exc: Rejection) -> Outbound:
        epoch = getattr(exc, "current_epoch", 0)
        log.info("refused %s from %s: %s", request.op, request.sender, exc.code,
                 extra={"flood_key": f"{request.sender}|{exc.code}"})  # bridge.app.logs
        return Outbound(Kind.REPLY, (request.sender,), request.request_id, request.group_id,
                        ok=False, code=exc.code, reason=exc.reason, epoch=epoch)

    def _reply(self, request: Inbound, **fields: Any) -> Outbound:
        base = Outbound(Kind.REPLY, (request.sender,), request.request_id, request.group_id)
        return dataclasses.replace(base, **fields)

    def _lock(self, group_id: bytes) -> asyncio.Lock:
        lock = self._locks.get(group_id)
        if lock is None:
            lock = self._locks[group_id] = asyncio.Lock()
        return lock

    async def _members(self, group_id: bytes, *, proposals: bool = False) -> PublicGroup:
        """The group's current state (with the epoch's proposals pending in it if
        ``proposals``: see :class:`bridge.hub.public_view.GroupViews`)."""
        _, group = await self.views.load(group_id, proposals=proposals,
                                         credential_validator=self.credential_validator)
        return group

    async def _banned(self, group_id: bytes, identity: str) -> None:
        """:class:`Forbidden` if ``identity`` is on the group's ban list."""
        if any(ban.identity == identity for ban in await self.store.bans(group_id)):
            raise Forbidden(f"{identity} may no longer commit to or join this group "
                            f"(banned after fault reports)")

    async def _rooms(self, group_id: bytes, epoch: int) -> tuple[tuple[str, str], ...]:
        """The group's rooms, cached with its epoch (:meth:`GroupViews.rooms`)."""
        return await self.views.rooms(group_id, epoch)

    # -- groups and rooms -----------------------------------------------------------------

    async def _create_group(self, request: Inbound) -> Outbound:
        """Register a group (A2-A4): see :func:`bridge.hub.commits.check_new_group`."""
        message = public_view.parse_message(request.group_info, "GroupInfo")
        suite_id = getattr(getattr(message.body, "group_context", None), "cipher_suite", 0)
        hub_key = self.identity.signature_public(suite_id) if suite_id else b""
        group = check_new_group(message, request.ratchet_tree, request.sender, hub_key,
                                now=self.clock(),
                                credential_validator=self.credential_validator,
                                verifier=self.anchor)
        if request.group_id and request.group_id != group.group_id:
            raise Malformed("group_id differs from the GroupInfo's")
        room = (request.transport, request.room_id) if request.room_id else None
        try:
            if room is not None and await self.store.room_group(*room) is not None:
                raise AlreadyExists(f"room {room[1]} carries another group")
            await self.store.create_group(
                group.group_id, group.context.cipher_suite, epoch=0,
                group_info=request.group_info, ratchet_tree=group.ratchet_tree(),
                hub_state=public_view.state_bytes(group),
                members=public_view.member_list(group, self.anchor), creator=request.sender,
                max_per_creator=self.config.max_groups_per_user)
        except Conflict as exc:
            raise AlreadyExists(str(exc)) from exc
        except StoreQuota as exc:
            raise QuotaExceeded(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc
        if room is not None:
            await self._attach_new(group.group_id, room)
        self.views.put(group)
        return self._reply(request, group_id=group.group_id, seq=0, epoch=0)

    async def _attach_new(self, group_id: bytes, room: tuple[str, str]) -> None:
        """Attach a just-created group's room; if another group took the room in
        between, the new group is dropped again (a refusal changes nothing)."""
        try:
            await self.store.attach_room(*room, group_id)
            self.views.forget(group_id)
        except StoreError as exc:
            await self.store.delete_group(group_id)
            if isinstance(exc, Conflict):
                raise AlreadyExists(f"room {room[1]} carries another group") from exc
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc

    async def attach_room(self, transport: str, room_id: str, group_id: bytes) -> None:
        """Map a room to a group: the bridge's own call for a configured room pair
        (:class:`bridge.app.services.bridge.BridgeService`), so no membership check."""
        try:
            await self.store.attach_room(transport, room_id, group_id)
            self.views.forget(group_id)
        except UnknownGroup as exc:
            raise UnknownGroupRejection(str(exc)) from exc
        except Conflict as exc:
            raise AlreadyExists(str(exc)) from exc

    async def detach_room(self, transport: str, room_id: str) -> bool:
        """Unmap a room (the bridge's own call, when a run-time pair is undone): its
        group's cached rooms are dropped with it, so nothing more is delivered there;
        False if the room carried no group."""
        group_id = await self.store.room_group(transport, room_id)
        detached = await self.store.detach_room(transport, room_id)
        if group_id is not None:
            self.views.forget(group_id)
        return detached

    # -- commits -----------------------------------------------------------------------------

    async def _submit_commit(self, request: Inbound) -> Outbound:
        """A commit bundle, verified against the hub's own state of the group
        (:func:`bridge.hub.commits.check_commit`), then ordered by the store."""
        message = public_view.parse_message(request.payload, "commit")
        header = public_view.header_of(message, "commit")
        if header.wire_format != WireFormat.PUBLIC_MESSAGE:
            raise Malformed("a commit must be a PublicMessage (the hub orders what it can see)")
        if header.content_type != ContentType.COMMIT:
            raise Malformed("the submitted message is not a commit")
        group_id = header.group_id
        if request.group_id and request.group_id != group_id:
            raise Malformed("group_id differs from the commit's")
        async with self.fanout.admit(group_id) as fan_out, self._lock(group_id):
            group = await self._members(group_id, proposals=True)
            await self._banned(group_id, request.sender)
            bundle = Bundle(message, header, request.group_info, request.ratchet_tree,
                            request.welcome)
            checked = check_commit(group, bundle, request.sender, self.removes.hub_key(group),
                                   now=self.clock(),
                                   credential_validator=self.credential_validator,
                                   verifier=self.anchor)
            await self.authz.check_commit(
                dataclasses.replace(request, group_id=group_id), group,
                commit_changes(group, message, checked.commit, request.sender,
                               self.removes.hub_key(group), self.anchor))
            if self.credential_validator is self.attestation.validator:
                await self.attestation.check_added(self.store, checked.commit.added)
            if checked.external:
                self._check_external(group, request.sender)
            seq = await self._accept(group, checked, request)
            fan_out(Outbound(
                Kind.COMMIT, tuple(sorted(identities(group, self.anchor))), group_id=group_id,
                seq=seq,
                epoch=group.epoch, sender=request.sender, payload=request.payload,
                rooms=await self._rooms(group_id, group.epoch)))
            await self._deliver_welcomes(group_id, seq, checked.group.epoch,
                                         checked.welcome_recipients,
                                         checked.group.ratchet_tree(), request.sender)
            if checked.external:
                await self.removes.repropose(group, checked.group)
        return self._reply(request, group_id=group_id, seq=seq, epoch=checked.group.epoch)

    def _check_external(self, group: PublicGroup, identity: str) -> None:
        """How often one identity may commit externally (A21; who may at all is A11,
        :meth:`bridge.hub.authz.Authorizer.check_commit`)."""
        self._external_commits.check(group.group_id, identity, self.clock(),
                                     limit=self.config.external_commit_limit,
                                     window=self.config.external_commit_window)

    async def _accept(self, group: PublicGroup, checked: CheckedCommit,
                      request: Inbound) -> int:
        """Order the checked commit (one per epoch) and keep the new epoch's state.
        A member's commit must cover the hub's queued proposals; an external one
        cannot (RFC 9420 §12.4.3.2) and voids them (:meth:`_repropose`)."""
        new = checked.group
        try:
            seq = await self.store.accept_commit(
                group.group_id, group.epoch, request.payload,
                hub_state=public_view.state_bytes(new), group_info=request.group_info,
                ratchet_tree=new.ratchet_tree(), welcome=request.welcome or None,
                welcome_recipients=checked.welcome_recipients, sender=request.sender,
                covered_proposals=None if checked.external else checked.commit.covered,
                members=public_view.member_list(new, self.anchor),
                max_pending_welcomes=self.config.max_pending_welcomes)
        except WrongEpoch as exc:
            raise WrongEpochRejection(exc.current_epoch) from exc
        except StoreQuota as exc:
            raise QuotaExceeded(str(exc)) from exc
        except ProposalsNotCovered as exc:
            raise ProposalsMissing(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc
        self.views.put(new)
        if checked.external:
            self._external_commits.record(group.group_id, request.sender, self.clock(),
                                          window=self.config.external_commit_window)
        return seq

    async def _deliver_welcomes(self, group_id: bytes, commit_seq: int, epoch: int,
                                recipients: tuple[str, ...], tree: bytes,
                                sender: str = "") -> None:
        """After the commit is stored and queued: each new member's Welcome, queued
        behind it (its ``sender``: who submitted the commit, so the joiner can say who
        added them); marked delivered once sent (else kept for fetch-welcomes)."""
        for recipient in recipients:
            for pending in await self.store.pending_welcomes(recipient):
                if pending.group_id != group_id or pending.commit_seq != commit_seq:
                    continue
                self.fanout.send(Outbound(
                    Kind.WELCOME, (recipient,), group_id=group_id, seq=commit_seq,
                    epoch=epoch, sender=sender, payload=pending.welcome,
                    ratchet_tree=tree), self._welcome_sent(pending.welcome_id, recipient))

    def _welcome_sent(self, welcome_id: int, recipient: str
                      ) -> Callable[[bool], Awaitable[None]]:
        async def sent(ok: bool) -> None:
            if not ok:
                log.warning("Welcome delivery failed (kept for fetch)")
                return
            try:
                await self.store.mark_delivered(welcome_id, recipient)
            except StoreError as exc:
                log.warning("Welcome not marked delivered (fetched again): %s",
                            type(exc).__name__)
        return sent

    async def get_group_info(self, group_id: bytes) -> tuple[bytes, bytes]:
        """The current GroupInfo and ratchet tree, for external joins (§12.4.3.2)."""
        record, _ = await self.views.load(group_id, proposals=False,
                                          credential_validator=self.credential_validator)
        return record.group_info or b"", record.ratchet_tree or b""

    async def _get_group_info(self, request: Inbound) -> Outbound:
        record, _ = await self.views.load(request.group_id, proposals=False,
                                          credential_validator=self.credential_validator)
        await self._banned(request.group_id, request.sender)  # A14 itself: the dispatcher
        return self._reply(request, payload=record.group_info or b"",
                           ratchet_tree=record.ratchet_tree or b"", epoch=record.epoch,
                           seq=record.next_seq - 1)

    # -- proposals and application messages (bridge.hub.messages) -------------------------

    async def _send(self, request: Inbound) -> Outbound:
        """An application message (PrivateMessage: relayed within the epoch lag) or a
        member's proposal (PublicMessage: verified and followed, A12)."""
        sent = parse_send(request)
        group_id = sent.header.group_id
        async with self.fanout.admit(group_id) as fan_out, self._lock(group_id):
            logged = await self.messages.log(request, sent)
            group = logged.group
            if not logged.again:
                fan_out(Outbound(
                    sent.kind.value, tuple(sorted(identities(group, self.anchor))),
                    group_id=group_id, seq=logged.seq, epoch=sent.header.epoch,
                    sender=request.sender, payload=request.payload,
                    rooms=await self._rooms(group_id, group.epoch), origin=origin(request)))
        return self._reply(request, group_id=group_id, seq=logged.seq, epoch=group.epoch,
                           code=AGAIN if logged.again else "")

    # -- catch-up ------------------------------------------------------------------------------

    async def _fetch_log(self, request: Inbound) -> Outbound:
        """Log entries after ``after_seq`` for a member (A13, checked by the
        dispatcher); those of epochs before the requester joined come as placeholders
        (seq, epoch and kind; no payload, no sender): the sequence stays gap-free, the
        ciphertext stays with those who could read it."""
        group = await self._members(request.group_id)
        since = await self.authz.readable_from(request.group_id, request.sender, group.epoch)
        limit = min(request.limit or self.config.log_page_limit, self.config.log_page_limit)
        items = await log_page(self.store, request.group_id, request.after_seq, limit, since)
        return self._reply(request, entries=items, epoch=group.epoch)

    async def _fetch_welcomes(self, request: Inbound) -> Outbound:
        items = []
        for pending in await self.store.pending_welcomes(request.sender):
            items.append(Outbound(Kind.WELCOME, (request.sender,), group_id=pending.group_id,
                                  seq=pending.commit_seq, epoch=pending.epoch,
                                  payload=pending.welcome))
            await self.store.mark_delivered(pending.welcome_id, request.sender)
        return self._reply(request, entries=tuple(items))

    # -- KeyPackage directory ----------------------------------------------------------------

    async def _publish_key_package(self, request: Inbound) -> Outbound:
        """A15: the authorization's content rule, then the store's quotas."""
        ref = await directory.publish(self.store, request, now=self.clock(),
                                      credential_validator=self.credential_validator,
                                      authorize=self.authz.check_key_package,
                                      config=self.config)
        return self._reply(request, payload=ref)

    async def _claim_key_package(self, request: Inbound) -> Outbound:
        """Claim one of ``target``'s KeyPackages to add ``target`` to the group the
        request names (A16: a member of it, within the outstanding-claims bound)."""
        key_package = await directory.claim(self.store, request, now=self.clock(),
                                            config=self.config)
        return self._reply(request, payload=key_package, sender=request.target)

    async def _list_key_packages(self, request: Inbound) -> Outbound:
        return self._reply(request, key_packages=await directory.listing(self.store, request))

    async def purge_expired(self) -> int:
        """Drop expired KeyPackages from the directory; return how many."""
        return await self.store.purge_expired(self.clock())

    # -- membership changes on the network, and fault reports --------------------------------

    async def _group_of(self, request: Inbound) -> bytes:
        if request.group_id:
            return request.group_id
        if request.transport and request.room_id:
            group_id = await self.store.room_group(request.transport, request.room_id)
            if group_id is not None:
                return group_id
            raise UnknownGroupRejection(f"no group for room {request.room_id}")
        raise Malformed("need a group id or a room")

    async def _leave(self, request: Inbound) -> Outbound:
        """The requester leaves (A19: itself only, checked by the dispatcher)."""
        removal = Removal(LEAVE, request.sender, room_of(request.transport, request.room_id))
        seqs = await self.remove_member(await self._group_of(request), request.sender, removal)
        return self._reply(request, seq=seqs[-1] if seqs else 0)

    async def _fetch_media(self, request: Inbound) -> Outbound:
        """A23: another network's media for a member (:mod:`bridge.hub.media`)."""
        return self._reply(request, payload=await self.media.fetch(request))

    async def _report(self, request: Inbound) -> Outbound:
        """A member could not process the commit at ``seq`` (A21; see
        :mod:`bridge.hub.faults` for what follows and why it bounds a storm)."""
        if not request.group_id or request.seq <= 0:
            raise Malformed("report needs the group and the seq of the commit")
        if request.reason not in faults.FAULT_REASONS:
            raise Malformed(f"unknown fault {request.reason[:40]!r}")
        async with self._lock(request.group_id):
            group = await self._members(request.group_id, proposals=True)
            convicted = await faults.take_report(
                self.store, group, request, quorum_size=self.config.fault_quorum,
                window=self.config.report_window, now=self.clock(), verifier=self.anchor)
            if convicted is not None and public_view.leaves_of(group, convicted, self.anchor):
                await self.removes.queue(group, convicted, Removal(FAULT, self.identity.name))
        return self._reply(request, seq=request.seq)

    async def remove_member(self, group_id: bytes, identity: str,
                            removal: Removal | None = None, *,
                            signature_key: bytes | None = None) -> list[int]:
        """Queue the hub's Remove proposals (RFC 9420 §12.1.8.1) for every leaf of
        ``identity`` (only the one with ``signature_key``, if given), saying why
        (``removal``; by default: the identity left); the next commit must include
        them. Returns their sequence numbers (empty if they were already queued)."""
        removal = removal or Removal(LEAVE, identity)
        async with self._lock(group_id):
            for _ in range(3):
                group = await self._members(group_id, proposals=True)
                try:
                    return await self.removes.queue(group, identity, removal, signature_key)
                except WrongEpoch:
                    continue  # a commit from another hub process ended the epoch
            raise Unavailable("the group's epoch kept changing; try again")

    async def _announce(self, group: PublicGroup, seq: int, payload: bytes) -> None:
        """Fan out one of the hub's own proposals."""
        self.fanout.send(Outbound(
            Kind.PROPOSAL, tuple(sorted(identities(group, self.anchor))),
            group_id=group.group_id,
            seq=seq, epoch=group.epoch, sender=HUB_SENDER, payload=payload,
            rooms=await self._rooms(group.group_id, group.epoch)))

