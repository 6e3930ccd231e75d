"""The worker loop under delivery, promotion and webhooks (tracker/workers.py), run over
the real spool in a SQLite store: it claims only what is due, wakes at once when told,
handles no more at once than its concurrency, survives a handler that raises, gives its
claims back when it stops, and backs retries off within the jitter's range."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running
from store.clock import now_us
from store.mail import DELIVERED
from store.queues import QUEUE_NAMES, renewal
from store.records import NewMessage, SpooledMessage
from store.store import Store
from tests.conftest import send, simple_message, sqlite_plan, wait_until
from tests.sink import Sink
from tracker.workers import WorkerLoop, backoff_seconds

S = 1_000_000


class Clock:
    """A clock the test moves."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class SpoolWorker(WorkerLoop[SpooledMessage]):
    """The loop over the real spool, with a handler that the test scripts. Its idle poll is
    an hour: only a wake-up, a due time or a freed slot starts a round."""

    def __init__(self, store: Store, *, concurrency: int = 4, lease: float = 60.0,
                 poll: float = 3600.0, clock: Callable[[], int] = now_us) -> None:
        super().__init__("test-worker", clock)
        self.store = store
        self.idle_poll_seconds = poll
        self._concurrency, self._lease = concurrency, lease
        self.idles = 0  # rounds that ended asleep
        self.gate: asyncio.Event | None = None  # handlers wait for it
        self.fail: set[str] = set()  # message ids whose next handling raises
        self.handled: list[str] = []
        self.running = self.most = 0

    def concurrency(self) -> int:
        return self._concurrency

    def lease_seconds(self) -> float:
        return self._lease

    async def renew(self, until: int) -> None:
        await self.store.renew_claims("spool", self.worker_id, until)

    async def claim(self, now: int, lease_us: int, room: int) -> list[SpooledMessage]:
        return await self.store.claim_due_messages(self.worker_id, now, lease_us, room)

    async def next_due(self) -> int | None:
        self.idles += 1
        return await self.store.next_message_due()

    async def release(self) -> None:
        await self.store.release_claims(self.worker_id)

    async def handle(self, message: SpooledMessage) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if message.id in self.fail:
                self.fail.discard(message.id)
                raise RuntimeError("handler bug")
            await self.store.record_delivery(message.id, outcome=DELIVERED, at=self._clock(),
                                             duration_ms=0)
            self.handled.append(message.id)
        finally:
            self.running -= 1



async def spool(store: Store, *message_ids: str, due: int | None = None) -> None:
    """Spool copies that are due at ``due`` (now by default)."""
    at = now_us() if due is None else due
    await store.spool_messages([
        NewMessage(m, "sub-" + m, "acme", "acme-outgoing", "a@acme.test", "r@example.org",
                   "Hi", None, {}, False, at, b"body")
        for m in message_ids
    ])


async def claimed(store: Store) -> int:
    [spool_state, *_] = await store.queue_states()
    return spool_state.claimed


@asynccontextmanager
async def looping(worker: SpoolWorker) -> AsyncIterator[SpoolWorker]:
    """The worker's ``run()`` as a task, stopped at the end of the block."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def rounds_pass(worker: SpoolWorker, count: int = 3) -> None:
    """Wake the loop ``count`` times, each time until it has gone round and slept again."""
    for _ in range(count):
        idles = worker.idles
        worker.wake()
        await wait_until(lambda: worker.idles > idles)  # noqa: B023 (awaited at once)


async def test_an_item_due_later_is_not_claimed_early(store: Store) -> None:
    clock = Clock(now_us())
    await spool(store, "now", due=clock.now)
    await spool(store, "later", due=clock.now + 10 * S)
    async with looping(SpoolWorker(store, clock=clock)) as worker:
        await wait_until(lambda: worker.handled == ["now"])
        await rounds_pass(worker)
        assert worker.handled == ["now"] and await claimed(store) == 0
        clock.now += 10 * S
        worker.wake()
        await wait_until(lambda: worker.handled == ["now", "later"])


async def test_an_idle_loop_sleeps_until_the_next_item_is_due(store: Store) -> None:
    await spool(store, "soon", due=now_us() + S // 5)
    async with looping(SpoolWorker(store)) as worker:  # its poll is an hour
        await wait_until(lambda: worker.handled == ["soon"])


async def test_wake_makes_an_idle_loop_claim_at_once(store: Store) -> None:
    async with looping(SpoolWorker(store)) as worker:
        await wait_until(lambda: worker.idles)
        await spool(store, "new")
        worker.wake()
        await wait_until(lambda: worker.handled == ["new"])


async def test_no_more_items_are_handled_at_once_than_the_concurrency(
    store: Store,
) -> None:
    ids = [f"m{i}" for i in range(10)]
    await spool(store, *ids)
    worker = SpoolWorker(store, concurrency=3)
    worker.gate = asyncio.Event()
    async with looping(worker):
        await wait_until(lambda: worker.running == 3)
        await rounds_pass(worker)
        assert worker.running == 3 and await claimed(store) == 3
        worker.gate.set()
        await wait_until(lambda: sorted(worker.handled) == ids)
    assert worker.most == 3


async def test_a_handler_that_raises_does_not_stop_the_loop_and_its_item_comes_back(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await spool(store, "bad", "good")
    worker = SpoolWorker(store, lease=0.2, poll=0.05)
    worker.fail.add("bad")
    async with looping(worker):
        await wait_until(lambda: "good" in worker.handled)
        # Handled again once the claim of its failed handling lapsed.
        await wait_until(lambda: "bad" in worker.handled)
    assert "handling SpooledMessage failed" in caplog.text
    assert "RuntimeError: handler bug" in caplog.text


async def test_the_leases_of_items_being_handled_are_renewed_and_a_dead_workers_lapse(
    store: Store,
) -> None:
    clock = Clock(now_us())
    await spool(store, "long", due=clock.now)
    worker = SpoolWorker(store, lease=60.0, clock=clock)
    worker.gate = asyncio.Event()
    other = SpoolWorker(store, clock=clock)
    async with looping(worker):
        await wait_until(lambda: worker.running == 1)
        for _ in range(5):  # five minutes of handling, a lease of one
            clock.now += 30 * S
            await rounds_pass(worker, 1)
            assert await other.claim(clock.now, 60 * S, 1) == []
        worker.gate.set()
        await wait_until(lambda: worker.handled == ["long"])
    # A worker that dies holding an item (no release, no renewal): the item is taken
    # by another once its lease has run out, and not before.
    await spool(store, "orphan", due=clock.now)
    assert [m.id for m in await worker.claim(clock.now, 60 * S, 1)] == ["orphan"]
    clock.now += 59 * S
    assert await other.claim(clock.now, 60 * S, 1) == []
    clock.now += 2 * S
    assert [m.id for m in await other.claim(clock.now, 60 * S, 1)] == ["orphan"]


async def test_a_loop_that_dies_gives_its_claims_back_and_a_restart_finishes_the_work(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await spool(store, "m1", "m2")
    worker = SpoolWorker(store)
    worker.gate = asyncio.Event()
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.running == 2)
    assert await claimed(store) == 2

    async def dies() -> None:
        raise RuntimeError("the loop dies")

    monkeypatch.setattr(worker, "before_claim", dies)
    worker.wake()
    with pytest.raises(RuntimeError, match="the loop dies"):
        await task
    assert worker.running == 0 and await claimed(store) == 0  # cancelled and given back
    monkeypatch.undo()
    worker.gate.set()
    async with looping(worker):  # as the supervisor starts it again
        await wait_until(lambda: sorted(worker.handled) == ["m1", "m2"])


async def test_a_crash_in_delivery_is_retried_after_the_backoff(
    relay: Running, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = relay.delivery._upstream
    original, crashes = upstream.deliver, [RuntimeError("a bug")]

    async def deliver(*args: Any) -> str:
        if crashes:
            raise crashes.pop()
        return await original(*args)

    monkeypatch.setattr(upstream, "deliver", deliver)
    await send(relay.smtp_port, simple_message())
    assert len(await sink.wait_for(1)) == 1
    row = await relay.store.db.fetchone("SELECT id, created_at, next_attempt_at FROM messages")
    assert row is not None
    message_id, created_at, retry_at = tuple(row)
    attempts = await wait_until(lambda: _two_attempts(relay, message_id))
    assert [a.outcome for a in attempts] == ["temporary", "delivered"]
    assert attempts[0].detail == "internal error: RuntimeError: a bug"
    initial = relay.config().upstream.retry_initial_seconds
    assert retry_at - created_at >= 0.8 * initial * S  # the first backoff
    assert attempts[1].at >= retry_at  # not tried again before it


async def _two_attempts(relay: Running, message_id: str) -> Any:
    attempts = await relay.store.delivery_attempts(message_id)
    return attempts if len(attempts) == 2 else None


@pytest.mark.parametrize("seed", range(5))
def test_backoff_doubles_up_to_its_cap_with_jitter_in_range(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(1, 30):
        base = min(60.0, 0.5 * 2 ** (attempt - 1))
        assert 0.8 * base <= backoff_seconds(attempt, 0.5, 60.0, rng) <= 1.2 * base
    delays = [backoff_seconds(5000, 0.5, 60.0, rng) for _ in range(200)]  # no overflow
    assert all(48.0 <= d <= 72.0 for d in delays)
    assert min(delays) < 55.0 < 65.0 < max(delays)  # jittered, not a constant


@pytest.mark.parametrize("queue", QUEUE_NAMES)
async def test_a_renewal_finds_the_claims_without_walking_the_backlog(
    tmp_path: Path, queue: str
) -> None:
    """A renewal finds the worker's claims through the queue's index of claimed items, not
    by walking every pending item while it holds the write lock (SQLite's plan)."""
    details = await sqlite_plan(tmp_path, renewal(queue), (1, "w"))
    assert len(details) == 1 and "_claimed (claimed_by=?)" in details[0], details
