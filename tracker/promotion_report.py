"""What one batch of promotion did (its classifications, lags, honeypot hits, failures and
webhook deliveries), as promotion tells it: counted in the metrics and waking the webhook
dispatcher in the server's process (``metrics_report``), or sent to the server as one JSON
line from promotion's own process (relay/promotion.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracker.metrics import Metrics


@dataclass
class PromotionReport:
    """What one promoted batch did, for the metrics and the webhook dispatcher."""

    classified: Counter[str] = field(default_factory=Counter)  # click events by classification
    lags: list[float] = field(default_factory=list)  # seconds from each click to its event
    honeypot_hits: int = 0
    failures: int = 0  # observations whose promotion failed (tried again later)
    deliveries: int = 0  # webhook deliveries written
    opened: Counter[str] = field(default_factory=Counter)  # open events by classification

    def to_json(self) -> bytes:
        return json.dumps({"classified": self.classified, "lags": self.lags,
                           "honeypot_hits": self.honeypot_hits, "failures": self.failures,
                           "deliveries": self.deliveries, "opened": self.opened},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PromotionReport:
        """A report as ``to_json`` wrote it; ValueError for anything else."""
        try:
            raw: Any = json.loads(data)
            report = cls(Counter({str(k): int(v) for k, v in raw["classified"].items()}),
                         [float(lag) for lag in raw["lags"]], int(raw["honeypot_hits"]),
                         int(raw["failures"]), int(raw["deliveries"]),
                         Counter({str(k): int(v) for k, v in raw["opened"].items()}))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a promotion report: {exc!r}") from None
        return report


Report = Callable[[PromotionReport], None]


def metrics_report(metrics: Metrics, on_deliveries: Callable[[], None] = lambda: None) -> Report:
    """Count a report in ``metrics``; webhook deliveries written wake ``on_deliveries``."""

    def apply(report: PromotionReport) -> None:
        for classification, count in report.classified.items():
            metrics.clicks_classified.labels(classification).inc(count)
        for classification, count in report.opened.items():
            metrics.opens_classified.labels(classification).inc(count)
        for lag in report.lags:
            metrics.promotion_lag.observe(lag)
        if report.honeypot_hits:
            metrics.honeypot_hits.inc(report.honeypot_hits)
        if report.failures:
            metrics.promotion_failures.inc(report.failures)
        if report.deliveries:
            on_deliveries()

    return apply
