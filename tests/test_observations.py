"""Observations are durable before the 302 and group-committed; a store that is slow or
failing costs the click's record, never the recipient's redirect; no raw client address
reaches the disk (docs/redirect.md)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from store.records import Observation
from tests.conftest import wait_until, write_config
from tests.redirecting import click, token
from tests.test_operations import get
from tracker.clicks.recorder import ObservationRecorder
from tracker.http.redirect import REDIRECTOR_KEY
from tracker.supervisor import Supervisor

# The tests of the path every click takes to the store run on both: through the observation
# writer's process on SQLite, through the store on the event loop on PostgreSQL.
both_stores = pytest.mark.usefixtures("both_stores")


def recorder_of(relay: Running) -> ObservationRecorder:
    recorder = relay.app[REDIRECTOR_KEY].recorder
    assert isinstance(recorder, ObservationRecorder)
    return recorder


def writes_through(relay: Running) -> Any:
    """What the recorder writes its batches through: the observation writer (SQLite), or
    the store itself (PostgreSQL); where a test injects a fault."""
    return relay.observation_writer or relay.store


def sample(relay: Running, name: str, labels: dict[str, str] | None = None) -> float:
    return relay.metrics.registry.get_sample_value(name, labels or {}) or 0.0


class GatedStore:
    """Holds every batch at a gate until the test opens it (a slow or stuck disk)."""

    def __init__(self, relay: Running, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[int] = []
        self.gate = asyncio.Event()
        self._original = writes_through(relay).record_observations
        monkeypatch.setattr(writes_through(relay), "record_observations",
                            self.record_observations)

    async def record_observations(self, batch: Sequence[Observation]) -> Any:
        self.batches.append(len(batch))
        await self.gate.wait()
        return await self._original(batch)


@pytest.fixture
async def patient_relay(settings: dict[str, Any], config_path: Path) -> Any:
    """A relay whose clicks wait up to a minute for their commit."""
    settings["tracking"]["store_deadline_ms"] = 60_000
    async with running(write_config(config_path, settings)) as relay:
        yield relay


@pytest.fixture
async def hasty_relay(settings: dict[str, Any], config_path: Path) -> Any:
    """A relay whose clicks wait only 50 ms for their commit."""
    settings["tracking"]["store_deadline_ms"] = 50
    async with running(write_config(config_path, settings)) as relay:
        yield relay


@both_stores
async def test_concurrent_clicks_share_one_transaction(
    patient_relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = patient_relay
    store = GatedStore(relay, monkeypatch)
    clicks = [asyncio.create_task(click(relay, token(message_id=f"m-{i}"))) for i in range(50)]
    # The first transaction is held; every click that arrives meanwhile gathers behind it.
    await wait_until(lambda: len(store.batches) == 1
                     and store.batches[0] + recorder_of(relay).queued == 50)
    store.gate.set()
    answers = await asyncio.gather(*clicks)
    assert [a.status for a in answers] == [302] * 50
    assert sum(store.batches) == 50 and len(store.batches) <= 2
    assert await relay.store.count_observations() == 50
    assert sample(relay, "clickrelay_observation_batch_size_count") == len(store.batches)
    assert sample(relay, "clickrelay_observations_dropped_total") == 0


@both_stores
async def test_stuck_store_still_redirects_and_counts_the_drop(
    hasty_relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = hasty_relay
    store = GatedStore(relay, monkeypatch)
    answer = await click(relay, token(message_id="m-slow"))
    assert answer.status == 302 and answer.headers["Location"] == "https://example.com/a"
    assert sample(relay, "clickrelay_observations_dropped_total") == 1
    # The store was only slow: once it answers, the observation is kept after all.
    store.gate.set()
    await wait_until(lambda: sample(relay, "clickrelay_observations_late_total") == 1)
    assert len(await relay.store.get_observations("m-slow")) == 1


@both_stores
async def test_clicks_held_by_a_stuck_store_are_each_let_go_and_counted_once(
    hasty_relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = hasty_relay
    store = GatedStore(relay, monkeypatch)
    first = await click(relay, token(message_id="m-0"))  # its batch holds the writer
    later = await asyncio.gather(*(click(relay, token(message_id=f"m-{i}"))
                                   for i in range(1, 6)))
    assert [a.status for a in (first, *later)] == [302] * 6
    assert sample(relay, "clickrelay_observations_dropped_total") == 6
    store.gate.set()
    await wait_until(lambda: sample(relay, "clickrelay_observations_late_total") == 6)
    assert await relay.store.count_observations() == 6


@both_stores
async def test_failing_store_still_redirects_and_counts_the_drop(
    hasty_relay: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    relay = hasty_relay

    async def broken(batch: Sequence[Observation]) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(writes_through(relay), "record_observations", broken)
    answer = await click(relay, token(message_id="m-lost"))
    assert answer.status == 302
    assert sample(relay, "clickrelay_observations_dropped_total") == 1
    await wait_until(lambda: "clicks redirected without a stored observation" in caplog.text)
    assert "1 (deadline passed)" in caplog.text


async def test_a_writer_that_cannot_start_again_is_reported_by_healthz(
    hasty_relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = hasty_relay
    writer = relay.observation_writer
    spawn = writer._spawn

    async def cannot_start() -> Any:
        raise OSError("cannot start the observation writer")

    monkeypatch.setattr(writer, "_spawn", cannot_start)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    assert (await click(relay, token(message_id="m-unstored"))).status == 302

    async def unhealthy() -> Any:
        status, body = await get(relay, "/healthz")
        return body if status == 503 else None

    body = await wait_until(unhealthy)
    assert body["observations"] == "failing"
    assert "clicks are not being stored" in body["reason"]
    monkeypatch.setattr(writer, "_spawn", spawn)
    assert (await click(relay, token(message_id="m-stored"))).status == 302
    await wait_until(lambda: relay.store.get_observations("m-stored"))

    async def healthy() -> Any:
        status, body = await get(relay, "/healthz")
        return body if status == 200 else None

    assert "observations" not in await wait_until(healthy)


@both_stores
async def test_transient_store_error_is_retried_before_the_redirect(
    patient_relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = patient_relay
    original = writes_through(relay).record_observations
    failures = [OSError("database is locked")]

    async def flaky(batch: Sequence[Observation]) -> Any:
        if failures:
            raise failures.pop()
        return await original(batch)

    monkeypatch.setattr(writes_through(relay), "record_observations", flaky)
    assert (await click(relay, token(message_id="m-retry"))).status == 302
    assert len(await relay.store.get_observations("m-retry")) == 1
    assert sample(relay, "clickrelay_observations_dropped_total") == 0


class FakeStore:
    """A store for the recorder alone: holds batches at a gate, or never answers."""

    def __init__(self) -> None:
        self.batches: list[list[Observation]] = []
        self.gate = asyncio.Event()

    async def record_observations(self, batch: Sequence[Observation]) -> None:
        self.batches.append(list(batch))
        await self.gate.wait()


def observation(i: int) -> Observation:
    return Observation(f"m-{i}", 0, "https://example.com/", "acme1", i, "GET", "", {}, None,
                       "0" * 16, i)


async def test_stop_flushes_what_is_queued(relay: Running) -> None:
    store, metrics = FakeStore(), relay.metrics
    recorder = ObservationRecorder(relay.config, store, metrics)
    recorder.start(Supervisor(relay.metrics))
    clicks = [asyncio.create_task(recorder.record(observation(i))) for i in range(5)]
    await wait_until(lambda: store.batches and len(store.batches[0]) + recorder.queued == 5)
    stopping = asyncio.create_task(recorder.stop())
    await asyncio.sleep(0)  # stop has begun: nothing new is taken, the queue is still written
    assert await recorder.record(observation(9)) is False
    store.gate.set()
    await stopping
    assert [o.message_id for b in store.batches for o in b] == [f"m-{i}" for i in range(5)]
    assert await asyncio.gather(*clicks) == [True] * 5


async def test_stop_gives_up_on_a_store_that_never_answers(relay: Running) -> None:
    store = FakeStore()
    recorder = ObservationRecorder(relay.config, store, relay.metrics)
    recorder.start(Supervisor(relay.metrics))
    clicks = [asyncio.create_task(recorder.record(observation(i))) for i in range(3)]
    await wait_until(lambda: store.batches and len(store.batches[0]) + recorder.queued == 3)
    await recorder.stop(timeout=0.05)
    assert await asyncio.gather(*clicks) == [False] * 3
    assert sample(relay, "clickrelay_observations_dropped_total") == 3


async def test_metrics_expose_the_drop_counter(relay: Running) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{relay.http_port}/metrics"
    ) as response:
        text = await response.text()
    assert "clickrelay_observations_dropped_total 0.0" in text


ADDRESSES = ("203.0.113.77", "2001:db8::77")


def _forms(text: str) -> list[bytes]:
    address = ipaddress.ip_address(text)
    forms = {str(address), address.exploded, str(int(address))}
    if address.version == 6:
        forms.add(address.exploded.replace(":", ""))
    return [f.encode() for f in forms] + [address.packed]


def _leaks(data_dir: Path) -> list[str]:
    found = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        content = path.read_bytes().lower()
        found += [f"{path.name}: {form!r}" for text in ADDRESSES for form in _forms(text)
                  if form.lower() in content]
    return found


async def test_no_raw_address_is_written_to_disk(
    settings: dict[str, Any], config_path: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "data"
    async with running(write_config(config_path, settings)) as relay:
        for i in range(20):
            address = ADDRESSES[i % 2]
            answer = await click(relay, token(message_id=f"m-{i}", index=i),
                                 headers={"X-Forwarded-For": f"10.9.9.9, {address}"})
            assert answer.status == 302
        assert await relay.store.count_observations() == 20
        files = {p.name for p in data_dir.iterdir()}
        assert {"clickrelay.db", "clickrelay.db-wal"} <= files
        assert _leaks(data_dir) == []
        hashes = {o.addr_hash for i in range(20)
                  for o in await relay.store.get_observations(f"m-{i}")}
        assert len(hashes) == 2  # still told apart, for correlation
    assert _leaks(data_dir) == []  # after the final checkpoint, too
    assert not any(a in caplog.text for a in ADDRESSES)
