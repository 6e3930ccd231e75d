"""Background upkeep: the queue gauges, refreshed every ``health.gauge_interval_seconds``,
and the retention purge, every ``retention.interval_minutes`` (README.md). Both read the
live configuration each round, so a reload changes their pace and the retention period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import fields
from typing import Protocol

from relay.config.load import Config
from store.clock import now_us
from store.retention import Purged
from tracker.http.health import QueueStateStore, set_queue_gauges
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.maintenance")

RETRY_AFTER_ERROR_SECONDS = 60.0  # a failed round is tried again this soon


class RetentionStore(Protocol):
    async def purge_expired(self, cutoff: int, keys_cutoff: int) -> Purged: ...


class QueueGauges:
    def __init__(self, config: Callable[[], Config], store: QueueStateStore,
                 metrics: Metrics) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics

    async def refresh(self) -> None:
        states = await self._store.queue_states()
        set_queue_gauges(self._metrics, states, now_us())

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("queue gauges not refreshed")
            await asyncio.sleep(self._config().health.gauge_interval_seconds)


class RetentionWorker:
    def __init__(self, config: Callable[[], Config], store: RetentionStore,
                 metrics: Metrics) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics

    async def purge(self) -> Purged:
        """One purge with the retention period in force; what it deleted."""
        retention = self._config().retention
        now = now_us()
        purged = await self._store.purge_expired(
            cutoff=now - int(retention.days * 86_400_000_000),
            keys_cutoff=now - int(retention.idempotency_hours * 3_600_000_000),
        )
        for f in fields(purged):
            self._metrics.retention_purged.labels(f.name).inc(getattr(purged, f.name))
        if purged.total:
            log.info("retention purge: %s", ", ".join(
                f"{f.name}={getattr(purged, f.name)}" for f in fields(purged)))
        return purged

    async def run(self) -> None:
        while True:
            try:
                await self.purge()
                pause = self._config().retention.interval_minutes * 60
            except Exception:
                log.exception("retention purge failed")
                pause = RETRY_AFTER_ERROR_SECONDS
            await asyncio.sleep(pause)
