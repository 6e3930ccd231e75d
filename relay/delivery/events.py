"""What a delivery attempt tells the project's webhooks (docs/webhooks.md): a copy
accepted by the upstream is ``message.delivered``; a 4xx (or a connection that failed),
still to be retried, ``message.soft_bounced``; a 5xx ``message.hard_bounced``; retries
that ran out, or a copy refused before it was sent, ``message.failed``. The deliveries
are written in the transaction that records the attempt, and sent, signed and retried by
the dispatcher as clicks are. A delivery status notification has no events of its own."""

from __future__ import annotations

import re

from relay.config.load import Config
from store.mail import DELIVERED, TEMPORARY
from store.records import SpooledMessage
from store.webhooks import NewDelivery
from tracker.webhooks.events import (
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    MESSAGE_HARD_BOUNCED,
    MESSAGE_SOFT_BOUNCED,
    DeliveryEvent,
    SmtpResponse,
    deliveries_for,
    iso_timestamp,
)

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s*")
_CODE = re.compile(r"^([2-5]\d\d)[ -]?")


def event_of(outcome: str, code: int | None) -> str:
    if outcome == DELIVERED:
        return MESSAGE_DELIVERED
    if outcome == TEMPORARY:
        return MESSAGE_SOFT_BOUNCED
    return MESSAGE_HARD_BOUNCED if code is not None and 500 <= code < 600 else MESSAGE_FAILED


def delivery_deliveries(
    config: Config, message: SpooledMessage, outcome: str, code: int | None,
    detail: str | None, at: int,
) -> list[NewDelivery]:
    """The outbox entries of one attempt, one per webhook of the project that listens."""
    project = config.project_by_id(message.project_id)
    if project is None or message.notice_of is not None:
        return []
    event = event_of(outcome, code)
    hooks = [h for h in project.webhooks if h.enabled and event in h.events]
    if not hooks:
        return []
    if outcome == DELIVERED and code is None:
        code = 250  # the upstream's answer to DATA (only 250 is success)
    return deliveries_for(hooks, event, delivery_event(message, code, detail, at),
                          message.project_id, at)


def delivery_event(message: SpooledMessage, code: int | None, detail: str | None,
                   at: int) -> DeliveryEvent:
    text = _reply_text(detail, code)
    enhanced = _ENHANCED.match(text or "")
    return DeliveryEvent(
        message_id=message.id, subject=message.subject, metadata=dict(message.metadata),
        tag=message.tag, recipient=message.rcpt_to,
        response=SmtpResponse(code, enhanced.group(1) if enhanced else None, text),
        smtp_code=code, smtp_message=text, timestamp=iso_timestamp(at),
    )


def _reply_text(detail: str | None, code: int | None) -> str | None:
    """The reply's text without its code: ``detail`` is ``"550 5.1.1 No such user"``
    for a refusal, the DATA reply's text for a delivery, or the relay's own reason."""
    if detail is None:
        return None
    found = _CODE.match(detail)
    if code is not None and found and int(found.group(1)) == code:
        return detail[found.end() :]
    return detail
