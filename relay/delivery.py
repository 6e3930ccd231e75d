"""The delivery worker: claims due copies from the spool and hands them to the upstream.

A temporary failure is retried with exponential backoff and jitter (the first retry
within a minute) until ``max_retry_hours`` have passed since the copy was accepted; a
permanent failure ends it. Every attempt and the final outcome are recorded (DESIGN §1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from relay.config import Config
from relay.errors import UpstreamError, UpstreamPermanent
from relay.upstream import Upstream
from store.mail import DELIVERED, PERMANENT, TEMPORARY
from store.records import SpooledMessage
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.delivery")

MAX_BACKOFF_SECONDS = 3600.0
IDLE_POLL_SECONDS = 1.0


class DeliveryStore(Protocol):
    async def claim_due_messages(
        self, worker: str, now: int, lease_us: int, limit: int
    ) -> list[SpooledMessage]: ...

    async def record_delivery(
        self, message_id: str, *, outcome: str, at: int, duration_ms: int,
        code: int | None = None, detail: str | None = None, next_attempt_at: int | None = None,
    ) -> None: ...

    async def release_claims(self, worker: str | None = None) -> int: ...


def backoff_seconds(attempt: int, initial: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): initial × 2^(attempt-1), capped,
    with ±20 % jitter so that a recovered upstream is not hit by every copy at once."""
    base = min(MAX_BACKOFF_SECONDS, initial * 2 ** (attempt - 1))
    return base * rng.uniform(0.8, 1.2)


class DeliveryWorker:
    def __init__(
        self,
        config: Callable[[], Config],
        store: DeliveryStore,
        upstream: Upstream,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._store = store
        self._upstream = upstream
        self._metrics = metrics
        self.worker_id = f"delivery-{uuid.uuid4().hex[:12]}"
        self._wakeup = asyncio.Event()
        self._rng = random.Random()

    def wake(self) -> None:
        """New mail was spooled: look for due copies now instead of at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        upstream = self._config().upstream
        slots = asyncio.Semaphore(upstream.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wakeup.clear()
                claimed = await self._claim(upstream.concurrency - len(tasks))
                for message in claimed:
                    await slots.acquire()
                    task = asyncio.create_task(self._deliver(message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(lambda _: slots.release())
                if not claimed or len(tasks) >= upstream.concurrency:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL_SECONDS)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._store.release_claims(self.worker_id)

    async def _claim(self, room: int) -> list[SpooledMessage]:
        if room <= 0:
            return []
        lease_us = int(self._config().upstream.timeout_seconds * 3 * 1_000_000)
        try:
            return await self._store.claim_due_messages(self.worker_id, _now_us(), lease_us, room)
        except Exception:
            log.exception("claiming spooled mail failed; retrying")
            return []

    async def _deliver(self, message: SpooledMessage) -> None:
        started = time.monotonic()
        outcome, code, detail, retry_at = DELIVERED, None, None, None
        try:
            detail = await self._upstream.deliver(message.mail_from, message.rcpt_to,
                                                  message.body)
        except UpstreamError as exc:
            code, detail = exc.code, str(exc)
            outcome, retry_at = self._judge(message, exc)
        except Exception as exc:  # a bug must not lose mail: retry it like a 4xx
            log.exception("delivery crashed message_id=%s", message.id)
            code, detail = None, f"internal error: {type(exc).__name__}: {exc}"
            outcome, retry_at = self._judge(message, exc)
        elapsed = time.monotonic() - started
        self._metrics.delivery_seconds.observe(elapsed)
        self._metrics.delivery_attempts.labels(outcome).inc()
        await self._store.record_delivery(
            message.id, outcome=outcome, at=_now_us(), duration_ms=int(elapsed * 1000),
            code=code, detail=detail, next_attempt_at=retry_at,
        )
        self._log(message, outcome, detail)

    def _judge(self, message: SpooledMessage, exc: Exception) -> tuple[str, int | None]:
        """Temporary or permanent, and when to try again."""
        upstream = self._config().upstream
        if isinstance(exc, UpstreamPermanent):
            self._metrics.mail_failed.labels("rejected").inc()
            return PERMANENT, None
        delay = backoff_seconds(message.attempts + 1, upstream.retry_initial_seconds, self._rng)
        retry_at = _now_us() + int(delay * 1_000_000)
        if retry_at - message.created_at > upstream.max_retry_hours * 3_600_000_000:
            self._metrics.mail_failed.labels("expired").inc()
            return PERMANENT, None
        return TEMPORARY, retry_at

    def _log(self, message: SpooledMessage, outcome: str, detail: str | None) -> None:
        if outcome == DELIVERED:
            self._metrics.mail_delivered.inc()
            log.info("delivered message_id=%s attempt=%d", message.id, message.attempts + 1)
        else:
            log.warning("delivery %s message_id=%s attempt=%d: %s", outcome, message.id,
                        message.attempts + 1, detail)


def _now_us() -> int:
    return time.time_ns() // 1000
