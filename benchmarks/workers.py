"""Worker processes for the load harness: each runs its own asyncio loop and serves
calls from the coordinator over a pipe (``multiprocessing``, ``spawn``: a fresh
interpreter, nothing inherited from the coordinator's loop).

The control protocol is one pickled tuple per message: the coordinator sends
``(call_id, method, kwargs)``, the worker answers ``(call_id, ok, result)`` where ``ok``
is False and ``result`` a formatted traceback when the call raised. Calls run
concurrently inside a worker (one task each), so the coordinator may have several in
flight to one worker; a reader task per worker routes the answers to their callers.

Timestamps crossing processes are ``time.monotonic()``, which on Linux is
``clock_gettime(CLOCK_MONOTONIC)``: one system-wide clock, comparable between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import multiprocessing
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from benchmarks.bridge_run import cpu_seconds


class WorkerError(Exception):
    """A call raised in a worker (its traceback is the message)."""


async def _readable(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


def worker_main(conn: Connection, factory: str, index: int, args: dict[str, Any]) -> None:
    """The worker process: build ``factory(index, **args)`` (``module:Class``) and serve
    its ``async`` methods until the coordinator closes the pipe or calls ``stop``."""
    logging.basicConfig(level=logging.WARNING,
                        format=f"w{index} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bridge.member").setLevel(logging.INFO)
    module, name = factory.split(":")
    handler = getattr(importlib.import_module(module), name)(index, **args)
    asyncio.run(_serve(conn, handler))


async def _serve(conn: Connection, handler: Any) -> None:
    tasks: set[asyncio.Task[None]] = set()

    async def run(call_id: int, method: str, kwargs: dict[str, Any]) -> None:
        try:
            result = await getattr(handler, method)(**kwargs)
            conn.send((call_id, True, result))
        except Exception:  # noqa: BLE001 -- reported to the coordinator, which raises
            conn.send((call_id, False, traceback.format_exc()))

    while True:
        await _readable(conn)
        try:
            call_id, method, kwargs = conn.recv()
        except EOFError:
            break
        if method == "stop":
            break
        task = asyncio.create_task(run(call_id, method, kwargs))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    with contextlib.suppress(Exception):
        await handler.close()
    conn.close()


class WorkerPool:
    """``count`` worker processes serving ``factory`` (see :func:`worker_main`)."""

    def __init__(self, count: int, factory: str, args: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.processes: list[BaseProcess] = []
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, factory, index, args),
                                      name=f"load-worker-{index}", daemon=True)
            process.start()
            theirs.close()
            self.conns.append(ours)
            self.processes.append(process)
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._readers: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self.conns)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def cpu_seconds(self) -> float:
        """CPU seconds of the workers so far (``/proc``)."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def start(self) -> None:
        self._readers = [asyncio.create_task(self._read(conn)) for conn in self.conns]

    async def _read(self, conn: Connection) -> None:
        while True:
            await _readable(conn)
            try:
                call_id, ok, result = conn.recv()
            except EOFError:
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(WorkerError("a worker exited"))
                return
            future = self._waiting.pop(call_id)
            if ok:
                future.set_result(result)
            else:
                future.set_exception(WorkerError(result))

    async def call(self, worker: int, method: str, **kwargs: Any) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        self.conns[worker].send((call_id, method, kwargs))
        return await future

    async def each(self, method: str, per_worker: Sequence[dict[str, Any]] | None = None,
                   **kwargs: Any) -> list[Any]:
        """Call ``method`` in every worker at once (``per_worker[i]``: worker i's own
        keyword arguments, added to ``kwargs``); the answers in worker order."""
        extra = per_worker or [{} for _ in self.conns]
        return list(await asyncio.gather(*(self.call(i, method, **kwargs, **extra[i])
                                           for i in range(len(self.conns)))))

    async def close(self, timeout: float = 20.0) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send((next(self._ids), "stop", {}))
        loop = asyncio.get_running_loop()
        for process in self.processes:
            await loop.run_in_executor(None, process.join, timeout)
            if process.is_alive():
                process.kill()
        for reader in self._readers:
            reader.cancel()
        for conn in self.conns:
            conn.close()
