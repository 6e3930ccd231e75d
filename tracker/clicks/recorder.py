"""Recording observations with group commit (docs/redirect.md): durable and fast at once.

Every click's observation must be on disk before its 302 goes out, but one fsync per
click would cap the redirect at the disk's fsync rate. So ``record`` only queues the
observation and waits; a single writer task takes everything queued, writes it in one
transaction (one fsync) and wakes every waiter. While one batch commits the next one
gathers, so batches grow with the load by themselves and the first click of a quiet
period is written at once.

A click never waits longer than ``store_deadline_ms``: then the recipient is redirected
anyway and the click is counted as dropped (``clickrelay_observations_dropped_total``).
The observation stays queued, so a store that is only slow (a large mail spool
transaction holds the write lock) still gets it, counted again as late; only a queue
that overflows, a store that keeps failing or a shutdown that cannot flush loses it.

The writer task is supervised (tracker/supervisor.py): if it dies, it is started again
and writes first the batch it had in hand, so that the clicks queued meanwhile wait for
the restart rather than being lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from store.records import Observation
from tracker.config import ConfigSource
from tracker.metrics import Metrics
from tracker.supervisor import Supervisor

log = logging.getLogger("clickrelay.observations")

MAX_BATCH = 500  # observations per transaction (one INSERT statement in the store)
MAX_QUEUED = 50_000  # beyond this, clicks are redirected at once and not recorded
RETRY_DELAYS = (0.05, 0.5, 2.0)  # a failed batch is tried again after these pauses
DEADLINE_SLACK = 0.005  # clicks whose deadlines fall this close together are let go at once
LOG_INTERVAL = 1.0  # seconds over which dropped clicks are summed up in one log line


class ObservationStore(Protocol):
    """Commits a batch, or raises. It may leave out the rows it cannot store (values it
    refuses) and return their places in the batch; None or empty: every row is stored."""

    async def record_observations(self, batch: Sequence[Observation]
                                  ) -> Sequence[int] | None: ...


class Waiter(Protocol):
    """What a queued click waits on (``set_result(True)``: committed): a future, or an
    object of the caller's that answers the same three calls. ``set_result`` is called
    once, on the event loop, inside the commit: it must do no connection work
    (docs/hostile-input.md), and if it raises, that is logged and counted and the recorder
    goes on."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def set_result(self, result: bool, /) -> None: ...


# A queued observation and what its click waits on.
_Entry = tuple[Observation, Waiter]


@dataclass(slots=True)
class _Deadline:
    """The clicks queued within ``DEADLINE_SLACK`` of each other: let go together, when
    the last of their deadlines may have passed (one entry and one timer check per group,
    not per click)."""

    at: float  # event loop time: the first click's deadline + DEADLINE_SLACK
    opened: float  # when the first click arrived
    waiters: list[Waiter]


class ObservationRecorder:
    def __init__(self, config: ConfigSource, store: ObservationStore, metrics: Metrics) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._queue: list[_Entry] = []
        self._inflight: list[_Entry] = []
        self._inflight_observations: list[Observation] = []  # sent to the store as they are
        self._resumed: list[_Entry] | None = None  # a dead run's batch, being written again
        self._failing: str | None = None  # why the last attempt to store a batch failed
        # Every waiting click in arrival order, so that one timer serves all deadlines.
        self._deadlines: deque[_Deadline] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._unreported: dict[str, int] = {}
        self._report_timer: asyncio.TimerHandle | None = None

    def start(self, supervisor: Supervisor) -> None:
        """Start the writer task, which ``supervisor`` starts again if it dies."""
        # Kept: asyncio.get_running_loop() costs a getpid() system call, once per click.
        self._loop = asyncio.get_running_loop()
        self._task = supervisor.start("observation-recorder", self._run)

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued (waiting at most ``timeout``), then stop the writer."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
        self._give_up(self._inflight + self._queue, "shutdown")
        self._inflight, self._queue = [], []
        self._deadlines.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._report()

    @property
    def queued(self) -> int:
        """Observations waiting for the writer (not counting the batch being written)."""
        return len(self._queue)

    @property
    def failing(self) -> str | None:
        """Why the store refused the last batch, while it keeps refusing (the writer's
        process cannot start, the disk is full...); None once a batch is committed.
        ``/healthz`` reports it: clicks are then redirected without being stored."""
        return self._failing

    @property
    def writing(self) -> int:
        """Observations in the batch being written."""
        return len(self._inflight)

    async def record(self, observation: Observation) -> bool:
        """Queue the observation; True once it is committed, False if the deadline passed
        first or it could not be queued (the caller redirects either way)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        return await waiter if self.queue(observation, waiter) else False

    def queue(self, observation: Observation, waiter: Waiter) -> bool:
        """``record`` for callers that answer from a callback rather than a task: queue
        the observation; ``waiter.set_result`` is called as ``record`` would return.
        False: not queued (and already counted as lost)."""
        loop = self._loop
        if self._closing or loop is None or len(self._queue) >= MAX_QUEUED:
            self._lost(1, "not accepting" if self._closing else "queue full")
            return False
        self._queue.append((observation, waiter))
        now = loop.time()
        group = self._deadlines[-1] if self._deadlines else None
        if group is None or now > group.opened + DEADLINE_SLACK:
            wait = self._config().tracking.store_deadline_ms / 1000
            group = _Deadline(now + wait + DEADLINE_SLACK, now, [])
            self._deadlines.append(group)
            if self._deadline_timer is None:
                self._deadline_timer = loop.call_at(group.at, self._expire_due)
        group.waiters.append(waiter)
        if not self._wake.is_set():
            self._wake.set()
        return True

    def _expire_due(self) -> None:
        """Let every click whose deadline has passed go (False: redirect without it), and
        wait for the next group; committed clicks are only taken off with their group."""
        self._deadline_timer = None
        loop = asyncio.get_running_loop()
        now, expired = loop.time(), 0
        while self._deadlines:
            group = self._deadlines[0]
            if group.at > now:
                self._deadline_timer = loop.call_at(group.at, self._expire_due)
                break
            for waiter in group.waiters:
                if not waiter.done():
                    try:
                        waiter.set_result(False)
                    except Exception:
                        self._waiter_failed()
                    expired += 1
            self._deadlines.popleft()
        if expired:
            self._lost(expired, "deadline passed")

    async def _run(self) -> None:
        await self._resume()
        while self._queue or not self._closing:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._inflight, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._inflight_observations = [observation for observation, _ in self._inflight]
            await self._write(self._inflight, self._inflight_observations)
            self._inflight = []

    async def _resume(self) -> None:
        """Write the batch that a run which died had in hand, before anything queued
        after it. The same list again: the writer keeps its batch key, so a batch that was
        committed is not written twice. A batch that kills this run as well is given up,
        so that one poisoned batch cannot hold back every click behind it."""
        batch = self._inflight
        if not batch:
            return
        if batch is self._resumed:
            self._inflight = []
            self._give_up(batch, "recorder error")
            return
        self._resumed = batch
        await self._write(batch, self._inflight_observations)
        self._inflight, self._resumed = [], None

    async def _write(self, batch: list[_Entry], observations: list[Observation]) -> None:
        """Commit ``batch``, whose observations are ``observations``: the same list each
        time the batch is tried again, a resumed run included, since the writer knows a
        batch it may have committed already by that list (store/writer/client.py)."""
        for attempt, pause in enumerate((*RETRY_DELAYS, None)):
            try:
                left_out = await self._store.record_observations(observations)
            except Exception as exc:
                self._failing = f"{type(exc).__name__}: {exc}"
                if pause is None or self._closing:
                    log.error("observations not stored, %d clicks lost: %s", len(batch), exc)
                    self._give_up(batch, "store error")
                    return
                log.warning("storing %d observations failed (attempt %d), retrying: %s",
                            len(batch), attempt + 1, exc)
                with contextlib.suppress(asyncio.TimeoutError):  # a shutdown cuts it short
                    await asyncio.wait_for(self._closed.wait(), pause)
            else:
                self._failing = None
                self._metrics.observation_batch.observe(len(batch))
                self._committed(self._left_out(batch, left_out) if left_out else batch)
                return

    def _left_out(self, batch: list[_Entry], rows: Sequence[int]) -> list[_Entry]:
        """The store committed the batch without the observations at ``rows``, values it
        cannot store (docs/hostile-input.md): those are given up and counted; the rest is
        returned."""
        self._metrics.observations_unstorable.inc(len(rows))
        left_out = set(rows)
        self._give_up([batch[row] for row in left_out], "could not be stored")
        return [entry for row, entry in enumerate(batch) if row not in left_out]

    def _committed(self, batch: list[_Entry]) -> None:
        late = 0
        for _, waiter in batch:
            if not waiter.done():
                try:
                    waiter.set_result(True)
                except Exception:
                    self._waiter_failed()
            elif not waiter.cancelled():
                late += 1  # its redirect went out without it; it is stored now
        if late:
            self._metrics.observations_late.inc(late)
            log.info("%d observations stored after their redirect", late)

    def _give_up(self, batch: list[_Entry], reason: str) -> None:
        """Observations that will not be stored: those still waited for count as dropped
        now (the others were counted when their deadline passed)."""
        lost = 0
        for _, waiter in batch:
            if not waiter.done():
                try:
                    waiter.set_result(False)
                except Exception:
                    self._waiter_failed()
                lost += 1
            elif waiter.cancelled():  # its client went away, and the click is lost too
                lost += 1
        if lost:
            self._lost(lost, reason)

    def _waiter_failed(self) -> None:
        """A waiter's ``set_result`` raised (a bug of its caller): the commit and every
        other click go on (docs/hostile-input.md); the failure is counted and logged."""
        self._metrics.waiter_failures.inc()
        log.exception("a click's waiter failed; the recorder goes on")

    def _lost(self, count: int, reason: str) -> None:
        self._metrics.observations_dropped.inc(count)
        self._unreported[reason] = self._unreported.get(reason, 0) + count
        if self._report_timer is None:
            # Summed up once per interval, so that a stuck store does not flood the log.
            loop = asyncio.get_running_loop()
            self._report_timer = loop.call_later(LOG_INTERVAL, self._report)

    def _report(self) -> None:
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        if self._unreported:
            summary = ", ".join(f"{n} ({why})" for why, n in sorted(self._unreported.items()))
            log.warning("clicks redirected without a stored observation: %s", summary)
            self._unreported.clear()
