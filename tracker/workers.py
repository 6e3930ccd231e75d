"""The one worker loop under the delivery worker (relay/delivery/worker.py), the promotion worker
(tracker/promote.py) and the webhook dispatcher (tracker/webhooks/dispatch.py): claim what is due,
handle it, sleep until more is due. A worker says what to claim (``claim``) and how to
handle one claimed item (``handle``); the rest is here, the same for all three.

- Claims are atomic and leased in the store: a claimed item is held until
  ``lease_seconds()`` after its claim, and the loop renews the leases of the items it
  holds every third of that while their handlers run (``renew``). A worker that dies
  without giving its items back (its node killed) delays them by one lease at most, after
  which any worker, on any node sharing the store, takes them (docs/deployment.md).
- At most ``concurrency()`` items are handled at once, each in a task of its own; a
  claim asks for no more items than there are free slots.
- When nothing could be claimed or every slot is taken, the loop sleeps until it is
  woken (``wake()``: new work was stored; or a handler ended and freed its slot), until
  the next item is due (``next_due()``), or for ``idle_poll_seconds`` at most.
- A claim that fails is logged and tried again at the next round; a handler that raises
  is logged and the loop goes on: the item's claim lapses with its lease and the item
  is claimed again then. A failed attempt that the handler records itself is due again
  after ``backoff_seconds``.
- A loop that stops (cancelled when the server stops, or dead of an error and started
  again by tracker/supervisor.py) cancels its handlers and gives back its claims, so a
  restarted loop leaks nothing; if the store cannot take them back then, they lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from typing import Generic, TypeVar

from store.clock import now_us

T = TypeVar("T")

IDLE_POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 3600.0
# How long a claim holds its item without being renewed: what a dead worker's items wait
# before another takes them (``[store] lease_seconds``, at least MIN_LEASE_SECONDS).
LEASE_SECONDS = 60.0
MIN_LEASE_SECONDS = 1.0
RENEWALS_PER_LEASE = 3
_US = 1_000_000


def backoff_seconds(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """The delay after failed attempt number ``attempt`` (1-based):
    ``min(cap, initial × 2^(attempt − 1)) × uniform(0.8, 1.2)``.

    The delay doubles from ``initial`` up to ``cap``; the ±20 % jitter, applied to the cap
    too, spreads out the items that failed together, so that an upstream or a receiver
    that recovers is not hit by all of them at once."""
    # The exponent stops at the largest finite power of two: past it a float product is
    # inf (never an OverflowError), and the cap has taken over long before.
    base = min(cap, initial * 2.0 ** min(attempt - 1, 1023))
    return base * rng.uniform(0.8, 1.2)


class WorkerLoop(ABC, Generic[T]):
    """Claims the due items of one queue and handles them (see the module docstring).
    ``run()`` is the task that the server starts and its supervisor restarts."""

    idle_poll_seconds = IDLE_POLL_SECONDS

    def __init__(self, name: str, clock: Callable[[], int] = now_us,
                 lease: Callable[[], float] = lambda: LEASE_SECONDS) -> None:
        self.worker_id = f"{name}-{uuid.uuid4().hex[:12]}"
        self.log = logging.getLogger(f"clickrelay.{name}")
        self._clock = clock
        self._lease_length = lease
        self._rng = random.Random()
        self._wakeup = asyncio.Event()
        self._handling: dict[asyncio.Task[None], T] = {}
        self._renew_at: int | None = None  # when the held items' leases are renewed next

    @abstractmethod
    async def claim(self, now: int, lease_us: int, room: int) -> Sequence[T]:
        """Take up to ``room`` due items from the store, held until ``now + lease_us``."""

    @abstractmethod
    async def handle(self, item: T) -> None:
        """Handle one claimed item and record the outcome, which ends its claim."""

    @abstractmethod
    async def release(self) -> None:
        """Give back every claim this worker holds."""

    @abstractmethod
    def concurrency(self) -> int:
        """How many items may be handled at once (read at every round)."""

    @abstractmethod
    async def renew(self, until: int) -> None:
        """Extend the claims this worker holds to ``until``."""

    def lease_seconds(self) -> float:
        """How long a claim holds an item without being renewed (read at every claim)."""
        return self._lease_length()

    async def next_due(self) -> int | None:
        """When the earliest unfinished item is due (µs), if the store can tell."""
        return None

    async def before_claim(self) -> None:
        """The worker's own upkeep, done at every round before claiming."""

    def describe(self, item: T) -> str:
        """How the log names an item."""
        return type(item).__name__

    def wake(self) -> None:
        """New work was stored: look for due items now instead of at the next poll."""
        self._wakeup.set()

    @property
    def in_flight(self) -> Collection[T]:
        """The claimed items being handled."""
        return self._handling.values()

    def next_attempt_at(self, attempt: int, initial: float) -> int:
        """When to try an item again after its failed attempt number ``attempt``."""
        delay = backoff_seconds(attempt, initial, MAX_BACKOFF_SECONDS, self._rng)
        return self._clock() + int(delay * _US)

    async def run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                await self.before_claim()
                claimed = await self._claim(self.concurrency() - len(self._handling))
                for item in claimed:
                    self._start(item)
                if not claimed or len(self._handling) >= self.concurrency():
                    await self._renew_due()
                    await self._idle()
        finally:
            await self._stop()

    async def _claim(self, room: int) -> Sequence[T]:
        if room <= 0:
            return []
        try:
            claimed = await self.claim(self._clock(), int(self.lease_seconds() * _US), room)
        except Exception:
            self.log.exception("claiming due work failed; retrying")
            return []
        if claimed and not self._handling:
            self._renew_at = self._clock() + self._renew_every()
        return claimed

    def _renew_every(self) -> int:
        return int(self.lease_seconds() * _US / RENEWALS_PER_LEASE)

    async def _renew_due(self) -> None:
        """Renew the held items' leases once a third of a lease has passed since the
        last renewal (or the first claim)."""
        now = self._clock()
        if not self._handling or self._renew_at is None or now < self._renew_at:
            return
        self._renew_at = now + self._renew_every()
        try:
            await self.renew(now + int(self.lease_seconds() * _US))
        except Exception:
            self.log.exception("renewing claims failed; retrying")

    async def _idle(self) -> None:
        timeout = self.idle_poll_seconds
        with contextlib.suppress(Exception):
            due, now = await self.next_due(), self._clock()
            # An item due but not claimed (held by another worker, or waiting for a slot)
            # is polled for, not spun on.
            if due is not None and due > now:
                timeout = min(timeout, (due - now) / _US)
            if self._handling and self._renew_at is not None:
                timeout = min(timeout, max(0, self._renew_at - now) / _US)
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that comes as the wake-up is set, and the worker then never stops.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    def _start(self, item: T) -> None:
        task = asyncio.create_task(self._handle(item))
        self._handling[task] = item
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._handling.pop(task, None)
        self._wakeup.set()  # a slot is free

    async def _handle(self, item: T) -> None:
        try:
            await self.handle(item)
        except Exception:
            self.log.exception("handling %s failed; it is tried again once its claim lapses",
                               self.describe(item))

    async def _stop(self) -> None:
        tasks = list(self._handling)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.release()
        except Exception:
            self.log.exception("giving back claims failed; they lapse with their leases")
