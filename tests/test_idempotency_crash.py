"""A send API key survives a crash (docs/api.md, Idempotency): a real ``clickrelay serve``
is killed (SIGKILL, injected at the store) just before it spools a keyed mail, or just
after, and started again on the same data. The client's retry with the same key is sent
once: after a kill before the spool it is taken as new, after a kill after the spool it
gets the first answer back; it is never refused as "still being processed"."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from tests.conftest import PROJECT_TOKEN
from tests.test_serve_process import Server, wait_for

# `clickrelay serve` that kills itself at its first spool, before or after the commit.
DIES_AT_SPOOL = """
import os, signal, sys
from relay.cli import main
from store.mail import MailStore
spool = MailStore.spool_messages
async def spool_then_die(self, *args, **kwargs):
    if os.environ["DIE"] == "after":
        await spool(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
MailStore.spool_messages = spool_then_die
sys.exit(main(sys.argv[1:]))
"""

BODY = {"from": "a@acme.test", "to": ["r@example.org"], "subject": "Order 7",
        "html": '<p><a href="https://example.com/o/7">Your order</a></p>'}


class DyingServer(Server):
    program = ("-c", DIES_AT_SPOOL)


def post(server: Server) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request("POST", "/v1/send", body=json.dumps(BODY), headers={
            "Content-Type": "application/json", "x-lettermint-token": PROJECT_TOKEN,
            "Idempotency-Key": "order-7"})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("die", ["before", "after"])
def test_a_retry_after_a_crash_sends_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, die: str
) -> None:
    monkeypatch.setenv("DIE", die)
    dying = DyingServer(tmp_path)
    dying.start()
    assert dying.proc is not None
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        post(dying)  # the server dies while taking it: no answer
    assert dying.proc.wait(timeout=30) == -9

    server = Server(tmp_path)  # the same configuration and data, no fault
    server.start()
    assert server.proc is not None
    try:
        status, headers, body = post(server)
        assert status == 202, body
        assert json.loads(body)["status"] == "pending"
        assert (headers.get("Idempotent-Replayed") == "true") is (die == "after")
        assert len(server.delivered(1)) == 1
        status, headers, _ = post(server)  # and from now on, the same answer
        assert status == 202 and headers.get("Idempotent-Replayed") == "true"
        wait_for(lambda: server.outbox.is_dir())
        assert len(list(server.outbox.iterdir())) == 1
    finally:
        server.proc.kill()
        server.proc.wait()
