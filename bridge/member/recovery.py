"""A member's recovery from a commit it cannot process: a report to the hub, then a
bounded resync by external commit (RFC 9420 §12.4.3.2; SECURITY.md rule A21 and "The
hub verifies what it relays").

The hub verifies everything of a commit that needs no secret; what does -- the
membership tag (§6.2), the confirmation MAC (§6.1, §8.1), the path secret encrypted to
us (§7.5) -- only members can check. When the inbox cannot apply a commit the hub
accepted (:class:`bridge.member.inbox.Inbox` calls :meth:`Recovery.broken`), the
member:

1. reports it (``Op.REPORT``: group, the commit's seq, :func:`fault_reason`) if the
   failure is one of those; the hub removes and bans a committer that enough members
   report (:mod:`bridge.hub.faults`). A refused report is logged, not retried;
2. resyncs by external commit (:meth:`bridge.member.Member.rejoin`), at most once per
   group per ``interval`` seconds: after a failed resync the next one waits
   ``interval * 2**failures`` (at most ``interval * 2**MAX_DOUBLINGS``), and after
   ``attempts`` failures in a row it stops (the group stays broken until an explicit
   :meth:`~bridge.member.Member.rejoin`). A commit that breaks the group again right
   after a resync therefore costs at most one resync per interval, never a storm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bridge.errors import BridgeError
from mls import (
    ConfirmationTagError,
    CryptoError,
    MembershipTagError,
    MLSError,
    PathSecretError,
)
from transports.errors import TransportError

log = logging.getLogger("bridge.member")

#: The reason codes of ``Op.REPORT`` (the hub's :data:`bridge.hub.faults.FAULT_REASONS`).
MEMBERSHIP_TAG = "membership-tag"
CONFIRMATION_TAG = "confirmation-tag"
PATH_SECRET = "path-secret"
MAX_DOUBLINGS = 4
RECOVERY_FAILURES = (MLSError, BridgeError, TransportError, OSError)


def fault_reason(error: MLSError) -> str | None:
    """The report code of a failure only members can detect, else None (a commit we
    fail for another reason -- our own state is stale, say -- is not reported)."""
    if isinstance(error, MembershipTagError):
        return MEMBERSHIP_TAG
    if isinstance(error, ConfirmationTagError):
        return CONFIRMATION_TAG
    if isinstance(error, (PathSecretError, CryptoError)):
        return PATH_SECRET
    return None


Report = Callable[[bytes, int, str], Awaitable[None]]
Rejoin = Callable[[bytes], Awaitable[int]]


class Recovery:
    """Reports and resyncs of one member (see the module docstring). ``resyncs``
    counts the resync attempts started, ``reports`` the reports sent."""

    def __init__(self, *, report: Report, rejoin: Rejoin, identity: Callable[[], str],
                 interval: float, attempts: int) -> None:
        self._report = report
        self._rejoin = rejoin
        self._identity = identity
        self.interval = interval
        self.attempts = attempts
        self.resyncs = 0
        self.reports = 0
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._reporting: set[asyncio.Task[None]] = set()
        self._active: set[bytes] = set()  # resyncs under way (not deferred by the limit)
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._last: dict[bytes, float] = {}
        self._failures: dict[bytes, int] = {}

    def broken(self, group_id: bytes, seq: int, error: MLSError) -> None:
        """The inbox could not apply the commit at ``seq`` (the inbox's ``on_broken``)."""
        loop = asyncio.get_running_loop()
        reason = fault_reason(error)
        if reason is not None:
            task = loop.create_task(self._send_report(group_id, seq, reason))
            self._reporting.add(task)
            task.add_done_callback(self._report_done)
        if group_id not in self._tasks:
            self._activity(group_id, True)
            self._tasks[group_id] = loop.create_task(self._recover(group_id))
        self._changed()

    @property
    def quiet(self) -> bool:
        """Whether no report or resync is under way."""
        return self._quiet.is_set()

    async def idle(self) -> None:
        """Wait until no report or resync is under way (one deferred by the resync
        limit is not waited for)."""
        await self._quiet.wait()

    async def stop(self) -> None:
        """Cancel every report and resync, waiting or under way."""
        tasks = [*self._tasks.values(), *self._reporting]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _activity(self, group_id: bytes, active: bool) -> None:
        if active:
            self._active.add(group_id)
        else:
            self._active.discard(group_id)
        self._changed()

    def _report_done(self, task: asyncio.Task[None]) -> None:
        self._reporting.discard(task)
        self._changed()

    def _changed(self) -> None:
        if self._active or self._reporting:
            self._quiet.clear()
        else:
            self._quiet.set()

    async def _send_report(self, group_id: bytes, seq: int, reason: str) -> None:
        try:
            await self._report(group_id, seq, reason)
            self.reports += 1
        except RECOVERY_FAILURES as exc:
            log.warning("%s: report of seq %d in %s failed: %s", self._identity(), seq,
                        group_id.hex(), exc)

    async def _recover(self, group_id: bytes) -> None:
        """Resync, at most once per interval, until it works or ``attempts`` fail."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                failures = self._failures.get(group_id, 0)
                last = self._last.get(group_id)
                if last is not None:
                    delay = self.interval * 2 ** min(failures, MAX_DOUBLINGS)
                    self._activity(group_id, False)
                    await asyncio.sleep(max(0.0, last + delay - loop.time()))
                    self._activity(group_id, True)
                self._last[group_id] = loop.time()
                self.resyncs += 1
                try:
                    await self._rejoin(group_id)
                except RECOVERY_FAILURES as exc:
                    self._failures[group_id] = failures + 1
                    log.warning("%s: resync of %s failed (%d in a row): %s",
                                self._identity(), group_id.hex(), failures + 1, exc)
                    if failures + 1 >= self.attempts:
                        return
                    continue
                self._failures.pop(group_id, None)
                return
        finally:
            self._tasks.pop(group_id, None)
            self._activity(group_id, False)
