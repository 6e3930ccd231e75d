"""Supervised background tasks (docs/hostile-input.md): a task that dies is logged with its
traceback,
counted, and started again; ``/healthz`` names it with 503 until it has run steadily, and
stays 503 while it keeps dying; the clicks and mail it held are still stored and sent;
and ``clickrelay serve`` still stops with status 0 on SIGTERM afterwards."""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.config import live
from relay.server import Running
from tests.clicking import click_as_person, events_of, send_tracked
from tests.conftest import send, simple_message, wait_until
from tests.redirecting import HOST, click, token
from tests.sink import Sink
from tests.test_operations import get
from tests.test_serve_process import Server, wait_for
from tracker.http.redirect import REDIRECTOR_KEY
from tracker.supervisor import LOOP_DEATHS

# Where each task's fault is injected: an attribute its loop calls outside its own guard.
FAULTS: dict[str, Callable[[Running], tuple[Any, str]]] = {
    "observation-recorder": lambda r: (r.app[REDIRECTOR_KEY].recorder, "_write"),
    "delivery": lambda r: (r.delivery, "_claim"),
    "promotion": lambda r: (r.promotions[0], "_report"),
    "webhooks": lambda r: (r.webhooks, "_sweep"),
    "config-watch": lambda r: (live, "file_stamp"),
}


class Fault:
    """Makes ``target.name`` raise ``times`` times (forever with None), then behave."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Any, name: str,
                 times: int | None = 1) -> None:
        self.original = getattr(target, name)
        self.left = times
        monkeypatch.setattr(target, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.left is None or self.left > 0:
            self.left = None if self.left is None else self.left - 1
            raise RuntimeError("injected fault")
        return self.original(*args, **kwargs)

    def heal(self) -> None:
        self.left = 0


def failures(relay: Running, task: str) -> float:
    value = relay.metrics.registry.get_sample_value("clickrelay_task_failures_total",
                                                    {"task": task})
    return value or 0.0


async def unhealthy(relay: Running, task: str) -> dict[str, Any]:
    """Poll /healthz until it answers 503 naming the task."""

    async def named() -> Any:
        status, body = await get(relay, "/healthz")
        return body if status == 503 and body["tasks"][task] != "running" else None

    body: dict[str, Any] = await wait_until(named)
    assert body["status"] == "error" and task in body["reason"]
    return body


async def healthy_again(relay: Running) -> dict[str, Any]:
    """Make a restarted task count as steady soon, then poll /healthz until it is 200."""
    config = relay.config()
    health = dataclasses.replace(config.health, task_steady_seconds=0.05)
    relay.config.replace(dataclasses.replace(config, health=health))

    async def ok() -> Any:
        status, body = await get(relay, "/healthz")
        return body if status == 200 else None

    body: dict[str, Any] = await wait_until(ok)
    assert set(body["tasks"].values()) == {"running"}
    return body


async def click_is_stored(relay: Running, message_id: str) -> None:
    assert (await click(relay, token(message_id=message_id))).status == 302
    assert len(await relay.store.get_observations(message_id)) == 1


@pytest.mark.parametrize("task", FAULTS)
async def test_a_task_that_dies_is_logged_counted_restarted_and_reported(
    relay: Running, sink: Sink, task: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    Fault(monkeypatch, *FAULTS[task](relay))
    # The recorder dies at this click's batch, and its restart writes the batch it held.
    await click_is_stored(relay, "m-during")
    await wait_until(lambda: failures(relay, task) == 1)
    body = await unhealthy(relay, task)
    assert body["tasks"][task] == "restarting"
    assert f"background task {task} died" in caplog.text
    assert "RuntimeError: injected fault" in caplog.text  # with its traceback
    await click_is_stored(relay, "m-after")
    await send(relay.smtp_port, simple_message())
    assert len(await sink.wait_for(1)) == 1
    await healthy_again(relay)
    assert failures(relay, task) == 1
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_observations_dropped_total") == 0


async def test_a_recorder_that_dies_after_a_commit_does_not_store_its_batch_twice(
    relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch is committed, then the run dies before it answers the clicks: the restarted
    # run sends the same batch again, which the writer knows by its key.
    Fault(monkeypatch, relay.app[REDIRECTOR_KEY].recorder, "_committed")
    await click_is_stored(relay, "m-once")
    await wait_until(lambda: failures(relay, "observation-recorder") == 1)
    await click_is_stored(relay, "m-next")
    assert len(await relay.store.get_observations("m-once")) == 1


async def test_a_task_that_keeps_dying_keeps_healthz_at_503(
    relay: Running, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = Fault(monkeypatch, relay.delivery, "_claim", times=None)
    await send(relay.smtp_port, simple_message())
    await wait_until(lambda: failures(relay, "delivery") >= LOOP_DEATHS)
    assert (await unhealthy(relay, "delivery"))["tasks"]["delivery"] == "failed"
    await wait_until(lambda: failures(relay, "delivery") > LOOP_DEATHS)
    assert (await unhealthy(relay, "delivery"))["tasks"]["delivery"] == "failed"
    assert not sink.handler.received
    fault.heal()
    assert len(await sink.wait_for(1)) == 1
    await healthy_again(relay)


async def test_a_killed_promotion_process_is_reported_replaced_and_its_work_done(
    relay: Running, sink: Sink
) -> None:
    """Promotion runs in a process of its own (relay/promotion.py): killed, it is a dead
    task like any other, and the process that replaces it promotes the clicks."""
    first = await wait_until(lambda: relay.promotions[0].pid)
    os.kill(first, signal.SIGKILL)
    assert (await unhealthy(relay, "promotion"))["tasks"]["promotion"] == "restarting"
    await wait_until(lambda: relay.promotions[0].pid not in (None, first))
    [sent] = await send_tracked(relay, sink, '<p><a href="https://example.com/a">A</a></p>')
    assert (await click_as_person(relay, sent.link(0))).status == 302
    [event] = await events_of(relay, sent.message_id, 1)
    assert event.classification == "genuine"
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_clicks_classified_total", {"classification": "genuine"}) == 1
    await healthy_again(relay)


@pytest.fixture
def two_promotion_processes(settings: dict[str, Any]) -> None:
    settings["tracking"]["promotion_processes"] = 2


@pytest.mark.usefixtures("two_promotion_processes")
async def test_several_promotion_processes_are_supervised_each_and_promote_each_click_once(
    relay: Running, sink: Sink
) -> None:
    """``tracking.promotion_processes``: a task and a process each; one killed is replaced
    while the other goes on, and every click becomes one event, whichever claims it."""
    first, second = [await wait_until(lambda p=p: p.pid) for p in relay.promotions]
    assert first != second
    status, body = await get(relay, "/healthz")
    assert status == 200 and {"promotion", "promotion-2"} <= set(body["tasks"])
    os.kill(second, signal.SIGKILL)
    assert (await unhealthy(relay, "promotion-2"))["tasks"]["promotion"] == "running"
    links = "".join(f'<a href="https://example.com/{n}">{n}</a>' for n in range(6))
    [sent] = await send_tracked(relay, sink, f"<p>{links}</p>")
    for n in range(6):
        assert (await click_as_person(relay, sent.link(n))).status == 302
    events = await events_of(relay, sent.message_id, 6)
    assert sorted(e.link_index for e in events) == list(range(6))
    await wait_until(lambda: relay.promotions[1].pid not in (None, second))
    await healthy_again(relay)


# `clickrelay serve` whose recorder dies at its first batch, as a client's reset connection
# once made it die.
FAULTY_SERVE = """
import errno, sys
from relay.cli import main
from tracker.clicks.recorder import ObservationRecorder
write, faults = ObservationRecorder._write, [OSError(errno.EBADF, "Bad file descriptor")]
async def _write(self, batch, observations):
    if faults:
        raise faults.pop()
    await write(self, batch, observations)
ObservationRecorder._write = _write
sys.exit(main(sys.argv[1:]))
"""


class FaultyServer(Server):
    program = ("-c", FAULTY_SERVE)


def test_serve_stops_with_status_0_after_a_task_died(tmp_path: Path) -> None:
    server = FaultyServer(tmp_path)
    server.start()
    assert server.proc is not None
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.request("GET", f"/c/{token(message_id='m-proc')}", headers={"Host": HOST})
        assert connection.getresponse().status == 302
        connection.close()
        metrics = wait_for(lambda: _metrics(server))
        assert 'clickrelay_task_failures_total{task="observation-recorder"} 1.0' in metrics
        assert "clickrelay_observations_dropped_total 0.0" in metrics
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    log = server.log.read_bytes()
    assert b"background task observation-recorder died" in log
    stopping = log.split(b" stopping\n", 1)[1]
    assert b"Traceback" not in stopping and b"cannot serve" not in log
    assert stopping.rstrip().endswith(b"stopped")


def _metrics(server: Server) -> str:
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())
