"""Promotion in a process of its own (``python -m relay.promotion <config file>``), so that
classifying clicks takes neither the event loop nor the GIL from the clicks being answered
(docs/architecture.md, docs/performance.md "With promotion running").

The process loads the configuration file itself and follows its changes as the server does
(relay/config/live.py), opens the store, and runs the promotion worker (tracker/promote.py)
on it. What each batch did comes back to the server as one JSON line on the process's
standard output, a ``PromotionReport``, and is counted in the server's metrics; written
webhook deliveries wake the server's dispatcher. The first line names the worker, so that
the claims of a process that died are given back at once rather than when they lapse.

The server's side, ``PromotionProcess.run``, is a supervised task (tracker/supervisor.py):
when the process ends for any reason the task fails, ``/healthz`` says so, and the
supervisor starts another. The process ignores SIGINT and SIGTERM, like the observation
writer: it ends when its standard input closes (the server stopping, or gone), after the
batch in hand, giving back its claims."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from relay import logsetup
from relay.config.live import LiveConfig
from relay.config.load import load_config
from store.store import Store
from store.writer.client import end_child
from tracker.metrics import Metrics
from tracker.promote import PromotionWorker
from tracker.promotion_report import PromotionReport, Report

log = logging.getLogger("clickrelay.promote")

# Promotion runs at a lower CPU priority than the server and the observation writer: on a
# busy machine the clicks' answers and their commits go first, and promotion takes the CPU
# they leave (its transactions are short: tracker/promote.py WRITE_CHUNK).
NICENESS = 10
STOP_TIMEOUT = 10.0  # seconds for the process to finish its batch once told to stop
LINE_LIMIT = 1 << 20  # the longest report line read (a batch's lags: about 10 KB)


class PromotionExited(Exception):
    """The promotion process ended while the server still runs."""


class PromotionProcess:
    """The server's end: ``run()`` starts the process and counts its reports until it ends."""

    def __init__(self, config_path: Path, report: Report,
                 release: Callable[[str], Awaitable[int]],
                 log_level: int | None = None) -> None:
        self._config_path = config_path
        self._report = report
        self._release = release  # gives back a worker's claims
        self._log_level = log_level
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def run(self) -> None:
        level = self._log_level if self._log_level is not None else log.getEffectiveLevel()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay.promotion", str(self._config_path.absolute()),
            logging.getLevelName(level), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
        )
        self._process = process
        assert process.stdout is not None
        worker: str | None = None
        try:
            async for line in process.stdout:
                if worker is None:
                    worker = str(json.loads(line)["worker"])
                    log.info("promotion process started (pid %d)", process.pid)
                else:
                    self._report(PromotionReport.from_json(line))
            status = await process.wait()
            raise PromotionExited(f"the promotion process exited with status {status}")
        finally:
            await end_child(process, STOP_TIMEOUT, "the promotion process")
            if worker is not None:
                with contextlib.suppress(Exception):
                    released = await self._release(worker)
                    if released:
                        log.info("gave back %d observation claims of the promotion process",
                                 released)


# The process's side.

async def _promote(config_path: Path) -> int:
    metrics = Metrics()  # the process's own: its reloads are counted by the server too
    live = LiveConfig(load_config(config_path), metrics)
    store = await Store.open(live().store.where, sync_commits=False)  # events are made again
    try:
        worker = PromotionWorker(live, store, _send, lambda: live().classification,
                                 lease=lambda: live().store.lease_seconds)
        _write({"worker": worker.worker_id})
        tasks = [asyncio.create_task(worker.run(), name="promotion"),
                 asyncio.create_task(live.watch(), name="config-watch"),
                 asyncio.create_task(_input_closed(), name="input")]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.get_name() != "input":
                error = task.exception()
                log.error("the promotion process's %s ended: %r", task.get_name(), error,
                          exc_info=error)
                return 1
        return 0
    finally:
        await store.close()


async def _input_closed() -> None:
    """Return when standard input closes: the server stops, or is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


def _send(report: PromotionReport) -> None:
    sys.stdout.buffer.write(report.to_json() + b"\n")
    sys.stdout.buffer.flush()


def _write(message: dict[str, str]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
    sys.stdout.buffer.flush()


def main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICENESS)
    path, level = argv
    logsetup.configure(level)
    return asyncio.run(_promote(Path(path)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
