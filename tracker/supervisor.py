"""Supervision of the server's background tasks: the observation recorder (and with it
the link to the observation writer's process), the delivery, promotion, webhook and
upkeep workers and the configuration watcher.

A task that ends by an exception is logged with its traceback, counted
(``clickrelay_task_failures_total{task=...}``) and started again after a pause that
doubles with each death in a row. Until it has run ``[health] task_steady_seconds``
without dying again it is ``restarting`` (``failed`` from the third death in a row), and
``GET /healthz`` answers 503 naming it: a dead worker must not leave the server answering
``ok`` while mail or clicks pile up (docs/hostile-input.md). A task that is cancelled is
stopped, not
restarted; one that returns has finished (the recorder does so once it is told to stop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tracker.http.health import HealthConfig
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.supervisor")

RESTART_FIRST_PAUSE = 0.1  # seconds before the first restart; doubled per death in a row
RESTART_MAX_PAUSE = 30.0
LOOP_DEATHS = 3  # this many deaths in a row, without a steady run between, is a loop

RUNNING, RESTARTING, FAILED, STOPPED = "running", "restarting", "failed", "stopped"

Run = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class _Supervised:
    started: float  # event loop time at which its current run began
    deaths: int = 0  # in a row: since it last ran steadily
    pausing: bool = False  # dead, waiting to be started again
    stopped: bool = False

    def state(self, now: float, steady: float) -> str:
        if self.stopped:
            return STOPPED
        if self.deaths == 0 or (not self.pausing and now - self.started >= steady):
            return RUNNING
        return FAILED if self.deaths >= LOOP_DEATHS else RESTARTING


@dataclass(frozen=True)
class TaskReport:
    """What ``/healthz`` says about the tasks: each one's state, and why it is unhealthy
    (None while every task runs)."""

    tasks: dict[str, str]
    reason: str | None


class Supervisor:
    def __init__(self, metrics: Metrics,
                 config: Callable[[], HealthConfig] = HealthConfig) -> None:
        self._metrics = metrics
        self._config = config
        self._tasks: dict[str, _Supervised] = {}

    def start(self, name: str, run: Run) -> asyncio.Task[None]:
        """Run ``run()`` as the task ``name``, again whenever it ends by an exception.
        Cancelling the returned task stops it."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        loop = asyncio.get_running_loop()
        supervised = self._tasks[name] = _Supervised(loop.time())
        return loop.create_task(self._supervise(name, supervised, run), name=name)

    def report(self) -> TaskReport:
        now, steady = asyncio.get_running_loop().time(), self._config().task_steady_seconds
        tasks = {name: t.state(now, steady) for name, t in self._tasks.items()}
        down = [f"{name} ({state})" for name, state in tasks.items() if state != RUNNING]
        return TaskReport(tasks, f"tasks not running: {', '.join(down)}" if down else None)

    async def _supervise(self, name: str, supervised: _Supervised, run: Run) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                supervised.started = loop.time()
                try:
                    await run()
                    return
                except Exception:
                    pause = self._died(name, supervised, loop.time())
                supervised.pausing = True
                await asyncio.sleep(pause)
                supervised.pausing = False
        finally:
            supervised.stopped = True

    def _died(self, name: str, supervised: _Supervised, now: float) -> float:
        """Count and log the death (called while its exception is handled); the pause
        before the next start."""
        if now - supervised.started >= self._config().task_steady_seconds:
            supervised.deaths = 0  # it had run steadily: this death starts a new series
        supervised.deaths += 1
        self._metrics.task_failures.labels(name).inc()
        doublings = min(supervised.deaths - 1, 16)  # beyond that the maximum applies anyway
        pause = min(RESTART_MAX_PAUSE, RESTART_FIRST_PAUSE * 2.0 ** doublings)
        log.exception("background task %s died (%d in a row); restarting in %.1f s",
                      name, supervised.deaths, pause)
        return pause
