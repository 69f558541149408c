"""A member's own commits: staged under the group's lock, submitted without it, merged
only once the hub accepted them, retried after catching up (RFC 9420 §12.4, RFC 9750
§5.2: one commit per epoch, chosen by the delivery service).

:class:`OwnCommits` is the commit path of :class:`bridge.member.Member` (which keeps
the planners: what to add, remove or update). Its rules:

* the group's lock is held to plan and stage a commit, never across the hub's round
  trip: meanwhile the member's inbox goes on applying the log strictly in order;
* while the commit is pending (``slot.staged``), entries before it in the log are
  applied in its epoch, its own entry merges it (the log proves acceptance as the reply
  does), and a foreign commit for its epoch proves it refused and drops it
  (:meth:`bridge.member.inbox.Inbox._apply_commit`), so it is merged at most once and
  only after acceptance;
* "wrong epoch" (or missing proposals, or a lost reply) drops it, catches up from the
  log, re-plans and retries with jittered exponential backoff, a bounded number of
  times; a commit the log shows accepted after all counts as accepted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Protocol

from bridge.errors import HubRefused, MemberError
from bridge.member.identity import MemberIdentity
from bridge.member.inbox import DELIVERY_FAILURES, Inbox
from bridge.member.state import RETRYABLE, GroupSlot, Planner, RetryPolicy
from mls.codec import encode
from mls.crypto.suite import Rng
from mls.enums import ExtensionType
from mls.group.commit import StagedCommit
from mls.group.group import Group
from mls.messages.credentials import Credential
from mls.messages.extensions import find_extension
from mls.messages.framing import MLSMessage
from mls.messages.proposals import Remove
from transports.errors import LinkError
from transports.interface import HubLink, Inbound, Op, Outbound

log = logging.getLogger(__name__)


class CommitHost(Protocol):
    """What the commit path uses of its member (:class:`bridge.member.Member`); read
    at each commit (a member's ``retry`` may be changed at any time)."""

    link: HubLink
    inbox: Inbox
    trust: MemberIdentity
    retry: RetryPolicy

    @property
    def identity(self) -> str: ...

    @property
    def credential(self) -> Credential: ...

    async def refresh_credential(self) -> None: ...


class OwnCommits:
    """The commit path of one member (see the module docstring). ``slot`` finds a
    group's slot (:class:`MemberError` if not in it); ``rng``, ``jitter`` and ``clock``
    are the member's."""

    def __init__(self, host: CommitHost, slot: Callable[[bytes], GroupSlot], *, rng: Rng,
                 jitter: random.Random, clock: Callable[[], int]) -> None:
        self._host = host
        self._slot = slot
        self._rng = rng
        self._jitter = jitter
        self._clock = clock

    async def commit(self, group_id: bytes, planner: Planner) -> int | None:
        """Plan, commit, submit; on refusal catch up, re-plan and retry (bounded).
        Returns the commit's log seq, or None if the planner found nothing to do.

        One commit of ours at a time per group (``slot.committing``). On an accepting
        reply while the inbox is behind, the log is fetched so what precedes our commit
        is applied in its epoch first (merging ahead of it -- twice in a row, say --
        would leave us more epochs ahead than ``max_past_epochs`` keeps keys for).

        The planner runs once outside the lock (any I/O it needs, such as claiming
        KeyPackages, happens there) and again under it on the state being committed
        (it then finds what it fetched). If deliveries for the group are waiting, the
        first attempt catches up with the log first, for the same reason. Our
        credential is refreshed first (X.509: attested anew when it runs short), also
        outside the lock."""
        await self._host.refresh_credential()
        async with self._slot(group_id).committing:
            return await self._attempts(group_id, planner)

    async def _attempts(self, group_id: bytes, planner: Planner) -> int | None:
        host, inbox = self._host, self._host.inbox
        retry = host.retry
        last = "no attempt"
        for attempt in range(retry.attempts):
            if attempt:
                await asyncio.sleep(retry.delay(attempt, self._jitter))
            slot = self._slot(group_id)
            check_can_commit(slot)
            if not attempt and (slot.buffer or inbox.pending(group_id)):
                await inbox.catch_up(slot)  # see commit()
            if await planner(slot.group) is None:
                return None
            async with slot.lock:
                check_can_commit(slot)
                plan = await planner(slot.group)
                if plan is None:
                    return None
                staged = slot.group.commit(rng=self._rng, add=plan.add, remove=plan.remove,
                                           force_path=plan.force_path, now=self._clock(),
                                           credential_validator=host.trust.policy(),
                                           credential=host.credential)
                request = self._bundle(staged)
                slot.staged, slot.staged_bytes, slot.merged_seq = staged, request.payload, 0
            try:  # the lock is released: the inbox applies deliveries meanwhile
                reply: Outbound | None = await host.link.request(request)
            except LinkError as exc:
                reply, last = None, f"link error: {exc}"
            if reply is not None and reply.ok:
                return await self._accepted(slot, staged, reply.seq)
            if reply is not None:
                last = f"{reply.code}: {reply.reason}"
                if reply.code not in RETRYABLE:
                    _drop_staged(slot, staged)
                    raise HubRefused(reply.code, reply.reason, reply.epoch)
            try:
                await inbox.catch_up(slot)
            finally:
                merged = slot.staged is None and slot.merged_seq != 0
                _drop_staged(slot, staged)
            if merged:  # the log showed our commit was accepted after all
                await inbox.persist(slot)
                return slot.merged_seq
        raise MemberError(f"commit not accepted after {retry.attempts} attempts "
                          f"(last: {last})")

    def _bundle(self, staged: StagedCommit) -> Inbound:
        info = staged.group_info
        tree = b"" if find_extension(info.extensions, ExtensionType.RATCHET_TREE) else \
            staged.state.tree.to_bytes()
        return Inbound(Op.SUBMIT_COMMIT, self._host.identity,
                       group_id=info.group_context.group_id, payload=encode(staged.message),
                       welcome=encode(staged.welcome) if staged.welcome else b"",
                       group_info=encode(MLSMessage.wrap(info)), ratchet_tree=tree)

    async def _accepted(self, slot: GroupSlot, staged: StagedCommit, seq: int) -> int:
        """The hub accepted our commit at ``seq``: merge it in log order (see
        :meth:`commit`), save, return ``seq``."""
        inbox = self._host.inbox
        if slot.staged is staged and slot.next_seq < seq:
            try:  # entries before ours are applied first; our own entry merges it
                await inbox.catch_up(slot)
            except DELIVERY_FAILURES as exc:
                log.info("%s: catch-up before merging our commit failed: %s",
                         self._host.identity, type(exc).__name__)
        async with slot.lock:
            if slot.staged is staged:  # merge_own raises its membership events once
                inbox.merge_own(slot, seq)
                self._mark_own(slot, seq)
            elif slot.merged_seq != seq:
                raise MemberError("the hub accepted our commit after logging another "
                                  "commit for its epoch")
        await inbox.persist(slot)
        return seq

    def _mark_own(self, slot: GroupSlot, seq: int) -> None:
        """Our commit at ``seq`` is merged: skip it when the log gets there."""
        if slot.next_seq == seq:
            slot.next_seq = seq + 1
            self._host.inbox.drain(slot)
        elif seq > slot.next_seq:
            slot.own_seqs.add(seq)


def check_can_commit(slot: GroupSlot) -> None:
    """:class:`MemberError` unless we may commit in this group now."""
    if not slot.group.active:
        raise MemberError("we are no longer in this group")
    if slot.broken:
        raise MemberError("our group state is broken; resync first")
    if int(slot.group.own_leaf) in pending_removes(slot.group):
        raise MemberError("a pending proposal removes us: we cannot commit")


def _drop_staged(slot: GroupSlot, staged: StagedCommit) -> None:
    """Forget ``staged`` if it is still the slot's pending commit."""
    if slot.staged is staged:
        slot.staged = None


def pending_removes(group: Group) -> set[int]:
    """Leaves that pending proposals of the epoch remove."""
    removed = set()
    for item in group.state.pending:
        proposal = item.authenticated.content.content
        if isinstance(proposal, Remove):
            removed.add(proposal.removed)
    return removed


__all__ = ["CommitHost", "OwnCommits", "check_can_commit", "pending_removes"]
