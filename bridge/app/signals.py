"""Stopping a process on SIGTERM and SIGINT: one helper for the `mls-bridge` command
and the two single-network services.

* :func:`stop_on_signals` -- the signals set an :class:`asyncio.Event`; with
  ``overrun_after`` it also arms a last-resort watchdog: a stop still running that many
  seconds after the first signal is logged (``stop overran``) and the process exits 0
  at once. The stop itself is bounded (:mod:`bridge.app.shutdown`), so the watchdog
  only fires on a bug -- the tests assert it never does;
* :func:`end_leftover_tasks` -- after the stop, every task still running is named
  (``task left running at stop``: a resource the stop forgot) and cancelled, so the
  event loop closes with nothing pending;
* :func:`run_until_signalled` -- both, around a service's ``serve(stop)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: Seconds :func:`end_leftover_tasks` waits for the tasks it cancelled.
LEFTOVER_GRACE = 1.0


def stop_on_signals(stop: asyncio.Event,
                    announce: Callable[[str], None] | None = None, *,
                    overrun_after: float | None = None) -> None:
    """SIGTERM and SIGINT set ``stop`` (after ``announce(signal name)``, if given), in
    the running loop; the first one arms the watchdog if ``overrun_after`` is given."""
    loop = asyncio.get_running_loop()
    armed: list[threading.Timer] = []

    def on_signal(signum: int) -> None:
        if announce is not None:
            announce(signal.Signals(signum).name)
        stop.set()
        if overrun_after is not None and not armed:
            timer = threading.Timer(overrun_after, _overrun, (overrun_after,))
            timer.daemon = True
            timer.start()
            armed.append(timer)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)


def _overrun(seconds: float) -> None:
    """The watchdog: the stop did not end in time (a bug); log it and exit now."""
    log.critical("stop overran: still running %.1f s after the signal; exiting now",
                 seconds)
    logging.shutdown()
    os._exit(0)


async def end_leftover_tasks(grace: float = LEFTOVER_GRACE) -> list[str]:
    """Name, cancel and await (up to ``grace`` s) every task but the current one;
    return their names. Called once the stop is over: a task still running is a
    resource the stop forgot."""
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    names = []
    for task in left:
        names.append(_describe(task))
        log.warning("task left running at stop: %s", names[-1])
        task.cancel()
    if left:
        _, pending = await asyncio.wait(left, timeout=grace)
        for task in pending:
            log.warning("task did not end when cancelled: %s", _describe(task))
    return names


def _describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', type(coro).__name__)})"


def run_until_signalled(serve: Callable[[asyncio.Event], Awaitable[int]], *,
                        overrun_after: float = 20.0) -> int:
    """Run ``serve(stop)`` in a new event loop until it returns its exit code; SIGTERM
    or SIGINT sets ``stop``, and the process exits at the latest ``overrun_after`` s
    after the signal."""

    async def run() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop, overrun_after=overrun_after)
        try:
            return await serve(stop)
        finally:
            await end_leftover_tasks()

    return asyncio.run(run())
