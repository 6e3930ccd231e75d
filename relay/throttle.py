"""One slow-down for every check of a secret: SMTP AUTH, the API's team and project tokens,
and the dashboard's sign-in (docs/hostile-input.md, docs/dashboard.md).

Failures are counted per key, in memory, across every connection: the source network of
the attempt (``source_network``: an IPv4 /24, an IPv6 /56, since whoever holds one address
of a network usually holds its neighbours too), plus whatever else a caller names (an
account it signs in to). After ``FREE_FAILURES`` failures from a key, a secret from it is
checked at most once per spacing, 0.5 s doubling with each further failure up to 30 s.

The check itself is the gate: an attempt that comes before its key's next check is due
is not checked at all and is refused as "try again later" (SMTP 454, HTTP 429 with
``Retry-After``). So parallel connections do not multiply the guesses: before, the
slow-down was a pause before each AUTH, and ten parallel connections tried ten passwords
in as long as one did. A success does not wipe out the failures (a sender holding one
valid token could otherwise reset its network's count between guesses at another
project's); they are forgotten after an hour without one."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracker.clicks.network import IPAddress

log = logging.getLogger("clickrelay.throttle")

FREE_FAILURES = 5  # failures of a key before its checks are spaced
FIRST_SPACING = 0.5  # seconds between two checks after the free failures, doubling
MAX_SPACING = 30.0
FAILURE_MEMORY = 3600.0  # seconds without a failure after which a key starts over
TRACKED_KEYS = 10_000  # keys remembered at most (the longest unfailed forgotten first)
IPV4_PREFIX = 24
IPV6_PREFIX = 56


@dataclass(slots=True)
class _Failures:
    count: int
    last: float  # when the last failure was
    next_check: float  # no secret from this key is checked before this time


class Throttle:
    """Failures per key; ``clock`` is monotonic seconds (a test may stop it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, keys: Sequence[str]) -> float:
        """Seconds before a secret presented from ``keys`` may be checked; 0: now. A
        caller told more than 0 must not check the secret, and asks to try later."""
        now = self.clock()
        return max([0.0, *(f.next_check - now for f in self._current(keys, now))])

    def failed(self, keys: Sequence[str]) -> None:
        """A secret presented from ``keys`` was wrong."""
        now = self.clock()
        for key in keys:
            found = self._current((key,), now)
            failures = found[0] if found else _Failures(0, now, now)
            self._keys.pop(key, None)
            self._keys[key] = failures  # the most recently failed last
            failures.count += 1
            failures.last = now
            if failures.count >= FREE_FAILURES:
                failures.next_check = now + spacing(failures.count)
            if failures.count == FREE_FAILURES:
                log.warning("%d failed secret checks from one %s; its checks are now spaced",
                            failures.count, "source network" if key.startswith("net:")
                            else "sign-in name")
        while len(self._keys) > TRACKED_KEYS:
            self._keys.popitem(last=False)

    def failures(self, key: str) -> int:
        """The failures counted for ``key`` now."""
        found = self._current((key,), self.clock())
        return found[0].count if found else 0

    def _current(self, keys: Sequence[str], now: float) -> list[_Failures]:
        out = []
        for key in keys:
            failures = self._keys.get(key)
            if failures is not None and now - failures.last > FAILURE_MEMORY:
                del self._keys[key]
            elif failures is not None:
                out.append(failures)
        return out


def spacing(failures: int) -> float:
    """Seconds between two checks of a key with ``failures`` failures."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_SPACING, FIRST_SPACING * 2.0 ** (failures - FREE_FAILURES))


def source_network(address: IPAddress | None) -> str:
    """The key of the network an attempt comes from: ``net:`` and its /24 or /56."""
    if address is None:
        return "net:unknown"
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return f"net:{ipaddress.ip_network((address, prefix), strict=False)}"
