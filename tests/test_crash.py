"""Crash safety (kill -9): a real ``clickrelay serve`` process is killed in the middle of
mail and click traffic and started again on the same data. Every mail that was answered
250 reaches the upstream, every click that was answered 302 becomes an event whose
webhook is delivered, and once the queues are drained no work is left claimed."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import smtplib
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from store.store import Store
from tests.clicking import BROWSER_HEADERS, CHROME, HOOK_SECRET
from tests.conftest import PROJECT_TOKEN, simple_message, wait_until
from tests.receiver import Receiver
from tests.redirecting import K1, links_in
from tests.sink import Sink
from tests.test_serve_process import Server
from tracker.tokens import verify_token

MAILERS = 4
KILL_AFTER_MAILS = 20
KILL_AFTER_CLICKS = 10


@dataclass
class Traffic:
    """What the clients saw: the ids of mail answered 250, the clicks answered 302."""

    smtp_port: int
    http_port: int
    sink: Sink
    stop: threading.Event = field(default_factory=threading.Event)
    queued: list[str] = field(default_factory=list)
    clicked: dict[str, str] = field(default_factory=dict)  # message id -> link
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mail(self, n: int) -> None:
        while not self.stop.is_set():
            try:
                ids = self._send_one(f"Crash {n}")
            except (OSError, smtplib.SMTPException):
                self.stop.wait(0.01)  # the server is gone or going: promised nothing
                continue
            with self.lock:
                self.queued.extend(ids)

    def _send_one(self, subject: str) -> list[str]:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as client:
            client.login("u", PROJECT_TOKEN)
            client.mail("sender@acme.test")
            client.rcpt("rcpt@example.org")
            code, reply = client.data(simple_message(subject=subject))
        assert code == 250, reply
        return reply.decode().rsplit("queued as ", 1)[1].split()

    def click(self) -> None:
        seen = 0
        while not self.stop.is_set():
            copies = list(self.sink.received)
            for copy in copies[seen:]:
                link = links_in(copy.content)[0]
                message_id = verify_token(link.rsplit("/c/", 1)[1], [K1]).message_id
                if message_id not in self.clicked and self._click(link, len(self.clicked)):
                    with self.lock:
                        self.clicked[message_id] = link
            seen = len(copies)
            self.stop.wait(0.01)  # pace the polling of what the sink received

    def _click(self, link: str, n: int) -> bool:
        parts = urlsplit(link)
        headers = {"Host": parts.netloc, "User-Agent": CHROME, **BROWSER_HEADERS,
                   "X-Forwarded-For": f"198.51.{100 + n // 250}.{1 + n % 250}"}
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            connection.request("GET", parts.path, headers=headers)
            return connection.getresponse().status == 302
        except OSError:
            return False
        finally:
            connection.close()

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.queued), len(self.clicked)


@pytest.fixture
def server(tmp_path: Path, sink: Sink, receiver: Receiver) -> Any:
    s = Server(tmp_path)
    s.settings["upstream"] = {"url": f"smtp://127.0.0.1:{sink.port}",
                              "retry_initial_seconds": 0.05, "timeout_seconds": 5}
    s.settings["webhook_delivery"] = {"retry_initial_seconds": 0.01}
    # Machine clicks too, so that every event has a delivery whatever its verdict.
    s.settings["projects"][0]["webhooks"] = [
        {"id": "hook", "url": receiver.url("hook"), "secret": HOOK_SECRET,
         "events": ["message.clicked"], "include_machine_events": True}
    ]
    s.write()
    yield s
    if s.proc and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def health(server: Server) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.http_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as answer:
        data: dict[str, Any] = json.load(answer)
    return data


async def test_kill_9_mid_traffic_loses_no_mail_click_or_webhook(
    server: Server, sink: Sink, receiver: Receiver, tmp_path: Path
) -> None:
    await asyncio.to_thread(server.start)
    traffic = Traffic(server.smtp_port, server.http_port, sink)
    threads = [threading.Thread(target=traffic.mail, args=(n,)) for n in range(MAILERS)]
    threads.append(threading.Thread(target=traffic.click))
    for t in threads:
        t.start()
    try:
        # Mid-traffic, with mail, clicks and webhooks in every state: some done, some not.
        await wait_until(lambda: traffic.counts()[0] >= KILL_AFTER_MAILS
                         and traffic.counts()[1] >= KILL_AFTER_CLICKS
                         and receiver.requests, timeout=60)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(server.proc.wait)
    finally:
        traffic.stop.set()
        for t in threads:
            await asyncio.to_thread(t.join)

    await asyncio.to_thread(server.start)  # the same configuration and data directory
    queued, clicked = set(traffic.queued), dict(traffic.clicked)

    def delivered_ids() -> set[str]:
        found = set()
        for copy in list(sink.received):
            link = links_in(copy.content)[0]
            found.add(verify_token(link.rsplit("/c/", 1)[1], [K1]).message_id)
        return found

    await wait_until(lambda: queued <= delivered_ids(), timeout=60)

    def hooked() -> set[str]:
        return {r.payload["data"]["message_id"] for r in receiver.to("hook")}

    await wait_until(lambda: set(clicked) <= hooked(), timeout=60)

    def drained() -> bool:
        queues = health(server)["queues"]
        return all(q["pending"] == 0 for q in queues.values())

    await wait_until(lambda: asyncio.to_thread(drained), timeout=60)
    assert all(q["claimed"] == 0 for q in health(server)["queues"].values())
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    await assert_every_click_has_a_delivered_event(tmp_path, clicked)


async def assert_every_click_has_a_delivered_event(tmp_path: Path,
                                                   clicked: dict[str, str]) -> None:
    store = await Store.open(tmp_path / "data" / "clickrelay.db")
    try:
        for message_id in clicked:
            events = await store.list_message_events(message_id, include_machine=True)
            assert events, message_id
            for event in events:
                deliveries = await store.deliveries_of_event(event.id)
                assert [d.status for d in deliveries] == ["delivered"]
        assert all(q.pending == 0 and q.claimed == 0 for q in await store.queue_states())
    finally:
        await store.close()
