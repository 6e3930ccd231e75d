"""A copy that fails for good is told to its sender (docs/mail.md, "Delivery"): an RFC 3464
delivery status notification from the null sender, through the same upstream."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import pytest

from relay.server import Running
from tests.api_helpers import http
from tests.conftest import TEAM_TOKEN, finished, send, simple_message, wait_until
from tests.sink import Received, Sink

pytestmark = pytest.mark.usefixtures("both_stores")


def report_of(notice: Received) -> tuple[Message, Message, Message]:
    """The notification as Python's email package reads it: the report, its per-message
    fields and its recipient's fields."""
    report = email.message_from_bytes(notice.content, policy=email.policy.compat32)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    explanation, status, headers = report.get_payload()
    assert explanation.get_content_type() == "text/plain"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert status.get_content_type() == "message/delivery-status"
    per_message, recipient = status.get_payload()
    return report, per_message, recipient


def iso_day() -> str:
    return datetime.now(UTC).date().isoformat()


async def only_copy(relay: Running) -> str:
    rows = await wait_until(lambda: relay.store.db.fetchall("SELECT id FROM messages"))
    return str(rows[0]["id"])


async def test_permanent_refusal_sends_a_notification_to_the_sender(
    relay: Running, sink: Sink
) -> None:
    sink.fail("RCPT", "550 5.1.1 <rcpt@example.org>: Recipient address rejected")
    await send(relay.smtp_port, simple_message(subject="Invoice 7"), mail_from="app@acme.test")
    (notice,) = await sink.wait_for(1)
    assert (notice.mail_from, notice.rcpt_tos) == ("<>", ("app@acme.test",))
    report, per_message, recipient = report_of(notice)
    assert report["To"] == "app@acme.test"
    assert report["Auto-Submitted"] == "auto-replied"
    assert per_message["Reporting-MTA"] == "dns; relay.test"
    assert recipient["Final-Recipient"] == "rfc822; rcpt@example.org"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == "dns; 127.0.0.1"
    assert "550 5.1.1" in recipient["Diagnostic-Code"]
    headers = report.get_payload()[2].get_payload()
    assert "Subject: Invoice 7" in headers
    day = iso_day()
    status, _, stats = await http(relay, "GET", f"/v1/stats?from={day}&to={day}",
                                  headers={"Authorization": f"Bearer {TEAM_TOKEN}"})
    assert status == 200  # the notification is not counted as mail the project sent
    assert (stats["totals"]["sent"], stats["totals"]["hard_bounced"]) == (1, 1)
    notice_row = await relay.store.db.fetchone(
        "SELECT notice_of, status FROM messages WHERE mail_from = '<>'")
    assert notice_row is not None and notice_row["notice_of"] == per_message[
        "X-Clickrelay-Message-ID"]


async def test_retries_that_run_out_are_told_as_expired(
    settings: dict[str, Any], config_path: Any, sink: Sink
) -> None:
    from relay.server import running
    from tests.conftest import write_config

    settings["upstream"]["max_retry_hours"] = 0.0000001  # the first retry is already too late
    async with running(write_config(config_path, settings)) as relay:
        sink.fail("RCPT", "451 4.2.0 try later")
        await send(relay.smtp_port, simple_message(), mail_from="app@acme.test")
        (notice,) = await sink.wait_for(1)
    _, _, recipient = report_of(notice)
    assert recipient["Status"] == "5.4.7"
    assert recipient["Final-Recipient"] == "rfc822; rcpt@example.org"


async def refused_without_notice(relay: Running, sink: Sink, mail_from: str) -> None:
    sink.fail("RCPT", "550 5.1.1 no such user")
    await send(relay.smtp_port, simple_message(), mail_from=mail_from)
    message = await finished(relay, await only_copy(relay))
    assert message.status == "failed"
    # A notification would have been spooled with the failure, in one transaction.
    assert len(await relay.store.db.fetchall("SELECT id FROM messages")) == 1


async def test_a_null_sender_never_gets_a_notification(relay: Running, sink: Sink) -> None:
    await refused_without_notice(relay, sink, "<>")


@pytest.fixture
def quiet_route(settings: dict[str, Any]) -> None:
    settings["projects"][0]["routes"][0]["bounce_notifications"] = False


@pytest.mark.usefixtures("quiet_route")
async def test_a_route_may_turn_notifications_off(relay: Running, sink: Sink) -> None:
    await refused_without_notice(relay, sink, "app@acme.test")


async def test_a_notification_that_fails_gets_none_of_its_own(
    relay: Running, sink: Sink
) -> None:
    sink.fail("RCPT", "550 5.1.1 no such user", times=2)  # the copy, then its notification
    await send(relay.smtp_port, simple_message(), mail_from="app@acme.test")

    async def both_failed() -> bool:
        rows = await relay.store.db.fetchall("SELECT status FROM messages")
        return len(rows) == 2 and all(r["status"] == "failed" for r in rows)

    await wait_until(both_failed)
    assert len(await relay.store.db.fetchall("SELECT id FROM messages")) == 2
    assert sink.received == []


async def test_a_notification_that_cannot_be_made_does_not_stop_the_record(
    relay: Running, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.delivery import worker

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(worker, "notice_for", broken)
    sink.fail("RCPT", "550 5.1.1 no such user")
    await send(relay.smtp_port, simple_message(), mail_from="app@acme.test")
    message = await finished(relay, await only_copy(relay))
    assert message.status == "failed"
    assert len(await relay.store.delivery_attempts(message.id)) == 1
    assert len(await relay.store.db.fetchall("SELECT id FROM messages")) == 1
