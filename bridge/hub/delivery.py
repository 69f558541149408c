"""The delivery hub: one strongly consistent delivery service per group (RFC 9750 §5.2).

The hub never holds group secrets and never decrypts (:mod:`bridge.hub.public_view` is
what it can check). Ordering comes from the store (``accept_commit`` is a compare-and-
set on the group's epoch inside one database transaction), never from process memory,
so several hub processes may share one PostgreSQL database. A per-group asyncio lock
in each process only keeps that process's fan-out in sequence order.

Requests arrive as :class:`transports.interface.Inbound` through :meth:`Hub.handle`, which
always answers with an :class:`transports.interface.Outbound` reply: accepted (with the
sequence number and epoch) or refused with a specific code (:mod:`bridge.errors`).
Refused requests change nothing. Deliveries go out through the transport's
:class:`transports.interface.Deliverer`: the accepted commit to every member of the old
epoch, then each Welcome to its new member; proposals and application messages to the
current members.

Member-sent proposals are relayed (the next committer may include them); the hub's own
proposals (Removes for members who left or were kicked on the network, signed as the
group's external sender) are queued: the next commit must include them by reference
or it is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.errors import (
    AlreadyExists,
    Forbidden,
    Malformed,
    NoKeyPackage,
    NotMember,
    ProposalsMissing,
    Rejection,
    StaleEpoch,
    TooLarge,
    Unavailable,
    UnknownGroupRejection,
    Unsupported,
    WrongEpochRejection,
)
from bridge.hub import public_view
from bridge.hub.attestation import Attestation
from bridge.hub.identity import HubIdentity
from bridge.hub.policy import HubConfig, HubObserver
from bridge.hub.public_view import PublicGroup
from bridge.hub.store import (
    Conflict,
    GroupRecord,
    KeyPackageUnavailable,
    LogKind,
    ProposalsNotCovered,
    Store,
    StoreError,
    StoreUsageError,
    UnknownGroup,
    WrongEpoch,
)
from mls.codec import encode
from mls.enums import ContentType, WireFormat
from mls.errors import MLSError, ValidationError
from mls.framing.refs import key_package_ref, proposal_ref
from mls.group.external import external_sender_proposal
from mls.group.key_package import validate_key_package
from mls.messages.framing import AuthenticatedContent, PrivateMessage, PublicMessage
from mls.messages.key_package import KeyPackage
from mls.messages.proposals import Remove
from transports.errors import LinkError
from transports.interface import (
    Deliverer,
    Inbound,
    KeyPackageListing,
    Kind,
    Op,
    Outbound,
)

log = logging.getLogger(__name__)

HUB_SENDER = "hub"
#: How many of the latest log entries a SEND is compared with (see Hub._logged).
REPLAY_WINDOW = 64


Handler = Callable[[Inbound], Awaitable[Outbound]]


class Hub:
    """The delivery hub (see the module docstring); implements :class:`HubService`."""

    def __init__(self, store: Store, identity: HubIdentity, deliverer: Deliverer, *,
                 config: HubConfig | None = None,
                 clock: Callable[[], int] | None = None,
                 observer: HubObserver | None = None) -> None:
        self.store = store
        self.observer = observer
        self.identity = identity
        self.deliverer = deliverer
        self.config = config or HubConfig()
        self.clock = clock or (lambda: int(time.time()))
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._views: dict[bytes, tuple[int, PublicGroup]] = {}
        self.attestation = Attestation(identity, self.clock, self.config.certificate_validity)
        self._handlers: dict[str, Handler] = {
            Op.HUB_INFO: self.attestation.hub_info,
            Op.ATTEST: self.attestation.attest,
            Op.CREATE_GROUP: self._create_group,
            Op.ATTACH_ROOM: self._attach_room,
            Op.SUBMIT_COMMIT: self._submit_commit,
            Op.SEND: self._send,
            Op.FETCH_LOG: self._fetch_log,
            Op.GET_GROUP_INFO: self._get_group_info,
            Op.PUBLISH_KEY_PACKAGE: self._publish_key_package,
            Op.CLAIM_KEY_PACKAGE: self._claim_key_package,
            Op.LIST_KEY_PACKAGES: self._list_key_packages,
            Op.FETCH_WELCOMES: self._fetch_welcomes,
            Op.LEAVE: self._leave,
            Op.KICK: self._kick,
        }

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

    async def _deliver(self, message: Outbound) -> None:
        """Hand one delivery to the transport (and tell the observer)."""
        if self.observer is None:
            await self.deliverer.deliver(message)
            return
        self.observer.delivery_started(message)
        ok = False
        try:
            await self.deliverer.deliver(message)
            ok = True
        finally:
            self.observer.delivery_finished(message, ok)

    async def _handle(self, request: Inbound) -> Outbound:
        try:
            if request.size() > self.config.max_payload:
                raise TooLarge(f"request of {request.size()} bytes exceeds the limit of "
                               f"{self.config.max_payload} bytes")
            handler = self._handlers.get(request.op)
            if handler is None:
                raise Unsupported(f"unknown request {request.op!r}")
            return await handler(request)
        except Rejection as exc:
            return self._refusal(request, exc)
        except MLSError as exc:  # bytes that parsed but cannot be used (bad tree, key...)
            return self._refusal(request, Malformed(f"unusable MLS data: {exc}"))
        except StoreError as exc:
            log.warning("store failure on %s: %s", request.op, exc)
            return self._refusal(request, Unavailable(f"store failed: {type(exc).__name__}"))

    def _refusal(self, request: Inbound, exc: Rejection) -> Outbound:
        epoch = getattr(exc, "current_epoch", 0)
        log.info("refused %s from %s: %s", request.op, request.sender, exc.code)
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

    async def _load(self, group_id: bytes) -> tuple[GroupRecord, PublicGroup]:
        """The group's record and public view of its current epoch (cached by epoch:
        an epoch's view never changes, so the cache is safe across processes)."""
        try:
            record = await self.store.get_group(group_id)
        except UnknownGroup as exc:
            raise UnknownGroupRejection(f"unknown group {group_id.hex()}") from exc
        except StoreError as exc:
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc
        cached = self._views.get(group_id)
        if cached is not None and cached[0] == record.epoch:
            return record, cached[1]
        if record.ratchet_tree is None:
            raise Unavailable("the group has no ratchet tree")
        view = PublicGroup.load(record.hub_state, record.ratchet_tree,
                                self.attestation.anchor)
        self._views[group_id] = (record.epoch, view)
        return record, view

    async def _rooms(self, group_id: bytes) -> tuple[tuple[str, str], ...]:
        return tuple((room.transport, room.room_id)
                     for room in await self.store.group_rooms(group_id))

    async def _fan_out(self, message: Outbound) -> None:
        """Hand one delivery to the transport; a failure is logged (members catch up
        from the log), never turned into a refusal of what was already stored."""
        try:
            await self._deliver(message)
        except LinkError as exc:
            log.warning("delivery of seq %d failed: %s", message.seq, exc)

    # -- groups and rooms -----------------------------------------------------------------

    async def _create_group(self, request: Inbound) -> Outbound:
        body = public_view.parse_message(request.group_info, "GroupInfo").body
        suite_id = getattr(getattr(body, "group_context", None), "cipher_suite", 0)
        hub_key = self.identity.signature_public(suite_id) if suite_id else None
        view, checked = public_view.check_new_group(request.group_info, request.ratchet_tree,
                                                    request.sender, hub_key,
                                                    self.attestation.anchor)
        if request.group_id and request.group_id != view.group_id:
            raise Malformed("group_id differs from the GroupInfo's")
        try:
            await self.store.create_group(
                view.group_id, view.context.cipher_suite, epoch=0,
                group_info=request.group_info, ratchet_tree=checked.tree_bytes,
                hub_state=view.hub_state(), members=view.member_list())
            if request.transport and request.room_id:
                await self.store.attach_room(request.transport, request.room_id,
                                             view.group_id)
        except Conflict as exc:
            raise AlreadyExists(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"store failed: {type(exc).__name__}") from exc
        self._views[view.group_id] = (0, view)
        return self._reply(request, group_id=view.group_id, seq=0, epoch=0)

    async def _attach_room(self, request: Inbound) -> Outbound:
        _, view = await self._load(request.group_id)
        if request.sender not in view.identities:
            raise NotMember("only members may attach the group to a room")
        if not request.transport or not request.room_id:
            raise Malformed("attach-room needs a transport and a room id")
        try:
            await self.store.attach_room(request.transport, request.room_id, request.group_id)
        except Conflict as exc:
            raise AlreadyExists(str(exc)) from exc
        return self._reply(request)

    async def attach_room(self, transport: str, room_id: str, group_id: bytes) -> None:
        """Map a room to a group: the bridge's own call for a configured room pair
        (:class:`bridge.app.services.bridge.BridgeService`), so no membership check."""
        try:
            await self.store.attach_room(transport, room_id, group_id)
        except UnknownGroup as exc:
            raise UnknownGroupRejection(str(exc)) from exc
        except Conflict as exc:
            raise AlreadyExists(str(exc)) from exc

    # -- commits -----------------------------------------------------------------------------

    async def _submit_commit(self, request: Inbound) -> Outbound:
        message = public_view.commit_message(
            public_view.parse_message(request.payload, "commit"))
        group_id = message.content.group_id
        if request.group_id and request.group_id != group_id:
            raise Malformed("group_id differs from the commit's")
        async with self._lock(group_id):
            _, view = await self._load(group_id)
            hub_key = self.identity.signature_public(view.context.cipher_suite)
            checked = public_view.check_commit(view, message, request.group_info,
                                               request.ratchet_tree, request.welcome,
                                               request.sender, hub_key)
            if checked.external and not (
                    request.sender in view.identities
                    or self.config.allow_external_join(group_id, request.sender)):
                raise Forbidden("external joins are not allowed for this user")
            new_view = checked.new_view
            try:
                seq = await self.store.accept_commit(
                    group_id, view.epoch, request.payload, hub_state=new_view.hub_state(),
                    group_info=request.group_info, ratchet_tree=checked.tree_bytes,
                    welcome=request.welcome or None,
                    welcome_recipients=checked.welcome_recipients, sender=request.sender,
                    covered_proposals=checked.covered, members=new_view.member_list())
            except WrongEpoch as exc:
                raise WrongEpochRejection(exc.current_epoch) from exc
            except ProposalsNotCovered as exc:
                raise ProposalsMissing(str(exc)) from exc
            except StoreError as exc:
                raise Unavailable(f"store failed: {type(exc).__name__}") from exc
            self._views[group_id] = (new_view.epoch, new_view)
            rooms = await self._rooms(group_id)
            await self._fan_out(Outbound(
                Kind.COMMIT, tuple(sorted(view.identities)), group_id=group_id, seq=seq,
                epoch=view.epoch, sender=request.sender, payload=request.payload,
                rooms=rooms))
            await self._deliver_welcomes(group_id, seq, new_view.epoch,
                                         checked.welcome_recipients, checked.tree_bytes)
        return self._reply(request, group_id=group_id, seq=seq, epoch=new_view.epoch)

    async def _deliver_welcomes(self, group_id: bytes, commit_seq: int, epoch: int,
                                recipients: tuple[str, ...], tree: bytes) -> None:
        """After the commit is stored and fanned out: each new member's Welcome."""
        for recipient in recipients:
            for pending in await self.store.pending_welcomes(recipient):
                if pending.group_id != group_id or pending.commit_seq != commit_seq:
                    continue
                try:
                    await self._deliver(Outbound(
                        Kind.WELCOME, (recipient,), group_id=group_id, seq=commit_seq,
                        epoch=epoch, payload=pending.welcome, ratchet_tree=tree))
                except LinkError as exc:
                    log.warning("Welcome delivery failed (kept for fetch): %s", exc)
                    continue
                await self.store.mark_delivered(pending.welcome_id, recipient)

    async def get_group_info(self, group_id: bytes) -> tuple[bytes, bytes]:
        """The current GroupInfo and ratchet tree, for external joins (§12.4.3.2)."""
        record, _ = await self._load(group_id)
        return record.group_info or b"", record.ratchet_tree or b""

    async def _get_group_info(self, request: Inbound) -> Outbound:
        record, view = await self._load(request.group_id)
        if not (request.sender in view.identities
                or self.config.allow_external_join(request.group_id, request.sender)):
            raise Forbidden("external joins are not allowed for this user")
        return self._reply(request, payload=record.group_info or b"",
                           ratchet_tree=record.ratchet_tree or b"", epoch=record.epoch,
                           seq=record.next_seq - 1)

    # -- proposals and application messages ------------------------------------------------

    async def _send(self, request: Inbound) -> Outbound:
        message = public_view.parse_message(request.payload, "message")
        body = message.body
        if isinstance(body, PrivateMessage):
            group_id, epoch, content_type = body.group_id, body.epoch, body.content_type
        elif isinstance(body, PublicMessage):
            content = body.content
            group_id, epoch, content_type = content.group_id, content.epoch, content.content_type
        else:
            raise Malformed("only PublicMessage and PrivateMessage are relayed")
        if content_type == ContentType.COMMIT:
            raise Malformed("commits go through submit-commit")
        if request.group_id and request.group_id != group_id:
            raise Malformed("group_id differs from the message's")
        async with self._lock(group_id):
            record, view = await self._load(group_id)
            if request.sender not in view.identities:
                raise NotMember(f"{request.sender} is not a member of the group")
            self._check_epoch(view.epoch, epoch)
            if isinstance(body, PublicMessage):
                public_view.check_public_proposal(view, body, request.sender)
            kind = LogKind.APPLICATION if content_type == ContentType.APPLICATION \
                else LogKind.PROPOSAL
            try:
                seq = await self._logged(group_id, record.next_seq, request.payload) or \
                    await self.store.append_message(group_id, epoch, kind, request.payload,
                                                    request.sender)
            except WrongEpoch as exc:
                raise WrongEpochRejection(exc.current_epoch) from exc
            except StoreError as exc:
                raise Unavailable(f"store failed: {type(exc).__name__}") from exc
            await self._fan_out(Outbound(
                kind.value, tuple(sorted(view.identities)), group_id=group_id, seq=seq,
                epoch=epoch, sender=request.sender, payload=request.payload,
                rooms=await self._rooms(group_id)))
        return self._reply(request, group_id=group_id, seq=seq, epoch=view.epoch)

    async def _logged(self, group_id: bytes, next_seq: int, payload: bytes) -> int:
        """The seq of ``payload`` if it is among the last :data:`REPLAY_WINDOW` log
        entries, else 0. A request can reach the hub twice: the Matrix bot marks a
        to-device request as handled in a transaction after the one that logged it, so
        a SIGKILL between the two makes the restarted bot act on it again. The same
        MLS ciphertext is the same message (members would drop the copy: its key
        generation is used up), so it is answered with its first seq (and fanned out
        again: deliveries are idempotent by seq) instead of being logged twice."""
        after = max(0, next_seq - 1 - REPLAY_WINDOW)
        for entry in await self.store.log_since(group_id, after, REPLAY_WINDOW):
            if entry.payload == payload:
                return entry.seq
        return 0

    def _check_epoch(self, current: int, epoch: int) -> None:
        if epoch > current:
            raise WrongEpochRejection(current, f"message for future epoch {epoch} "
                                               f"(current {current})")
        if epoch < current - self.config.max_epoch_lag:
            raise StaleEpoch(current, f"message for epoch {epoch} is older than "
                                      f"{self.config.max_epoch_lag} epoch(s) behind "
                                      f"(current {current})")

    # -- catch-up ------------------------------------------------------------------------------

    async def _fetch_log(self, request: Inbound) -> Outbound:
        _, view = await self._load(request.group_id)
        if request.sender not in view.identities:
            raise NotMember(f"{request.sender} is not a member of the group")
        limit = min(request.limit or self.config.log_page_limit, self.config.log_page_limit)
        try:
            entries = await self.store.log_since(request.group_id, request.after_seq, limit)
        except StoreUsageError as exc:
            raise Malformed(str(exc)) from exc
        items = tuple(Outbound(entry.kind.value, group_id=request.group_id, seq=entry.seq,
                               epoch=entry.epoch, sender=entry.sender, payload=entry.payload)
                      for entry in entries)
        return self._reply(request, entries=items, epoch=view.epoch)

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
        body = public_view.parse_message(request.payload, "KeyPackage").body
        if not isinstance(body, KeyPackage):
            raise Malformed("the payload is not a KeyPackage")
        cs = public_view.cipher_suite(body.cipher_suite)
        try:
            validate_key_package(cs, body, now=self.clock())
        except (ValidationError, MLSError) as exc:
            raise Malformed(f"invalid KeyPackage: {exc}") from exc
        self.attestation.check_key_package(body, request.sender)
        lifetime = body.leaf_node.lifetime
        assert lifetime is not None
        ref = key_package_ref(cs, body)
        try:
            await self.store.publish_key_package(
                request.sender, request.device or "default", cs.id, ref, request.payload,
                lifetime.not_after, last_resort=request.last_resort)
        except Conflict as exc:
            raise AlreadyExists("this KeyPackage is already published") from exc
        return self._reply(request, payload=ref)

    async def _claim_key_package(self, request: Inbound) -> Outbound:
        """Claim one of ``target``'s KeyPackages. A claim naming a group (``group_id``)
        is for adding ``target`` to it: only a current member of that group may make it.
        A claim without a group (to start a new group) is open to any authenticated user.
        """
        if not request.target:
            raise Malformed("claim-key-package needs the target user")
        if request.group_id:
            _, view = await self._load(request.group_id)
            if request.sender not in view.identities:
                raise NotMember(f"{request.sender} is not a member of the group")
        try:
            key_package = await self.store.claim_key_package(
                request.target, request.cipher_suite or 1, self.clock(),
                device=request.device or None)
        except KeyPackageUnavailable as exc:
            raise NoKeyPackage(str(exc)) from exc
        return self._reply(request, payload=key_package, sender=request.target)

    async def _list_key_packages(self, request: Inbound) -> Outbound:
        user = request.target or request.sender
        infos = await self.store.list_key_packages(user, request.device or None)
        listing = tuple(KeyPackageListing(info.ref, info.user, info.device, info.cipher_suite,
                                          info.expires_at, info.last_resort)
                        for info in infos)
        return self._reply(request, key_packages=listing)

    async def purge_expired(self) -> int:
        """Drop expired KeyPackages from the directory; return how many."""
        return await self.store.purge_expired(self.clock())

    # -- membership changes on the network ------------------------------------------------

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
        seqs = await self.remove_member(await self._group_of(request), request.sender)
        return self._reply(request, seq=seqs[-1] if seqs else 0)

    async def _kick(self, request: Inbound) -> Outbound:
        """A network-level removal reported by the transport (which checked the
        kicker's rights on its network)."""
        if not request.target:
            raise Malformed("kick needs the target user")
        seqs = await self.remove_member(await self._group_of(request), request.target)
        return self._reply(request, seq=seqs[-1] if seqs else 0)

    async def remove_member(self, group_id: bytes, identity: str) -> list[int]:
        """Queue the hub's Remove proposals (RFC 9420 §12.1.8.1) for every leaf of
        ``identity``; the next commit must include them. Returns their sequence
        numbers (empty if they were already queued)."""
        async with self._lock(group_id):
            for _ in range(3):
                _, view = await self._load(group_id)
                try:
                    return await self._queue_removes(view, identity)
                except WrongEpoch:
                    continue  # a commit from another hub process ended the epoch
            raise Unavailable("the group's epoch kept changing; try again")

    async def _queue_removes(self, view: PublicGroup, identity: str) -> list[int]:
        leaves = view.leaves_of(identity)
        if not leaves:
            raise NotMember(f"{identity} is not a member of the group")
        suite_id = view.context.cipher_suite
        index = view.external_sender_index(self.identity.signature_public(suite_id))
        if index is None:
            raise Forbidden("the hub is not an external sender of this group")
        queued = await self.store.queued_proposals(view.group_id, view.epoch)
        already = {leaf for item in queued for leaf in _removed_leaves(item.payload)}
        seqs = []
        for leaf in leaves:
            if leaf in already:
                continue
            message = external_sender_proposal(
                view.cs, view.group_id, view.epoch, index,
                self.identity.signature_priv(suite_id), Remove(leaf))
            body = message.body
            assert isinstance(body, PublicMessage)
            ref = proposal_ref(view.cs, AuthenticatedContent(WireFormat.PUBLIC_MESSAGE,
                                                             body.content, body.auth))
            payload = encode(message)
            try:
                seq = await self.store.queue_proposal(view.group_id, view.epoch, ref, payload,
                                                      HUB_SENDER)
            except Conflict:
                continue
            seqs.append(seq)
            await self._fan_out(Outbound(
                Kind.PROPOSAL, tuple(sorted(view.identities)), group_id=view.group_id,
                seq=seq, epoch=view.epoch, sender=HUB_SENDER, payload=payload,
                rooms=await self._rooms(view.group_id)))
        return seqs



def _removed_leaves(payload: bytes) -> list[int]:
    """The leaf a queued hub proposal removes (it queues only Removes)."""
    try:
        body = public_view.parse_message(payload, "queued proposal").body
    except Rejection:
        return []
    if isinstance(body, PublicMessage) and isinstance(body.content.content, Remove):
        return [body.content.content.removed]
    return []
