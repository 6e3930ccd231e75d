"""Nodes for the multi-node tests: real `clickrelay serve` processes, each with its own
configuration file and ports and all on the same PostgreSQL schema, the same signing keys
and the same projects, as nodes behind a load balancer are (docs/deployment.md); and what
those tests send them and read back, over SMTP, HTTP and the shared store."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import smtplib
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from store.store import Store
from tests.clicking import BROWSER_HEADERS, CHROME, HOOK_SECRET
from tests.conftest import PROJECT_TOKEN, TEAM_TOKEN, simple_message
from tests.receiver import Receiver
from tests.redirecting import K1, links_in
from tests.sink import Received, Sink
from tests.test_serve_process import Server
from tracker.tokens import verify_token

# Short leases, through the real setting, so that a killed node's claims lapse in seconds.
LEASE_SECONDS = 3
HOOK = "hook"


class Node(Server):
    """One ``clickrelay serve`` process, in ``directory`` (its file, its log)."""

    def __init__(self, directory: Path, store_url: str, sink: Sink, receiver: Receiver) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory)
        self.name = directory.name
        self.settings["store"] = {"url": store_url, "lease_seconds": LEASE_SECONDS}
        self.settings["upstream"] = {"url": f"smtp://127.0.0.1:{sink.port}",
                                     "retry_initial_seconds": 0.05, "timeout_seconds": 5}
        self.settings["webhook_delivery"] = {"retry_initial_seconds": 0.01}
        # Machine clicks too, so that every event has a delivery whatever its verdict.
        self.settings["projects"][0]["webhooks"] = [
            {"id": HOOK, "url": receiver.url(HOOK), "secret": HOOK_SECRET,
             "events": ["message.clicked"], "include_machine_events": True}
        ]
        self.write()

    def kill(self) -> None:
        """SIGKILL: the node ends without giving anything back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def children(self) -> set[int]:
        """The processes this node started (promotion, the mail workers' fork server, …),
        and theirs."""
        assert self.proc is not None
        below: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (stat := _stat(int(entry.name))):
                below.setdefault(int(stat[1]), []).append(int(entry.name))
        found, todo = set(), [self.proc.pid]
        while todo:
            for child in below.get(todo.pop(), []):
                found.add(child)
                todo.append(child)
        return found

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def submit(self, subject: str, rcpts: list[str], html: str | None = None) -> list[str]:
        """One mail over SMTP; the ids of its copies from the 250 (blocking)."""
        message = simple_message(subject=subject) if html is None else simple_message(
            html, subject=subject)
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            client.login("u", PROJECT_TOKEN)
            client.mail("sender@acme.test")
            for rcpt in rcpts:
                client.rcpt(rcpt)
            code, reply = client.data(message)
        assert code == 250, reply
        return reply.decode().rsplit("queued as ", 1)[1].split()

    def click(self, link: str, address: str) -> int:
        """A browser's GET of a tracked link from ``address`` (through the trusted proxy
        on 127.0.0.1); the answer's status, or 0 when the node did not answer (blocking)."""
        parts = urlsplit(link)
        headers = {"Host": parts.netloc, "User-Agent": CHROME, **BROWSER_HEADERS,
                   "X-Forwarded-For": address}
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            connection.request("GET", parts.path, headers=headers)
            return connection.getresponse().status
        except OSError:
            return 0
        finally:
            connection.close()

    async def api(self, method: str, path: str, body: Any = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        """A request to the node's API with the team token (the send API's token when
        ``headers`` gives it); the status, the headers and the decoded JSON."""
        sent = {"Authorization": f"Bearer {TEAM_TOKEN}", **(headers or {})}
        url = f"http://127.0.0.1:{self.http_port}{path}"
        async with aiohttp.ClientSession() as session, session.request(
                method, url, data=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json", **sent}) as answer:
            return answer.status, dict(answer.headers), await answer.json()

    async def send_api(self, body: dict[str, Any], key: str) -> tuple[int, dict[str, str], Any]:
        """POST /v1/send with ``Idempotency-Key: key``."""
        return await self.api("POST", "/v1/send", body,
                              {"x-lettermint-token": PROJECT_TOKEN, "Idempotency-Key": key})


def running(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that still run (a zombie no one reaps has ended)."""
    return {pid for pid in pids if (stat := _stat(pid)) and stat[0] != "Z"}


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (state, parent, …)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return None


def message_id_of(copy: Received) -> str:
    """The copy's id, from the token of its first tracked link."""
    link = links_in(copy.content)[0]
    return verify_token(link.rsplit("/c/", 1)[1], [K1]).message_id


def copies_by_id(received: Iterable[Received]) -> Counter[str]:
    """How many times each tracked copy reached the sink."""
    return Counter(message_id_of(r) for r in received)


def with_subject(received: Iterable[Received], subject: str) -> list[Received]:
    marker = f"Subject: {subject}\r\n".encode()
    return [r for r in received if marker in r.content]


@contextlib.asynccontextmanager
async def shared_store(url: str) -> AsyncIterator[Store]:
    """The nodes' store, opened by the test to look at what they wrote."""
    store = await Store.open(url)
    try:
        yield store
    finally:
        await store.close()


async def drained(store: Store) -> bool:
    """Nothing pending and nothing claimed in any queue: no node has work left to do, so
    nothing more reaches the sink or the receiver."""
    return all(q.pending == 0 and q.claimed == 0 for q in await store.queue_states())
