"""Where submitted mail is read and rewritten (relay/submission/intake.py): a few worker processes,
so that this CPU work neither runs on the event loop nor holds the server's GIL while
clicks are answered (docs/performance.md, "Accepting a large mail"). The workers run at
a lower CPU priority than the server, are forked from a clean fork server (never from the
threaded server itself) when the first mail comes, and ignore Ctrl-C like the observation
writer. ``[smtp] parse_workers = 0`` does the work in a thread of the server instead."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from relay.errors import TemporaryRefusal

log = logging.getLogger("clickrelay.workers")

A = TypeVar("A")
R = TypeVar("R")

WORKER_NICENESS = 10  # added to the server's: a click's work wins the CPU over a mail's
SERVER_WATCH_SECONDS = 1.0  # how often a worker looks whether the server is still there
_PRELOAD = ("relay.submission.intake",)  # imported once in the fork server, not in every worker


class MailWorkers:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._starting = asyncio.Lock()

    async def run(self, work: Callable[[A], R], argument: A) -> R:
        """``work(argument)`` in a worker. Workers that died (killed, out of memory) are
        replaced and the work is tried once more; if a worker dies again on it, the mail
        gets a temporary failure."""
        if self.processes == 0:
            return await asyncio.to_thread(work, argument)
        for attempt in (1, 2):
            pool = self._pool or await self._start()
            try:
                # submit() may start a worker process: in a thread, so that the loop never
                # waits for a process to start.
                future = await asyncio.to_thread(pool.submit, work, argument)
                return await asyncio.wrap_future(future)
            except BrokenProcessPool as exc:
                log.error("a mail worker process ended abruptly; starting new ones")
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise TemporaryRefusal("the mail could not be read (its worker process "
                                           "ended); please try again later") from exc
        raise AssertionError("unreachable")

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and measurements)."""
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    async def _start(self) -> ProcessPoolExecutor:
        async with self._starting:
            if self._pool is None:
                # The first pool starts the fork server and multiprocessing's resource
                # tracker, each a new interpreter: not on the loop either.
                self._pool = await asyncio.to_thread(_new_pool, self.processes)
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def _new_pool(processes: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_PRELOAD))
    return ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_started,
                               initargs=(os.getpid(),))


def _worker_started(server: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)
    threading.Thread(target=_end_with, args=(server,), name="server-watch", daemon=True).start()


def _end_with(server: int) -> None:
    """End this worker when the server is gone (killed, crashed). A worker holds its own
    end of the pool's pipes, so it never sees the server go; and while a worker lives, so
    does the fork server (its children keep it alive): both would be left behind."""
    while True:
        time.sleep(SERVER_WATCH_SECONDS)
        try:
            os.kill(server, 0)
        except (ProcessLookupError, PermissionError):  # gone, or its number reused
            os._exit(0)
