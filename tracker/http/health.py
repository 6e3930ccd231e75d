"""The health of the work queues, for ``GET /healthz`` and the queue gauges: a queue
whose earliest due item has waited longer than ``max_overdue_minutes`` past its due time
is stuck (its worker is dead, hung or failing every round), and the process reports it
with 503 so that an orchestrator or a monitor notices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from store.clock import now_us
from store.queues import QueueState
from tracker.metrics import Metrics


@dataclass(frozen=True)
class HealthConfig:
    max_overdue_minutes: float = 15.0  # a queue overdue longer than this is stuck
    gauge_interval_seconds: float = 10.0  # how often the queue gauges are refreshed
    # A restarted background task is healthy once it has run this long (tracker/supervisor.py).
    task_steady_seconds: float = 60.0


class QueueStateStore(Protocol):
    async def queue_states(self) -> list[QueueState]: ...


@dataclass(frozen=True)
class QueueReport:
    """What ``/healthz`` says about the queues; ``stuck`` names the overdue ones."""

    body: dict[str, Any]
    stuck: list[str]


class QueueHealth:
    def __init__(self, config: Callable[[], HealthConfig], store: QueueStateStore) -> None:
        self._config = config
        self._store = store

    async def report(self) -> QueueReport:
        limit_us = int(self._config().max_overdue_minutes * 60_000_000)
        return describe(await self._store.queue_states(), now_us(), limit_us)


def describe(states: Sequence[QueueState], now: int, limit_us: int) -> QueueReport:
    queues = {
        s.name: {"pending": s.pending, "claimed": s.claimed,
                 "overdue_seconds": round(s.overdue_us(now) / 1e6, 1)}
        for s in states
    }
    stuck = [s.name for s in states if s.overdue_us(now) > limit_us]
    body: dict[str, Any] = {"queues": queues}
    if stuck:
        body["reason"] = (
            f"overdue by more than {limit_us / 60_000_000:g} minutes: {', '.join(stuck)}"
        )
    return QueueReport(body, stuck)


def set_queue_gauges(metrics: Metrics, states: Sequence[QueueState], now: int) -> None:
    """Publish queue depths and ages as Prometheus gauges."""
    for s in states:
        metrics.queue_depth.labels(s.name).set(s.pending)
        metrics.queue_oldest_age.labels(s.name).set(s.age_us(now) / 1e6)
        metrics.queue_overdue.labels(s.name).set(s.overdue_us(now) / 1e6)
        if s.name == "spool":
            metrics.spool_depth.set(s.pending)
            metrics.spool_oldest_age.set(s.age_us(now) / 1e6)
