"""Faults the hub cannot verify, and why they cannot be turned into a resync storm
(SECURITY.md, "The hub verifies what it relays"; rule A21).

The hub checks every commit against its own public state (:mod:`bridge.hub.commits`),
but three things need the group's secrets: the membership tag of a member's
PublicMessage (RFC 9420 §6.2), the MAC of the confirmation tag (§6.1, §8.1) and the
encrypted path secrets of an UpdatePath (§7.5, §7.6). A member can send a commit that
passes every public check and that no other member can process. Each member that
fails it sends a ``report`` (group, the commit's seq, one of :data:`FAULT_REASONS`)
and then resyncs by external commit -- at most once per group per
``resync_interval`` on its side (:mod:`bridge.member.recovery`, with backoff).

The hub (:meth:`bridge.hub.Hub.handle`, ``Op.REPORT``):

* accepts a report only from a current member of the group, about a commit of the
  group's log (not its own, not older than ``report_window`` epochs), once per
  (reporter, commit) -- the store's primary key;
* when reports from :func:`quorum` distinct members (``fault_quorum``, default 2, or
  every other member if there are fewer) name the same commit, puts its committer on
  the group's ban list (persisted) and queues the hub's Remove of every leaf of that
  identity, reason ``fault``; the next commit must cover it (an external commit, which
  cannot, is followed by the same Remove again: :meth:`HubRemoves.repropose`);
* refuses commits and external joins (GroupInfo included) from a banned identity;
* accepts at most ``external_commit_limit`` external commits per (identity, group)
  in any ``external_commit_window`` seconds (:class:`ExternalCommitLimit`).

Why a storm cannot be repeated: one bad commit makes each honest member resync once
(its own limit, and the hub's rate limit for a member that ignores it). Every honest
member that failed it reports it, so the quorum is reached in that same round (with
fewer than ``fault_quorum`` other members, all of them is the quorum). From then on
the committer's identity can neither commit nor join the group again, and its leaves
are removed by the next commit. So each attacker identity causes at most one round
of resyncs, then it is out.

Limits, stated plainly: reports are not proofs (the hub cannot check them), so
identities as many as the quorum, all members, could get an honest committer removed
-- which members of a group can do by a plain commit anyway; a member that joined
after a commit may still report it (the hub does not keep who was in which epoch),
within ``report_window`` epochs. If the committer's accomplices are enough members to
keep the quorum out of reach, the member-side limit still holds: at most one resync
per member per ``resync_interval``, doubling while resyncs keep failing. Bans are per
group and go only with the group.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

from bridge.errors import AlreadyExists, Forbidden, Malformed, NotMember, RateLimited, StaleEpoch
from bridge.hub.public_view import identities
from bridge.hub.store import Conflict, LogKind, Store
from bridge.identities import IdentityVerifier
from mls import PublicGroup
from transports.interface import Inbound

log = logging.getLogger(__name__)

#: What a member may report: the failures that need group secrets to detect.
MEMBERSHIP_TAG = "membership-tag"
CONFIRMATION_TAG = "confirmation-tag"
PATH_SECRET = "path-secret"
FAULT_REASONS = frozenset({MEMBERSHIP_TAG, CONFIRMATION_TAG, PATH_SECRET})

#: The reason recorded with a ban.
BAN_REASON = "fault report"
#: How many (group, identity) windows the rate limit keeps before dropping idle ones.
SWEEP_AT = 10_000


def quorum(configured: int, members: Iterable[str], committer: str) -> int:
    """How many distinct reporters convict ``committer``: ``configured``, or every
    other member of the group if there are fewer (at least one)."""
    others = set(members) - {committer}
    return max(1, min(configured, len(others)))


async def take_report(store: Store, group: PublicGroup, request: Inbound, *,
                      quorum_size: int, window: int, now: int,
                      verifier: IdentityVerifier | None) -> str | None:
    """Record a member's report of the commit at ``request.seq`` (see the module
    docstring); return the committer if this report completes the quorum and puts it on
    the ban list (None otherwise: not yet, or already banned)."""
    members = identities(group, verifier)
    if request.sender not in members:
        raise NotMember(f"{request.sender} is not a member of the group")
    entries = await store.log_since(group.group_id, request.seq - 1, 1)
    entry = entries[0] if entries else None
    if entry is None or entry.seq != request.seq or entry.kind != LogKind.COMMIT:
        raise Malformed(f"seq {request.seq} is not a commit of this group")
    if entry.epoch < group.epoch - window:
        raise StaleEpoch(group.epoch, f"the commit of epoch {entry.epoch} is too old to "
                                      f"report (current {group.epoch})")
    committer = entry.sender
    if committer == request.sender:
        raise Forbidden("a member does not report its own commit")
    try:
        count = await store.add_fault_report(group.group_id, request.seq, request.sender,
                                             request.reason, now)
    except Conflict as exc:
        raise AlreadyExists("this member already reported this commit") from exc
    if count < quorum(quorum_size, members, committer) or \
            not await store.ban(group.group_id, committer, BAN_REASON, now):
        return None
    log.warning("group %s: %d member(s) reported commit %d; %s is removed and banned",
                group.group_id.hex(), count, request.seq, committer)
    return committer


class ExternalCommitLimit:
    """At most ``limit`` external commits per (group, identity) in any ``window``
    seconds, in this hub process (a sliding window of acceptance times; the limits
    are given with each call, so a changed configuration applies at once)."""

    def __init__(self) -> None:
        self._accepted: dict[tuple[bytes, str], deque[int]] = {}

    def check(self, group_id: bytes, identity: str, now: int, *, limit: int,
              window: int) -> None:
        """:class:`RateLimited` if another external commit would exceed the limit."""
        times = self._accepted.get((group_id, identity))
        if times is not None and len(expire(times, now, window)) >= limit:
            raise RateLimited(f"at most {limit} external commits per {window} s for "
                              f"{identity} in this group")

    def record(self, group_id: bytes, identity: str, now: int, *, window: int) -> None:
        """An external commit of ``identity`` was accepted at ``now``."""
        if len(self._accepted) >= SWEEP_AT:
            for key in [k for k, times in self._accepted.items()
                        if not expire(times, now, window)]:
                del self._accepted[key]
        times = self._accepted.setdefault((group_id, identity), deque())
        expire(times, now, window).append(now)


def expire(times: deque[int], now: int, window: int) -> deque[int]:
    """``times`` (ascending) without those at or before ``now - window``."""
    while times and times[0] <= now - window:
        times.popleft()
    return times
