"""The operations part of the configuration: ``[health]`` (when a queue counts as stuck,
how often the queue gauges are refreshed, when a restarted task counts as healthy) and
``[retention]`` (how long finished data is kept, how often the purge runs)."""

from __future__ import annotations

from dataclasses import dataclass

from relay.config.table import Table
from tracker.http.health import HealthConfig


@dataclass(frozen=True)
class RetentionConfig:
    days: float = 28.0  # finished mail, clicks, events and webhook deliveries kept this long
    interval_minutes: float = 60.0  # how often the purge runs
    idempotency_hours: float = 24.0  # send API idempotency keys are kept this long


def parse_health(t: Table) -> HealthConfig:
    cfg = HealthConfig(
        max_overdue_minutes=t.positive_number("max_overdue_minutes", 15.0),
        gauge_interval_seconds=t.positive_number("gauge_interval_seconds", 10.0),
        task_steady_seconds=t.positive_number("task_steady_seconds", 60.0),
    )
    t.done()
    return cfg


def parse_retention(t: Table) -> RetentionConfig:
    cfg = RetentionConfig(
        days=t.positive_number("days", 28.0),
        interval_minutes=t.positive_number("interval_minutes", 60.0),
    )
    t.done()
    return cfg
