"""The one clock of the store and its consumers: microseconds since the Unix epoch, the
unit of every time column (``created_at``, ``next_attempt_at``, ``claimed_until``, …).
It lives in the store so that store, tracker and relay can all use it."""

from __future__ import annotations

import time


def now_us() -> int:
    return time.time_ns() // 1000
