"""Webhook dispatch: the outbox worker that signs and POSTs each delivery (docs/webhooks.md).

Each attempt sends the body fixed in the outbox with Lettermint's headers: the signature
``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (the secret as configured,
``whsec_`` prefix included), ``X-Lettermint-Delivery`` equal to the signed ``t`` and the
attempt number. A 2xx within the timeout is success; anything else is retried with
exponential backoff and jitter until ``max_retry_hours`` have passed since the delivery
was created, across restarts (the outbox is in the store). Attempts run off the request
path, at most ``concurrency`` at once and at most ``per_webhook_concurrency`` to any one
webhook (per process), so a slow or failing receiver cannot hold up the others.
Claims, leases, the sleep between rounds and the backoff formula are the worker loop's
(tracker/workers.py); the dispatcher says what to claim and how one delivery is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import aiohttp

from store.webhooks import DueDelivery, WebhookRoom
from tracker.config import ProjectConfig, WebhookConfig, WebhookDeliveryConfig
from tracker.metrics import Metrics
from tracker.workers import LEASE_SECONDS, WorkerLoop

log = logging.getLogger("clickrelay.webhooks")

SWEEP_SECONDS = 300.0
GONE = "webhook removed from the configuration or disabled"
ERROR_BODY_CHARS = 200


def user_agent() -> str:
    try:
        return f"clickrelay/{version('clickrelay')}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "clickrelay/dev"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Lettermint-Signature`` value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signed_headers(
    secret: str, body: bytes, *, event: str, attempt: int, timestamp: int, agent: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": agent,
        "X-Lettermint-Event": event,
        "X-Lettermint-Delivery": str(timestamp),
        "X-Lettermint-Attempt": str(attempt),
        "X-Lettermint-Signature": signature(secret, timestamp, body),
    }


class DispatchView(Protocol):
    """What the dispatcher reads of the live configuration."""

    @property
    def projects(self) -> tuple[ProjectConfig, ...]: ...

    @property
    def webhook_delivery(self) -> WebhookDeliveryConfig: ...


class DispatchStore(Protocol):
    async def claim_due_deliveries(
        self, worker: str, now: int, lease_us: int, limit: int, rooms: Sequence[WebhookRoom]
    ) -> list[DueDelivery]: ...

    async def fail_other_deliveries(
        self, keep: Sequence[tuple[str, str]], now: int, reason: str,
        noted_after: int | None = None,
    ) -> int: ...

    async def record_webhook_attempt(
        self, delivery_id: str, *, at: int, duration_ms: int, status_code: int | None,
        error: str | None, delivered: bool, next_attempt_at: int | None,
    ) -> None: ...

    async def fail_delivery(self, delivery_id: str, now: int, reason: str) -> bool: ...

    async def release_webhook_claims(self, worker: str | None = None) -> int: ...

    async def renew_claims(self, queue: str, worker: str, until: int) -> int: ...

    async def next_delivery_due(self) -> int | None: ...


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def find_webhook(config: DispatchView, project_id: str, webhook_id: str) -> WebhookConfig | None:
    project = next((p for p in config.projects if p.id == project_id), None)
    if project is None:
        return None
    return next((w for w in project.webhooks if w.id == webhook_id), None)


class WebhookDispatcher(WorkerLoop[DueDelivery]):
    def __init__(
        self, config: Callable[[], DispatchView], store: DispatchStore, metrics: Metrics,
        *, lease: Callable[[], float] = lambda: LEASE_SECONDS,
        noted: Callable[[], int] | None = None,
    ) -> None:
        super().__init__("webhooks", lease=lease)
        self._config = config
        # On a shared store: when this node last noted its file's webhooks (config_items).
        self._noted = noted
        self._store = store
        self._metrics = metrics
        self._agent = user_agent()
        self._session: aiohttp.ClientSession | None = None  # while running
        # The configuration swept, when its webhooks were noted, and when it was swept.
        self._swept: tuple[object, int | None, float] | None = None

    async def run(self) -> None:
        # The pool's own limit is off: the claim decides what is in flight.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as self._session:
            await super().run()

    def concurrency(self) -> int:
        return self._config().webhook_delivery.concurrency

    async def renew(self, until: int) -> None:
        await self._store.renew_claims("webhook_deliveries", self.worker_id, until)

    async def before_claim(self) -> None:
        await self._sweep(self._config())

    async def claim(self, now: int, lease_us: int, room: int) -> list[DueDelivery]:
        """Due deliveries for the free slots: ``room`` in all, and up to
        ``per_webhook_concurrency`` per webhook (counted in this process). A delivery due
        but not claimed waits for a slot of its webhook, whose end wakes the loop."""
        config = self._config()
        busy = Counter((d.project_id, d.webhook_id) for d in self.in_flight)
        per_webhook = config.webhook_delivery.per_webhook_concurrency
        rooms = [WebhookRoom(p.id, w.id, per_webhook - busy[(p.id, w.id)])
                 for p in config.projects for w in p.webhooks if w.enabled]
        if not rooms:
            return []
        return await self._store.claim_due_deliveries(self.worker_id, now, lease_us, room,
                                                      rooms)

    async def next_due(self) -> int | None:
        return await self._store.next_delivery_due()

    async def release(self) -> None:
        await self._store.release_webhook_claims(self.worker_id)

    def describe(self, delivery: DueDelivery) -> str:
        return f"delivery_id={delivery.id}"

    async def _sweep(self, config: DispatchView) -> None:
        """End the deliveries of webhooks that are gone or disabled: at start, after each
        reload, and every few minutes (a click promoted during a reload may have named
        one). On a shared store, not those of a webhook that another node noted after this
        one last noted its file: it has a newer file, with that webhook (docs/webhooks.md)."""
        now = time.monotonic()
        noted = self._noted() if self._noted is not None else None
        if self._swept is not None and self._swept[0] is config and (
                self._swept[1] == noted and now - self._swept[2] < SWEEP_SECONDS):
            return
        self._swept = (config, noted, now)
        keep = [(p.id, w.id) for p in config.projects for w in p.webhooks if w.enabled]
        try:
            failed = await self._store.fail_other_deliveries(keep, self._clock(), GONE,
                                                             noted)
        except Exception:
            log.exception("ending deliveries of removed webhooks failed; retrying later")
            return
        if failed:
            self._metrics.webhook_failures.inc(failed)
            log.warning("%d webhook deliveries ended: %s", failed, GONE)

    async def handle(self, delivery: DueDelivery) -> None:
        config = self._config()
        hook = find_webhook(config, delivery.project_id, delivery.webhook_id)
        if hook is None or not hook.enabled:  # a reload since the claim
            await self._store.fail_delivery(delivery.id, self._clock(), GONE)
            self._metrics.webhook_failures.inc()
            log.warning("webhook delivery ended delivery_id=%s webhook=%s: %s",
                        delivery.id, delivery.webhook_id, GONE)
            return
        started, at = time.monotonic(), self._clock()
        try:
            outcome = await self._post(hook, delivery, config.webhook_delivery)
        except asyncio.CancelledError:
            # Stopping: the attempt was made and is recorded; the delivery is due again.
            outcome = Outcome(None, "interrupted: clickrelay stopped during the attempt")
            await self._record(delivery, outcome, at, started, retry_at=at)
            raise
        except Exception as exc:  # a bug must not lose the event: retry it like a failure
            log.exception("webhook attempt crashed delivery_id=%s", delivery.id)
            outcome = Outcome(None, f"internal error: {type(exc).__name__}: {exc}")
        retry_at = None if outcome.delivered else self._retry_at(delivery, config)
        await self._record(delivery, outcome, at, started, retry_at=retry_at)

    async def _post(
        self, hook: WebhookConfig, delivery: DueDelivery, settings: WebhookDeliveryConfig
    ) -> Outcome:
        if self._session is None:
            raise RuntimeError("the dispatcher is not running")
        body = delivery.body.encode("utf-8")
        headers = signed_headers(
            hook.secret, body, event=delivery.event_type, attempt=delivery.attempts + 1,
            timestamp=int(time.time()), agent=self._agent,
        )
        timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        try:
            async with self._session.post(hook.url, data=body, headers=headers,
                                          timeout=timeout, allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return Outcome(response.status, None)
                text = (await response.content.read(ERROR_BODY_CHARS)).decode("utf-8", "replace")
                return Outcome(response.status, f"HTTP {response.status}: {text}".strip())
        except TimeoutError:
            return Outcome(None, f"no answer within {settings.timeout_seconds:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")

    def _retry_at(self, delivery: DueDelivery, config: DispatchView) -> int | None:
        """When to try again, or ``None`` when the retry window has passed."""
        settings = config.webhook_delivery
        if self._clock() - delivery.created_at >= settings.max_retry_hours * 3_600_000_000:
            return None
        return self.next_attempt_at(delivery.attempts + 1, settings.retry_initial_seconds)

    async def _record(
        self, delivery: DueDelivery, outcome: Outcome, at: int, started: float,
        *, retry_at: int | None,
    ) -> None:
        """Record the attempt; a stop that comes meanwhile waits for the record, so that
        an attempt the receiver has seen is never lost from the store."""
        writing = asyncio.ensure_future(
            self._write(delivery, outcome, at, started, retry_at=retry_at))
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            await writing
            raise

    async def _write(
        self, delivery: DueDelivery, outcome: Outcome, at: int, started: float,
        *, retry_at: int | None,
    ) -> None:
        elapsed = time.monotonic() - started
        self._metrics.webhook_seconds.observe(elapsed)
        result = "delivered" if outcome.delivered else "retry" if retry_at else "failed"
        self._metrics.webhook_attempts.labels(result).inc()
        if result == "failed":
            self._metrics.webhook_failures.inc()
        await self._store.record_webhook_attempt(
            delivery.id, at=at, duration_ms=int(elapsed * 1000),
            status_code=outcome.status_code, error=outcome.error,
            delivered=outcome.delivered, next_attempt_at=retry_at,
        )
        level = logging.INFO if outcome.delivered else logging.WARNING
        log.log(level, "webhook %s delivery_id=%s webhook=%s attempt=%d status=%s%s", result,
                delivery.id, delivery.webhook_id, delivery.attempts + 1, outcome.status_code,
                f" error={outcome.error}" if outcome.error else "")
