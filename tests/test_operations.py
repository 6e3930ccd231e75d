"""Operability (README.md): ``/healthz`` reports the store and the queues, and says 503
with a reason when a queue is stuck; ``/metrics`` carries the queue gauges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.server import Running, running
from store.queues import QueueState
from tests.conftest import send, simple_message, wait_until, write_config
from tests.silent import Silent
from tracker.http.health import describe

pytestmark = pytest.mark.usefixtures("both_stores")

MINUTE = 60_000_000
TASKS = ("observation-recorder", "delivery", "config-watch", "promotion", "webhooks",
         "queue-gauges", "retention", "dashboard-activity")
# A node of a shared store also listens for the others' wake-ups and reads the route
# switches they write (relay/server.py).
SHARED_TASKS = ("route-settings", "spool-wakeups", "webhook-wakeups")


async def get(relay: Running, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{relay.http_port}{path}"
    ) as answer:
        if answer.content_type == "application/json":
            return answer.status, await answer.json()
        return answer.status, await answer.text()


@pytest.fixture
async def hung(tmp_path: Path, settings: dict[str, Any], silent: Silent
               ) -> AsyncIterator[Running]:
    """A relay whose upstream accepts connections and never answers: the delivery worker
    holds its copy, the spool stops moving."""
    settings["upstream"] = {"url": f"smtp://127.0.0.1:{silent.port}", "timeout_seconds": 60}
    settings["health"] = {"max_overdue_minutes": 0.001, "gauge_interval_seconds": 0.02}
    async with running(write_config(tmp_path / "clickrelay.toml", settings)) as r:
        yield r


async def test_healthz_reports_the_store_and_every_queue(relay: Running) -> None:
    status, body = await get(relay, "/healthz")
    assert status == 200
    assert body == {"status": "ok", "store": "reachable", "queues": {
        name: {"pending": 0, "claimed": 0, "overdue_seconds": 0.0}
        for name in ("spool", "observations", "webhook_deliveries")}, "tasks": {
        name: "running" for name in TASKS + (SHARED_TASKS if relay.store.shared else ())}}


async def test_healthz_is_503_with_a_reason_when_the_spool_is_stuck(
    hung: Running, silent: Silent
) -> None:
    await send(hung.smtp_port, simple_message())
    await wait_until(lambda: silent.connections)

    async def unhealthy() -> Any:
        status, body = await get(hung, "/healthz")
        return body if status == 503 else None

    body = await wait_until(unhealthy)
    assert body["status"] == "error" and body["store"] == "reachable"
    assert body["reason"].endswith(": spool")
    assert body["queues"]["spool"]["pending"] == 1
    assert body["queues"]["spool"]["claimed"] == 1
    assert body["queues"]["observations"]["pending"] == 0


async def test_metrics_carry_the_queue_gauges(hung: Running, silent: Silent) -> None:
    await send(hung.smtp_port, simple_message())

    async def spool_gauge() -> str | None:
        _, text = await get(hung, "/metrics")
        return text if 'clickrelay_queue_depth{queue="spool"} 1.0' in text else None

    text = await wait_until(spool_gauge)
    assert "clickrelay_spool_depth 1.0" in text
    for queue in ("observations", "webhook_deliveries"):
        assert f'clickrelay_queue_depth{{queue="{queue}"}} 0.0' in text
        assert f'clickrelay_queue_oldest_age_seconds{{queue="{queue}"}} 0.0' in text
    registry = hung.metrics.registry
    assert registry.get_sample_value("clickrelay_spool_oldest_age_seconds") is not None
    assert registry.get_sample_value("clickrelay_queue_overdue_seconds",
                                     {"queue": "spool"}) is not None


def test_only_a_queue_overdue_past_the_limit_is_stuck() -> None:
    now = 100 * MINUTE
    states = [
        QueueState("spool", 3, 1, now - 16 * MINUTE, now - 60 * MINUTE),
        QueueState("observations", 2, 0, now - 14 * MINUTE, now - 14 * MINUTE),
        QueueState("webhook_deliveries", 1, 0, now + MINUTE, now - 90 * MINUTE),  # backing off
    ]
    report = describe(states, now, 15 * MINUTE)
    assert report.stuck == ["spool"]
    assert report.body["reason"] == "overdue by more than 15 minutes: spool"
    assert report.body["queues"]["spool"] == {"pending": 3, "claimed": 1,
                                              "overdue_seconds": 960.0}
    assert report.body["queues"]["webhook_deliveries"]["overdue_seconds"] == 0.0
    assert describe(states, now, 20 * MINUTE).stuck == []
