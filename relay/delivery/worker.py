"""The delivery worker: claims due copies from the spool and hands them to the upstream.

A temporary failure is retried with exponential backoff and jitter (the first retry
within a minute) until ``max_retry_hours`` have passed since the copy was accepted; a
permanent failure ends it. Every attempt and the final outcome are recorded (docs/architecture.md).
Claims, leases, the concurrency bound, the sleep between rounds and the backoff formula
are the worker loop's (tracker/workers.py); this module says what to claim and how one
copy is delivered."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.config.load import Config
from relay.delivery.events import delivery_deliveries
from relay.delivery.notification import Failure, notice_for, wants_notice
from relay.delivery.upstream import Upstream
from relay.errors import UpstreamError, UpstreamPermanent
from store.mail import DELIVERED, PERMANENT, TEMPORARY
from store.records import NewMessage, SpooledMessage
from store.webhooks import NewDelivery
from tracker.metrics import Metrics
from tracker.workers import WorkerLoop

log = logging.getLogger("clickrelay.delivery")


@dataclass(frozen=True)
class Attempt:
    """One attempt's outcome: delivered, temporary (``retry_at``) or permanent."""

    outcome: str
    code: int | None  # the upstream's reply code, when it answered
    detail: str | None
    retry_at: int | None
    status: str | None = None  # the enhanced status the relay chose for its own refusal
    expired: bool = False  # permanent because retries ran out ([upstream] max_retry_hours)


class DeliveryStore(Protocol):
    async def claim_due_messages(
        self, worker: str, now: int, lease_us: int, limit: int
    ) -> list[SpooledMessage]: ...

    async def next_message_due(self) -> int | None: ...

    async def record_delivery(
        self, message_id: str, *, outcome: str, at: int, duration_ms: int,
        code: int | None = None, detail: str | None = None, next_attempt_at: int | None = None,
        notice: NewMessage | None = None, deliveries: Sequence[NewDelivery] = (),
    ) -> None: ...

    async def release_claims(self, worker: str | None = None) -> int: ...

    async def renew_claims(self, queue: str, worker: str, until: int) -> int: ...


class DeliveryWorker(WorkerLoop[SpooledMessage]):
    """Delivers due copies, at most ``[upstream] concurrency`` at once."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: DeliveryStore,
        upstream: Upstream,
        metrics: Metrics,
    ) -> None:
        super().__init__("delivery", lease=lambda: config().store.lease_seconds)
        self._config = config
        self._store = store
        self._upstream = upstream
        self._metrics = metrics

    def concurrency(self) -> int:
        return self._config().upstream.concurrency

    async def renew(self, until: int) -> None:
        await self._store.renew_claims("spool", self.worker_id, until)

    async def claim(self, now: int, lease_us: int, room: int) -> list[SpooledMessage]:
        return await self._store.claim_due_messages(self.worker_id, now, lease_us, room)

    async def next_due(self) -> int | None:
        return await self._store.next_message_due()

    async def release(self) -> None:
        await self._store.release_claims(self.worker_id)

    def describe(self, message: SpooledMessage) -> str:
        return f"message_id={message.id}"

    async def handle(self, message: SpooledMessage) -> None:
        started = time.monotonic()
        attempt = await self._attempt(message)
        elapsed = time.monotonic() - started
        self._metrics.delivery_seconds.observe(elapsed)
        self._metrics.delivery_attempts.labels(attempt.outcome).inc()
        at = self._clock()
        notice, deliveries = self._tell(message, attempt, at)
        await self._store.record_delivery(
            message.id, outcome=attempt.outcome, at=at, duration_ms=int(elapsed * 1000),
            code=attempt.code, detail=attempt.detail, next_attempt_at=attempt.retry_at,
            notice=notice, deliveries=deliveries,
        )
        self._log(message, attempt.outcome, attempt.detail)

    def _tell(self, message: SpooledMessage, attempt: Attempt, at: int
              ) -> tuple[NewMessage | None, list[NewDelivery]]:
        """The attempt's notification and webhook deliveries. A bug in making them must not
        keep the attempt from being recorded (the copy would be sent again): it is logged,
        and the attempt recorded without them."""
        config = self._config()
        notice, deliveries = None, []
        try:
            notice = self._notice(config, message, attempt, at)
        except Exception:
            log.exception("delivery notification not made message_id=%s", message.id)
        try:
            deliveries = delivery_deliveries(config, message, attempt.outcome, attempt.code,
                                             attempt.detail, at)
        except Exception:
            log.exception("delivery events not made message_id=%s", message.id)
        return notice, deliveries

    async def _attempt(self, message: SpooledMessage) -> Attempt:
        try:
            detail = await self._upstream.deliver(message.mail_from, message.rcpt_to,
                                                  message.body, message.mail_params)
        except UpstreamError as exc:
            outcome, retry_at = self._judge(message, exc)
            expired = outcome == PERMANENT and not isinstance(exc, UpstreamPermanent)
            return Attempt(outcome, exc.code, str(exc), retry_at, exc.status, expired)
        except Exception as exc:  # a bug must not lose mail: retry it like a 4xx
            log.exception("delivery crashed message_id=%s", message.id)
            outcome, retry_at = self._judge(message, exc)
            return Attempt(outcome, None, f"internal error: {type(exc).__name__}: {exc}",
                           retry_at, expired=outcome == PERMANENT)
        return Attempt(DELIVERED, None, detail, None)

    def _notice(self, config: Config, message: SpooledMessage, attempt: Attempt, at: int
                ) -> NewMessage | None:
        """The delivery status notification of a copy that failed for good, if its sender
        is to be told (relay/delivery/notification.py)."""
        if attempt.outcome != PERMANENT:
            return None
        project = config.project_by_id(message.project_id)
        route = project.route_by_id(message.route_id) if project else None
        if not wants_notice(message, route.bounce_notifications if route else True):
            return None
        failure = Failure(attempt.detail or "", attempt.code, attempt.expired, attempt.status)
        upstream = config.upstream
        remote = upstream.host if upstream.scheme != "maildir" else None
        notice = notice_for(message, failure, reporting_mta=config.smtp.hostname,
                            remote_mta=remote, at=at)
        self._metrics.mail_notices.inc()
        return notice

    def _judge(self, message: SpooledMessage, exc: Exception) -> tuple[str, int | None]:
        """Temporary or permanent, and when to try again."""
        upstream = self._config().upstream
        if isinstance(exc, UpstreamPermanent):
            self._metrics.mail_failed.labels("rejected").inc()
            return PERMANENT, None
        retry_at = self.next_attempt_at(message.attempts + 1, upstream.retry_initial_seconds)
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
