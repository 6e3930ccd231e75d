"""Prometheus metrics of one running clickrelay, in a registry of its own (no global
state: several instances may run in one process, as the tests do)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.mail_accepted = Counter(
            "clickrelay_mail_accepted", "Recipient copies accepted and spooled", registry=r
        )
        self.mail_refused = Counter(
            "clickrelay_mail_refused", "Submissions refused, by reply code", ["code"], registry=r
        )
        self.mail_replayed = Counter(
            "clickrelay_mail_replayed",
            "Submissions answered from an earlier one with the same Idempotency-Key",
            registry=r,
        )
        self.mail_delivered = Counter(
            "clickrelay_mail_delivered", "Copies delivered upstream", registry=r
        )
        self.mail_failed = Counter(
            "clickrelay_mail_failed", "Copies that failed for good", ["reason"], registry=r
        )
        self.mail_notices = Counter(
            "clickrelay_mail_notices",
            "Delivery status notifications spooled for copies that failed for good",
            registry=r,
        )
        self.delivery_attempts = Counter(
            "clickrelay_delivery_attempts", "Upstream delivery attempts", ["outcome"], registry=r
        )
        self.spool_depth = Gauge("clickrelay_spool_depth", "Copies waiting for delivery",
                                 registry=r)
        self.spool_oldest_age = Gauge(
            "clickrelay_spool_oldest_age_seconds", "Age of the oldest queued copy", registry=r
        )
        self.rewrite_failures = Counter(
            "clickrelay_rewrite_failures",
            "HTML parts forwarded unchanged because they could not be rewritten",
            registry=r,
        )
        self.links_tracked = Counter(
            "clickrelay_links_tracked", "Links rewritten to tracking links", registry=r
        )
        self.submission_seconds = Histogram(
            "clickrelay_submission_seconds",
            "Time from end of DATA to the reply",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "clickrelay_delivery_seconds", "Time of one upstream delivery attempt", registry=r
        )
        self.auth_failures = Counter(
            "clickrelay_auth_failures", "Failed SMTP AUTH attempts", registry=r
        )
        self.auth_throttled = Counter(
            "clickrelay_auth_throttled",
            "Passwords and tokens refused unchecked because too many wrong ones came from"
            " the client's network, by service (smtp, api)", ["service"], registry=r,
        )
        self.config_reloads = Counter(
            "clickrelay_config_reloads", "Configuration reloads, by result", ["result"], registry=r
        )
        self.clicks_classified = Counter(
            "clickrelay_clicks_classified", "Clicks promoted to events, by classification",
            ["classification"], registry=r,
        )
        self.opens_classified = Counter(
            "clickrelay_opens_classified", "Opens promoted to events, by classification",
            ["classification"], registry=r,
        )
        self.promotion_lag = Histogram(
            "clickrelay_promotion_lag_seconds", "Time from a click to its event",
            buckets=(0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900), registry=r,
        )
        self.promotion_failures = Counter(
            "clickrelay_promotion_failures", "Observations whose promotion failed (retried)",
            registry=r,
        )
        self.webhook_attempts = Counter(
            "clickrelay_webhook_attempts", "Webhook POST attempts, by result", ["result"],
            registry=r,
        )
        self.webhook_failures = Counter(
            "clickrelay_webhook_failures", "Webhook deliveries that failed for good", registry=r
        )
        self.webhook_seconds = Histogram(
            "clickrelay_webhook_seconds", "Time of one webhook attempt",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r,
        )
        self.honeypot_hits = Counter(
            "clickrelay_honeypot_hits", "Hits on hidden honeypot links", registry=r
        )
        self.clicks = Counter(
            "clickrelay_clicks", "Requests to tracking links, by outcome"
            " (recorded, expired, refused)", ["outcome"], registry=r,
        )
        self.opens = Counter(
            "clickrelay_opens", "Requests for open pixels, by outcome"
            " (recorded, expired, refused)", ["outcome"], registry=r,
        )
        self.observations_dropped = Counter(
            "clickrelay_observations_dropped",
            "Clicks redirected before their observation was stored (deadline passed, queue"
            " full, store error, shutdown)", registry=r,
        )
        self.observations_late = Counter(
            "clickrelay_observations_late",
            "Observations stored after their redirect had gone out (also counted as dropped)",
            registry=r,
        )
        self.observations_unstorable = Counter(
            "clickrelay_observations_unstorable",
            "Observations the writer left out of their batch because the database refused"
            " a value of theirs (also counted as dropped)", registry=r,
        )
        self.observation_batch = Histogram(
            "clickrelay_observation_batch_size", "Observations committed per transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r,
        )
        self.waiter_failures = Counter(
            "clickrelay_observation_waiter_failures",
            "Clicks whose answer failed as their observation was committed or let go"
            " (a bug, logged; the recorder goes on)", registry=r,
        )
        self.queue_depth = Gauge(
            "clickrelay_queue_depth", "Items waiting, by queue (spool, observations,"
            " webhook_deliveries)", ["queue"], registry=r,
        )
        self.queue_oldest_age = Gauge(
            "clickrelay_queue_oldest_age_seconds", "Age of the oldest waiting item, by queue",
            ["queue"], registry=r,
        )
        self.queue_overdue = Gauge(
            "clickrelay_queue_overdue_seconds",
            "How long the earliest due item has waited past its due time, by queue",
            ["queue"], registry=r,
        )
        self.task_failures = Counter(
            "clickrelay_task_failures",
            "Background tasks that ended by an exception and were restarted, by task",
            ["task"], registry=r,
        )
        self.retention_purged = Counter(
            "clickrelay_retention_purged", "Rows deleted by the retention purge, by table",
            ["table"], registry=r,
        )

    def count_commits(self, commits: Callable[[], int]) -> None:
        """Export the store's count of committed write transactions (each one fsync of
        the write-ahead log; the clicks' writer process commits apart from these)."""
        self.registry.register(_Commits(commits))


class _Commits(Collector):
    def __init__(self, commits: Callable[[], int]) -> None:
        self._commits = commits

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "clickrelay_store_commits",
            "Write transactions committed by the server's store connection (spool, delivery"
            " records, promotion, webhooks; not the clicks' writer process)",
            value=self._commits(),
        )

