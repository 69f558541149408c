"""The graceful stop: five phases in one order, under one deadline.

:meth:`bridge.app.services.bridge.BridgeService.stop` (driven by the runtime on
SIGTERM/SIGINT) runs these phases, each logged as ``stop phase`` with its name:

1. ``refuse`` -- new hub requests are answered "unavailable" on both networks;
2. ``drain`` -- requests already in flight finish, and so do those the XMPP component
   admitted to its queue (answered "unavailable" if they reach the hub after the
   refusal); then the Matrix receiver stops after the batch it is in, every request of
   it answered (what it has not fetched stays on the homeserver for the next start);
   the relay works off its queues; last the hub's fan-out queues
   (:mod:`bridge.hub.fanout`) empty, Welcomes and the puppets' sends included (what is
   left is named per group and network);
3. ``members`` -- the relay's workers stop and every puppet stops with its last save
   (never past a message the relay has not re-emitted:
   :class:`bridge.relay.puppets.EmittedFirst`); then the hub's fan-out closes: nothing
   is queued for delivery after it, and what it held is in the hub's log, from which
   members catch up;
4. ``networks`` -- the XMPP stream is closed, the Matrix sync task (or the
   application-service web server) is stopped, the transports' admission queues and
   every HTTP session closed;
5. ``store`` -- closed last, once everything that writes to it stopped or was
   abandoned.

One deadline, computed once from ``shutdown_timeout`` when the stop begins, bounds all
of them: each phase may run until its share of it (:data:`PHASE_ENDS`: the drain until
50 %, the members until 75 %, the networks until 90 %, the store until 100 %); a phase
that ends early leaves its time to the next. A phase that overruns is cut short: its
step still running is cancelled (``stop step cut``), and what it could not do is logged
by name (``stop: not done``, e.g. ``puppet xmpp:bob@example.org group 1a2b... not
saved: ...``); the next phases still run. So the whole stop takes at most
``shutdown_timeout`` plus :data:`CANCEL_GRACE` and :data:`MIN_STEP` per step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bridge.app.logs import event

log = logging.getLogger(__name__)

#: Each phase's end, as a share of ``shutdown_timeout`` from the start of the stop.
PHASE_ENDS: Final = {"refuse": 0.0, "drain": 0.5, "members": 0.75, "networks": 0.9,
                     "store": 1.0}
#: Seconds every step gets even when its phase's time is spent (flags, closing sessions).
MIN_STEP: Final = 0.1
#: Seconds a cut step is given to end once cancelled before it is abandoned.
CANCEL_GRACE: Final = 0.5
#: Seconds a single-network service (``python -m bridge.app.services.xmpp|matrix``)
#: lets its hub's fan-out drain at stop before closing it (within the signal
#: watchdog's bound, :func:`bridge.app.signals.run_until_signalled`).
SERVICE_DRAIN: Final = 10.0


def _nothing() -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class Step:
    """One named piece of a phase. ``unfinished()`` names, after the step ended (done
    or cut), what it could not do: each name is logged as ``stop: not done``."""

    name: str
    run: Callable[[], Awaitable[None]]
    unfinished: Callable[[], Iterable[str]] = field(default=_nothing)


class Shutdown:
    """The deadline of one stop and its phase runner (see the module docstring)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._clock = asyncio.get_running_loop().time
        self.began = self._clock()
        self.deadline = self.began + timeout
        self.cut: list[str] = []  # "phase/step" of every step cut short or failed
        self.not_done: list[str] = []  # everything logged as not done

    def end_of(self, phase: str) -> float:
        """When ``phase`` must be over (loop time)."""
        return self.began + self.timeout * PHASE_ENDS[phase]

    @property
    def elapsed(self) -> float:
        return self._clock() - self.began

    async def phase(self, name: str, *steps: Step, together: bool = False) -> bool:
        """Run the phase's steps one after the other (or ``together``) until the
        phase's end; True if every step completed."""
        end = self.end_of(name)
        event(log, logging.INFO, "stop phase", phase=name,
              budget=round(max(0.0, end - self._clock()), 3))
        if together:
            results = await asyncio.gather(*(self._step(name, step, end) for step in steps))
            return all(results)
        completed = True
        for step in steps:
            completed = await self._step(name, step, end) and completed
        return completed

    async def _step(self, phase: str, step: Step, end: float) -> bool:
        task = asyncio.get_running_loop().create_task(
            _run(step.run), name=f"stop {phase}: {step.name}")
        try:
            await asyncio.wait({task}, timeout=max(end - self._clock(), MIN_STEP))
        except asyncio.CancelledError:
            task.cancel()
            raise
        outcome = ""
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
            if task.done():
                outcome = "cut short by the deadline"
            else:
                outcome = "abandoned: still running after it was cancelled"
                task.add_done_callback(_retrieve)
        elif task.cancelled():
            outcome = "cancelled"
        elif (error := task.exception()) is not None:
            outcome = f"failed: {type(error).__name__}: {error}"
        if outcome:
            self.cut.append(f"{phase}/{step.name}")
            event(log, logging.WARNING, "stop step cut", phase=phase, step=step.name,
                  outcome=outcome)
        for what in step.unfinished():
            self.not_done.append(what)
            event(log, logging.WARNING, "stop: not done", phase=phase, what=what)
        return not outcome


async def _run(work: Callable[[], Awaitable[None]]) -> None:
    await work()


def _retrieve(task: asyncio.Task[None]) -> None:
    """An abandoned step's outcome, retrieved once it ends (it was logged already)."""
    if not task.cancelled():
        task.exception()


__all__ = ["CANCEL_GRACE", "MIN_STEP", "PHASE_ENDS", "SERVICE_DRAIN", "Shutdown", "Step"]
