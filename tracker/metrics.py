"""Prometheus metrics of one running clickrelay, in a registry of its own (no global
state: several instances may run in one process, as the tests do)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.mail_delivered = Counter(
            "clickrelay_mail_delivered", "Copies delivered upstream", registry=r
        )
        self.mail_failed = Counter(
            "clickrelay_mail_failed", "Copies that failed for good", ["reason"], registry=r
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
        self.config_reloads = Counter(
            "clickrelay_config_reloads", "Configuration reloads, by result", ["result"], registry=r
        )
