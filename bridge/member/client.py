"""The transport-agnostic MLS member client (over the XMPP client plugin, the Matrix
helper or an in-process link; the relay's puppets, the demo and the tests use it).

A :class:`Member` holds one :class:`mls.group.group.Group` per group, talks to the hub
through a :class:`transports.interface.HubLink` and receives deliveries as a
:class:`transports.interface.DeliverySink`. Its rules (RFC 9750 §5.2, RFC 9420 §12.4):

* its own commit is merged only when the hub accepts it; on "wrong epoch" (or missing
  queued proposals, or a lost reply) it drops the staged commit, catches up from the
  log (applying the winner -- or merging its own commit if the log shows it was
  accepted after all), re-checks what it wanted (is the member it wanted to add already
  in?) and retries with jittered exponential backoff a bounded number of times;
* log entries are applied strictly in sequence order; a gap makes it fetch what it
  missed; duplicates and echoes of its own messages are ignored;
* a state that can no longer follow the group (a commit it cannot process) is
  recovered by an external commit that resyncs its leaf (RFC 9420 §12.4.3.2), at
  most once per group per ``resync_interval``, after reporting the commit to the hub
  when the failure is one only members can detect (:mod:`bridge.member.recovery`);
* group state is persisted (as bytes, through a :class:`MemberStore`) before a commit
  or message leaves the process; changes by received entries are saved lazily (they can
  be fetched again from the log);
* every leaf it accepts -- Add, Update, UpdatePath, Welcome, external join -- is checked
  by its credential validator (RFC 9420 §5.3.1; :mod:`bridge.member.identity`): in the
  default X.509 mode, attested by the hub's CA it pinned, with the leaf's key, valid;
  its own credential is attested on start and renewed before it expires;
* every membership change raises a :class:`bridge.member.events.MembershipEvent` (kept
  per group: :meth:`Member.events`; and handed to ``on_event``).

The receiving half (inbox, ordered application, lazy saving) is an
:class:`bridge.member.inbox.Inbox` the member owns (:attr:`Member.inbox`); the commit
path (staging, submitting, merging on acceptance, retrying) is
:class:`bridge.member.commits.OwnCommits`, the member keeping the planners. Two hooks let
an owner change what happens to received messages (``on_received``, ``keep_received``)
and when group state may be saved (``save_policy``): the relay's puppets use them
(:mod:`bridge.relay.puppets`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence

from bridge.credentials import CredentialMode
from bridge.errors import HubRefused, MemberError
from bridge.identities import is_relayed
from bridge.member.commits import OwnCommits, pending_removes
from bridge.member.content import Attachment, Content
from bridge.member.events import (
    MembershipEvent,
    MembershipHook,
    group_mode,
    joined_event,
    welcome_event,
)
from bridge.member.identity import MemberIdentity
from bridge.member.inbox import Inbox
from bridge.member.recovery import Recovery
from bridge.member.state import (
    RETRYABLE,
    CommitPlan,
    GroupSlot,
    MemberStore,
    MemoryMemberStore,
    Received,
    ReceivedHook,
    RetryPolicy,
    SavePolicy,
    digest,
)
from mls.codec import Reader, Writer, decode, encode
from mls.crypto.suite import Rng, suite
from mls.enums import ExtensionType
from mls.framing.refs import key_package_ref
from mls.group.config import GroupConfig
from mls.group.group import Group
from mls.group.join import welcome_group_info
from mls.group.key_package import KeyPackageBundle, create_key_package
from mls.messages.credentials import Credential
from mls.messages.extension_types import encode_external_senders
from mls.messages.extensions import Extension, find_extension
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage
from mls.messages.welcome import Welcome
from mls.tree.ratchet_tree import RatchetTree
from transports.interface import HubLink, Inbound, Op, Outbound

log = logging.getLogger(__name__)


class Member:
    """One MLS client (see the module docstring).

    ``on_received`` sees each decrypted application message; the member keeps them
    for :meth:`received` unless ``keep_received`` is False. ``on_event`` sees each
    membership event (kept for :meth:`events`). ``save_policy`` decides when group
    state may be saved (default: any time). ``credentials``: ``"x509"`` (default:
    identities attested by the hub's CA, checked by this member) or ``"basic"``
    (identities vouched by the hub only)."""

    def __init__(self, link: HubLink, *, cipher_suite: int = 1,
                 store: MemberStore | None = None, rng: Rng | None = None,
                 clock: Callable[[], int] | None = None, retry: RetryPolicy | None = None,
                 config: GroupConfig | None = None, device: str = "default",
                 log_page: int = 200, auto_resync: bool = True,
                 persist_interval: float = 1.0, on_received: ReceivedHook | None = None,
                 keep_received: bool = True, save_policy: SavePolicy | None = None,
                 resync_interval: float = 60.0, resync_attempts: int = 5,
                 credentials: str = CredentialMode.X509,
                 on_event: MembershipHook | None = None) -> None:
        self.link = link
        self.cs = suite(cipher_suite)
        self.store: MemberStore = store or MemoryMemberStore()
        self._rng: Rng = rng or os.urandom
        self._jitter = random.Random(self._rng(16))
        self._clock = clock or (lambda: int(time.time()))
        self.retry = retry or RetryPolicy()
        self.config = config or GroupConfig()
        self.device = device
        self._signature_priv = b""
        self._bundles: dict[bytes, tuple[KeyPackageBundle, bool]] = {}
        self._slots: dict[bytes, GroupSlot] = {}
        self._request_ids = 0
        self.trust = MemberIdentity(CredentialMode(credentials), self.cs, self.store,
                                    self._clock, self._call)
        # request ids must not repeat across restarts (a transport may deduplicate by
        # sender and id: the Matrix bot remembers them for a week)
        self._request_prefix = f"{device}-{os.urandom(4).hex()}"
        self.recovery = Recovery(report=self._report, rejoin=self.rejoin,
                                 identity=lambda: self.identity, interval=resync_interval,
                                 attempts=resync_attempts)
        self._commits = OwnCommits(self, self._slot, rng=self._rng, jitter=self._jitter,
                                   clock=self._clock)
        self.inbox = Inbox(
            self._slots, self.store, identity=lambda: self.identity, trust=self.trust,
            fetch_log=self._fetch_log, join=self._join,
            on_broken=self.recovery.broken if auto_resync else None, clock=self._clock,
            log_page=log_page, persist_interval=persist_interval, save_policy=save_policy,
            on_received=on_received, keep_received=keep_received, on_event=on_event)

    @property
    def identity(self) -> str:
        return self.link.identity

    @property
    def credential(self) -> Credential:
        """What our leaves present (X.509 mode: the hub's attestation of our key)."""
        return self.trust.credential(self.identity)

    async def refresh_credential(self) -> None:
        """Know the hub's CA (pinned on first use; :class:`PinMismatch` for another);
        in X.509 mode attest our signature key unless our credential has more than a
        third of its validity left (also tried, in the background, on start)."""
        await self.trust.ensure(self.identity, self._signature_priv)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load (or create) the signature key, KeyPackages and groups; start the inbox."""
        stored = await self.store.load("signature")
        if stored is None:
            stored, _ = self.cs.generate_signature_key_pair(self._rng)
            await self.store.save("signature", stored)
        self._signature_priv = stored
        await self.trust.load()
        self.trust.check_in_background(lambda: self.identity, stored)
        for key in await self.store.keys("kp:"):
            data = await self.store.load(key)
            if data is not None:
                self._load_bundle(data)
        for key in await self.store.keys("group:"):
            data = await self.store.load(key)
            if data is not None:
                slot = GroupSlot.from_bytes(data)
                self._slots[slot.group.group_id] = slot
        self.inbox.start()

    async def stop(self) -> dict[bytes, str]:
        """Stop receiving, reporting and resyncing; save every group the save policy
        allows. Returns the groups whose latest received changes stay unsaved, and why
        (they are fetched again from the log at the next start)."""
        await self.trust.stop()
        await self.recovery.stop()
        await self.inbox.stop()
        return await self.inbox.save_allowed()

    def unsaved_groups(self) -> list[bytes]:
        """The groups changed by received entries since their last save."""
        return self.inbox.unsaved()

    async def idle(self) -> None:
        """Wait until every delivery received so far was processed, and the reports
        and resyncs it caused ended (a resync the resync limit defers is not waited
        for)."""
        await self.inbox.idle()
        while not self.recovery.quiet:
            await self.recovery.idle()
            await self.inbox.idle()

    # -- receiving (the inbox) -----------------------------------------------------------

    async def deliver(self, message: Outbound) -> None:
        """:class:`transports.interface.DeliverySink`: into the inbox (enqueue only)."""
        await self.inbox.deliver(message)

    async def sync(self, group_id: bytes) -> None:
        """Fetch and apply everything the log holds beyond what we applied."""
        await self.inbox.sync(self._slot(group_id))

    # -- inspection ----------------------------------------------------------------------

    def group(self, group_id: bytes) -> Group:
        return self._slot(group_id).group

    def group_ids(self) -> list[bytes]:
        return sorted(self._slots)

    def relayed(self, group_id: bytes) -> list[str]:
        """The relayed identities holding a leaf in the group (relay puppets, named
        ``relay+...``: :mod:`bridge.identities`), sorted. Not empty: the bridge
        decrypts this group for people without an MLS client, so end-to-end encryption
        ends at the bridge -- a client shows a banner (and each sender with
        :func:`bridge.identities.display`, "alice@example.org (relayed)"). It changes
        only with the membership: check it after each commit."""
        return sorted({identity for _, leaf in self.group(group_id).members()
                       if is_relayed(identity := self.trust.identity_of(leaf.credential))})

    def received(self, group_id: bytes) -> list[Received]:
        return list(self._slot(group_id).received)

    def events(self, group_id: bytes) -> list[MembershipEvent]:
        """The group's membership events since this member (process) started, in log
        order (:mod:`bridge.member.events`)."""
        return list(self._slot(group_id).events)

    def roster(self, group_id: bytes) -> list[str]:
        """The identities of the group's members, verified (X.509: by the pinned CA)."""
        return sorted(self.trust.identity_of(leaf.credential)
                      for _, leaf in self.group(group_id).members())

    def credential_mode(self, group_id: bytes) -> CredentialMode:
        """X.509 if every member of the group is attested, else basic ("identities
        vouched by the hub only")."""
        return group_mode(self.group(group_id))

    def next_seq(self, group_id: bytes) -> int:
        return self._slot(group_id).next_seq

    def _slot(self, group_id: bytes) -> GroupSlot:
        try:
            return self._slots[group_id]
        except KeyError:
            raise MemberError(f"not in group {group_id.hex()}") from None

    # -- requests ------------------------------------------------------------------------

    async def _request(self, op: Op, **fields: object) -> Outbound:
        self._request_ids += 1
        request = Inbound(op, self.identity, f"{self._request_prefix}-{self._request_ids}",
                          **fields)  # type: ignore[arg-type]
        return await self.link.request(request)

    async def _fetch_log(self, group_id: bytes, after_seq: int, limit: int) -> Outbound:
        return await self._request(Op.FETCH_LOG, group_id=group_id, after_seq=after_seq,
                                   limit=limit)

    async def _call(self, op: Op, **fields: object) -> Outbound:
        reply = await self._request(op, **fields)
        if not reply.ok:
            raise HubRefused(reply.code, reply.reason, reply.epoch)
        return reply

    # -- KeyPackages ------------------------------------------------------------------------

    def _new_bundle(self) -> KeyPackageBundle:
        return create_key_package(self.cs, self.credential, self._signature_priv,
                                  rng=self._rng, now=self._clock())

    def _load_bundle(self, data: bytes) -> None:
        r = Reader(data)
        key_package = decode(KeyPackage, r.opaque())
        init_priv, encryption_priv, last_resort = r.opaque(), r.opaque(), r.boolean()
        r.finish("KeyPackage bundle")
        bundle = KeyPackageBundle(key_package, init_priv, encryption_priv,
                                  self._signature_priv)
        self._bundles[key_package_ref(self.cs, key_package)] = (bundle, last_resort)

    async def publish_key_packages(self, count: int = 1, *, last_resort: bool = False
                                   ) -> list[bytes]:
        """Create ``count`` KeyPackages, keep their private keys, publish them."""
        await self.refresh_credential()
        refs = []
        for _ in range(count):
            bundle = self._new_bundle()
            ref = key_package_ref(self.cs, bundle.key_package)
            w = Writer()
            w.opaque(encode(bundle.key_package))
            w.opaque(bundle.init_priv)
            w.opaque(bundle.encryption_priv)
            w.boolean(last_resort)
            await self.store.save("kp:" + ref.hex(), w.getvalue())
            self._bundles[ref] = (bundle, last_resort)
            await self._call(Op.PUBLISH_KEY_PACKAGE,
                             payload=encode(MLSMessage.wrap(bundle.key_package)),
                             device=self.device, last_resort=last_resort)
            refs.append(ref)
        return refs

    async def _claim(self, group_id: bytes, user: str) -> KeyPackage:
        """One of ``user``'s KeyPackages, claimed to add it to ``group_id`` (the hub
        serves claims to members of the named group only)."""
        reply = await self._call(Op.CLAIM_KEY_PACKAGE, group_id=group_id, target=user,
                                 cipher_suite=self.cs.id)
        body = decode(MLSMessage, reply.payload).body
        if not isinstance(body, KeyPackage):
            raise MemberError("the hub returned something other than a KeyPackage")
        leaf = body.leaf_node  # the reference identifier is ``user`` (RFC 9420 §5.3.1)
        self.trust.policy().validate(leaf.credential, leaf.signature_key)
        if self.trust.identity_of(leaf.credential) != user:
            raise MemberError(f"the hub handed out a KeyPackage of another user for {user}")
        return body

    # -- creating and joining ---------------------------------------------------------------

    async def create_group(self, group_id: bytes | None = None, *, transport: str = "",
                           room_id: str = "") -> bytes:
        """Create a group listing the hub as external sender and register it."""
        await self.refresh_credential()
        hub_sender = (await self.trust.fetch_hub_info()).external_sender
        extension = Extension(ExtensionType.EXTERNAL_SENDERS,
                              encode_external_senders([hub_sender]))
        group = Group.create(self._new_bundle(), group_id=group_id or self._rng(32),
                             rng=self._rng, extensions=(extension,), config=self.config)
        info = group.group_info()
        tree = b"" if find_extension(info.extensions, ExtensionType.RATCHET_TREE) else \
            group.ratchet_tree()
        slot = GroupSlot(group, 1)
        self._slots[group.group_id] = slot
        await self.inbox.persist(slot)
        await self._call(Op.CREATE_GROUP, group_id=group.group_id,
                         group_info=encode(MLSMessage.wrap(info)), ratchet_tree=tree,
                         transport=transport, room_id=room_id)
        return group.group_id

    async def _join(self, delivery: Outbound) -> None:
        body = decode(MLSMessage, delivery.payload).body
        if not isinstance(body, Welcome):
            raise MemberError("a Welcome delivery without a Welcome")
        mine = next((self._bundles[s.new_member] for s in body.secrets
                     if s.new_member in self._bundles), None)
        if mine is None:
            return  # not for one of our KeyPackages (another device, or already used)
        existing = self._slots.get(delivery.group_id)
        if existing is not None and existing.group.active and not existing.broken:
            return  # a duplicate Welcome
        bundle, last_resort = mine
        group = Group.join(body, bundle, ratchet_tree=delivery.ratchet_tree or None,
                           now=self._clock(), config=self.config,
                           credential_validator=self.trust.tolerant())
        signer = welcome_group_info(body, bundle).signer
        self.trust.check_welcomer(group, signer)
        if not last_resort:
            ref = key_package_ref(self.cs, bundle.key_package)
            self._bundles.pop(ref, None)
            await self.store.delete("kp:" + ref.hex())
        slot = GroupSlot(group, delivery.seq + 1)
        self._slots[group.group_id] = slot
        await self.inbox.persist(slot)
        self.inbox.emit(slot, [welcome_event(group, signer, delivery.seq,
                                             self.trust.identity_of)])

    async def fetch_welcomes(self) -> int:
        """Ask the hub for Welcomes that were not delivered; return how many joined."""
        reply = await self._call(Op.FETCH_WELCOMES)
        before = len(self._slots)
        for item in reply.entries:
            await self._join(item)
        return len(self._slots) - before

    # -- commits --------------------------------------------------------------------------

    async def add_members(self, group_id: bytes, identities: Sequence[str]) -> int | None:
        """Add users (one claimed KeyPackage each); None if they all are in already."""
        claimed: dict[str, KeyPackage] = {}

        async def plan(group: Group) -> CommitPlan | None:
            present = {self.trust.identity_of(leaf.credential) for _, leaf in group.members()}
            missing = [who for who in identities if who not in present]
            if not missing:
                return None
            for who in missing:
                if who not in claimed:
                    claimed[who] = await self._claim(group_id, who)
            return CommitPlan(add=tuple(claimed[who] for who in missing))

        return await self._commits.commit(group_id, plan)

    async def remove_members(self, group_id: bytes, identities: Sequence[str]) -> int | None:
        """Remove every leaf of the users; None if none of them is in any more."""
        wanted = set(identities)

        async def plan(group: Group) -> CommitPlan | None:
            targets = [int(leaf) for leaf, node in group.members()
                       if self.trust.identity_of(node.credential) in wanted]
            if not targets:
                return None
            pending = pending_removes(group)
            return CommitPlan(remove=tuple(t for t in targets if t not in pending))

        return await self._commits.commit(group_id, plan)

    async def update(self, group_id: bytes) -> int | None:
        """Commit with a fresh path (new leaf keys), retried until it lands."""

        async def plan(group: Group) -> CommitPlan | None:
            return CommitPlan(force_path=True)

        return await self._commits.commit(group_id, plan)

    async def commit_pending(self, group_id: bytes) -> int | None:
        """Commit the pending proposals (e.g. the hub's Removes); None if there are none."""

        async def plan(group: Group) -> CommitPlan | None:
            return CommitPlan() if group.state.pending else None

        return await self._commits.commit(group_id, plan)

    # -- application messages ---------------------------------------------------------------

    async def send_text(self, group_id: bytes, text: str, *, reply_to: bytes | None = None,
                        replaces: bytes | None = None,
                        attachment: Attachment | None = None) -> Content:
        content = Content(self._rng(16), text, reply_to, replaces, attachment)
        await self.send_content(group_id, content)
        return content

    async def send_content(self, group_id: bytes, content: Content) -> int:
        """Encrypt and send; re-encrypt in the current epoch if the hub finds it stale.

        The ratchet advances and the state is saved under the slot's lock; the lock is
        released for the hub's round trip, so the inbox applies deliveries meanwhile
        (the echo of this message is recognised by its digest, whichever comes first:
        the echo or the reply)."""
        data = content.encode()
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt, self._jitter))
            slot = self._slot(group_id)
            async with slot.lock:
                if not slot.group.active:
                    raise MemberError("we are no longer in this group")
                group, message = slot.group.encrypt(data, rng=self._rng)
                payload = encode(message)
                slot.group = group
                slot.sent.add(digest(payload))
                await self.inbox.persist(slot)
            reply = await self._request(Op.SEND, group_id=group_id, payload=payload)
            if reply.ok:
                return reply.seq
            slot.sent.discard(digest(payload))
            if reply.code not in RETRYABLE:
                raise HubRefused(reply.code, reply.reason, reply.epoch)
            await self.inbox.catch_up(slot)
        raise MemberError(f"message not accepted after {self.retry.attempts} attempts")

    async def leave(self, group_id: bytes) -> None:
        """Leave on the network: the hub proposes our Remove for the next commit."""
        await self._call(Op.LEAVE, group_id=group_id)

    async def fetch_media(self, group_id: bytes, url: str, size: int, sha256: bytes
                          ) -> bytes:
        """Another network's media (a Matrix ``mxc://`` file) through the hub, which
        fetches it for a member of ``group_id`` (rule A23, :mod:`bridge.hub.media`):
        exactly ``size`` bytes hashing to ``sha256`` (:class:`MemberError` otherwise)."""
        reply = await self._call(Op.FETCH_MEDIA, group_id=group_id, target=url,
                                 limit=size, payload=sha256)
        data = reply.payload
        if len(data) != size or hashlib.sha256(data).digest() != sha256:
            raise MemberError("the hub returned other media than asked for")
        return data

    # -- recovery -------------------------------------------------------------------------

    async def _report(self, group_id: bytes, seq: int, reason: str) -> None:
        """Tell the hub we could not process the commit at ``seq`` (A21)."""
        await self._call(Op.REPORT, group_id=group_id, seq=seq, reason=reason)

    async def rejoin(self, group_id: bytes) -> int:
        """Join (again) by external commit from the hub's GroupInfo, removing our old
        leaf if the group still has it (resync, RFC 9420 §12.4.3.2). Returns the seq."""
        slot = self._slots.get(group_id)
        committing = slot.committing if slot is not None else asyncio.Lock()
        async with committing:  # the slot's lock only to install the new state
            return await self._rejoin_attempts(group_id, slot, committing)

    async def _rejoin_attempts(self, group_id: bytes, slot: GroupSlot | None,
                               committing: asyncio.Lock) -> int:
        lock = slot.lock if slot is not None else asyncio.Lock()
        await self.refresh_credential()
        signature_pub = self.cs.signature_public_key(self._signature_priv)
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt, self._jitter))
            info = await self._call(Op.GET_GROUP_INFO, group_id=group_id)
            group, commit, old_leaf = self._external_commit(info, signature_pub)
            staged_info = group.group_info()
            tree = b"" if find_extension(staged_info.extensions,
                                         ExtensionType.RATCHET_TREE) else group.ratchet_tree()
            reply = await self._request(
                Op.SUBMIT_COMMIT, group_id=group_id, payload=encode(commit),
                group_info=encode(MLSMessage.wrap(staged_info)), ratchet_tree=tree)
            if reply.ok:
                new_slot = GroupSlot(group, reply.seq + 1, lock=lock, committing=committing)
                async with lock:
                    if slot is not None:
                        new_slot.received, new_slot.events = slot.received, slot.events
                    self._slots[group_id] = new_slot
                    # raised before the inbox can apply (and raise events for) later entries
                    self.inbox.emit(new_slot, [joined_event(
                        group, reply.seq, self.trust.identity_of,
                        resync=old_leaf is not None)])
                await self.inbox.persist(new_slot)
                log.info("%s: rejoined %s (old leaf %s)", self.identity,
                         group_id.hex(), old_leaf)
                return reply.seq
            if reply.code not in RETRYABLE:
                raise HubRefused(reply.code, reply.reason, reply.epoch)
        raise MemberError(f"external commit not accepted after {self.retry.attempts} attempts")

    def _external_commit(self, info: Outbound, signature_pub: bytes
                         ) -> tuple[Group, MLSMessage, int | None]:
        tree = RatchetTree.from_bytes(self.cs, info.ratchet_tree) if info.ratchet_tree \
            else None
        old_leaf = tree.find_leaf_by_signature_key(signature_pub) if tree else None
        group, commit = Group.join_external(
            info.payload, credential=self.credential, signature_priv=self._signature_priv,
            rng=self._rng, ratchet_tree=tree, resync_leaf=old_leaf, now=self._clock(),
            config=self.config, credential_validator=self.trust.tolerant())
        return group, commit, None if old_leaf is None else int(old_leaf)
