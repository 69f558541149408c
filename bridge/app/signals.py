"""Stopping a process on SIGTERM and SIGINT: one helper for the `mls-bridge` command
and the two single-network services."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable


def stop_on_signals(stop: asyncio.Event,
                    announce: Callable[[str], None] | None = None) -> None:
    """SIGTERM and SIGINT set ``stop`` (after ``announce(signal name)``, if given), in
    the running loop."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if announce is not None:
            announce(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)


def run_until_signalled(serve: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``serve(stop)`` in a new event loop until it returns its exit code; SIGTERM
    or SIGINT sets ``stop``."""

    async def run() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        return await serve(stop)

    return asyncio.run(run())
