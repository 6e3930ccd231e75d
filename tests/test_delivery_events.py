"""Delivery events as Lettermint sends them (docs/webhooks.md): ``message.delivered``,
``.soft_bounced``, ``.hard_bounced`` and ``.failed``, signed and retried by the dispatcher,
checked with the official SDK's ``Webhook.verify``; and shown in the message's events."""

from __future__ import annotations

from typing import Any

import pytest

from relay.server import Running
from tests.api_helpers import http
from tests.clicking import HOOK_SECRET
from tests.conftest import TEAM_TOKEN, finished, send, simple_message, wait_until
from tests.receiver import Receiver, verified
from tests.sink import Sink
from tracker.webhooks.events import DELIVERY_EVENTS

pytestmark = pytest.mark.usefixtures("both_stores")

METADATA = "X-LM-Tag: receipts\r\nX-LM-Metadata-order: 42\r\n"


@pytest.fixture
def delivery_hook(settings: dict[str, Any], receiver: Receiver) -> None:
    """A webhook for the delivery events only (``usefixtures``, before ``relay``)."""
    settings["projects"][0]["webhooks"] = [
        {"id": "deliveries", "url": receiver.url("deliveries"), "secret": HOOK_SECRET,
         "events": list(DELIVERY_EVENTS)}]
    settings["webhook_delivery"] = {"retry_initial_seconds": 0.01}


async def events_received(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    requests = await wait_until(lambda: len(receiver.to("deliveries")) >= count
                                and receiver.to("deliveries"))
    return [verified(r, HOOK_SECRET) for r in requests]


async def queued_id(relay: Running) -> str:
    rows = await wait_until(lambda: relay.store.db.fetchall(
        "SELECT id FROM messages WHERE notice_of IS NULL"))
    return str(rows[0]["id"])


@pytest.mark.usefixtures("delivery_hook")
async def test_delivered_copy_sends_message_delivered(
    relay: Running, sink: Sink, receiver: Receiver
) -> None:
    await send(relay.smtp_port, simple_message(headers=METADATA, subject="Receipt"))
    message_id = await queued_id(relay)
    (payload,) = await events_received(receiver, 1)
    assert payload["event"] == "message.delivered"
    data = payload["data"]
    assert data == {
        "message_id": message_id, "subject": "Receipt", "metadata": {"order": "42"},
        "tag": "receipts", "recipient": "rcpt@example.org",
        "response": {"status_code": 250, "enhanced_status_code": "2.0.0",
                     "content": "2.0.0 OK sink"},
        "smtp_code": 250, "smtp_message": "2.0.0 OK sink", "timestamp": data["timestamp"],
    }
    assert receiver.to("deliveries")[0].headers["X-Lettermint-Event"] == "message.delivered"


@pytest.mark.usefixtures("delivery_hook")
async def test_soft_then_hard_bounce(relay: Running, sink: Sink, receiver: Receiver) -> None:
    sink.fail("RCPT", "451 4.2.1 mailbox busy")
    sink.fail("RCPT", "550 5.1.1 no such user")
    await send(relay.smtp_port, simple_message())
    message_id = await queued_id(relay)
    await finished(relay, message_id)
    soft, hard = sorted(await events_received(receiver, 2),
                        key=lambda p: p["event"] != "message.soft_bounced")
    assert soft["event"] == "message.soft_bounced"
    assert (soft["data"]["smtp_code"], soft["data"]["smtp_message"]) == (451,
                                                                           "4.2.1 mailbox busy")
    assert hard["event"] == "message.hard_bounced"
    assert hard["data"]["message_id"] == message_id
    assert hard["data"]["response"] == {"status_code": 550, "enhanced_status_code": "5.1.1",
                                        "content": "5.1.1 no such user"}
    # The notification sent to the sender has no events of its own.
    (notice,) = await relay.store.db.fetchall("SELECT id FROM messages WHERE notice_of IS NOT NULL")
    assert (await finished(relay, notice["id"])).status == "delivered"
    assert len(await relay.store.db.fetchall("SELECT id FROM webhook_deliveries")) == 2


@pytest.fixture
def no_retries(settings: dict[str, Any]) -> None:
    settings["upstream"]["max_retry_hours"] = 0.0000001  # the first retry is already too late


@pytest.mark.usefixtures("delivery_hook", "no_retries")
async def test_retries_that_run_out_send_message_failed(
    relay: Running, sink: Sink, receiver: Receiver
) -> None:
    sink.fail("RCPT", "451 4.2.1 mailbox busy")
    await send(relay.smtp_port, simple_message())
    message_id = await queued_id(relay)
    assert (await finished(relay, message_id)).status == "failed"
    (payload,) = await events_received(receiver, 1)
    assert payload["event"] == "message.failed"
    assert payload["data"]["smtp_code"] == 451
    assert await api_events(relay, message_id) == ["queued", "failed"]  # as the webhook


async def api_events(relay: Running, message_id: str) -> list[str]:
    status, _, body = await http(relay, "GET", f"/v1/messages/{message_id}/events",
                                 headers={"Authorization": f"Bearer {TEAM_TOKEN}"})
    assert status == 200
    return [e["event"] for e in body["data"]]


async def test_message_events_show_each_attempt(relay: Running, sink: Sink) -> None:
    sink.fail("RCPT", "451 4.2.1 mailbox busy")
    await send(relay.smtp_port, simple_message())
    message_id = await queued_id(relay)
    await finished(relay, message_id)
    assert await api_events(relay, message_id) == ["queued", "soft_bounced", "delivered"]
