"""Delivery status notifications (RFC 3464): what a sender is told when a copy of its mail
fails for good (docs/mail.md, "Delivery").

A notification is a ``multipart/report; report-type=delivery-status`` from the null
sender to the copy's envelope sender: an explanation, the ``message/delivery-status``
fields (``Final-Recipient``, ``Action: failed``, the ``5.x.x`` status, the upstream's
reply) and the copy's headers (``text/rfc822-headers``). It is spooled as a copy of its
own, in the transaction that records the failure, and delivered through the same
upstream. None is made for a mail from the null sender (a notification itself, RFC 5321
§4.5.5), for a report, or on a route with ``bounce_notifications = false``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formatdate, make_msgid

from relay.delivery.upstream import NULL_SENDER, is_null_sender
from relay.message.headers import entity_bounds, get_value, parse_fields
from store.ids import new_id
from store.records import NewMessage, SpooledMessage

SUBJECT = "Undelivered Mail Returned to Sender"
# RFC 3463: an enhanced status code in the upstream's reply; when it gives none, the
# class of the failure (X.0.0), and for retries that ran out, "delivery time expired".
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
STATUS_PERMANENT = "5.0.0"
STATUS_EXPIRED = "5.4.7"


@dataclass(frozen=True)
class Failure:
    """Why a copy failed for good."""

    detail: str  # the upstream's reply, or clickrelay's reason
    code: int | None  # the upstream's reply code, when it answered
    expired: bool  # retries ran out ([upstream] max_retry_hours)
    status: str | None = None  # an enhanced status the relay itself chose


def wants_notice(message: SpooledMessage, enabled: bool) -> bool:
    """Whether a copy that failed for good is told to its sender."""
    return (enabled and message.notice_of is None and not is_null_sender(message.mail_from)
            and not _is_report(message.body))


def notice_for(message: SpooledMessage, failure: Failure, *, reporting_mta: str,
               remote_mta: str | None, at: int) -> NewMessage:
    """The notification of ``message``'s failure, as a copy ready to be spooled."""
    body = build_notification(message, failure, reporting_mta=reporting_mta,
                              remote_mta=remote_mta, at=at)
    return NewMessage(
        id=new_id(), submission_id=new_id(), project_id=message.project_id,
        route_id=message.route_id, mail_from=NULL_SENDER, rcpt_to=message.mail_from,
        subject=SUBJECT, tag=None, metadata={}, track_clicks=False, created_at=at, body=body,
        notice_of=message.id,
    )


def build_notification(message: SpooledMessage, failure: Failure, *, reporting_mta: str,
                       remote_mta: str | None, at: int) -> bytes:
    when = format_datetime(datetime.fromtimestamp(at / 1_000_000, UTC))
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = message.mail_from
    report["Subject"] = SUBJECT
    report["Date"] = formatdate(at / 1_000_000)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: never to be answered
    report.attach(MIMEText(_explanation(message, failure, reporting_mta), "plain", "utf-8"))
    report.attach(_delivery_status(message, failure, reporting_mta, remote_mta, when))
    report.attach(_headers_part(message.body))
    utf8 = not (message.mail_from.isascii() and message.rcpt_to.isascii())
    return report.as_bytes(policy=email_policy.SMTPUTF8 if utf8 else email_policy.SMTP)


def status_of(failure: Failure) -> str:
    """The enhanced status code of the failure: the upstream's own when its reply has a
    permanent one, else what the relay chose, else the class of the failure."""
    found = _STATUS.search(failure.detail)
    if found and found.group(1) == "5":
        return found.group(0)
    if failure.status is not None:
        return failure.status
    return STATUS_EXPIRED if failure.expired else STATUS_PERMANENT


def _explanation(message: SpooledMessage, failure: Failure, reporting_mta: str) -> str:
    why = ("It could not be delivered before the relay stopped trying."
           if failure.expired else "The receiving side refused it for good.")
    return (f"This is the mail system at host {reporting_mta}.\n\n"
            f"Your message to <{message.rcpt_to}> could not be delivered. {why}\n\n"
            f"    {failure.detail}\n\n"
            "The headers of your message are attached.\n")


def _delivery_status(message: SpooledMessage, failure: Failure, reporting_mta: str,
                     remote_mta: str | None, when: str) -> Message:
    """The ``message/delivery-status`` part: per-message fields, then the recipient's."""
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    per_message["X-Clickrelay-Message-ID"] = message.id
    per_message["Arrival-Date"] = format_datetime(
        datetime.fromtimestamp(message.created_at / 1_000_000, UTC))
    recipient = Message()
    address_type = "rfc822" if message.rcpt_to.isascii() else "utf-8"  # RFC 6533
    recipient["Final-Recipient"] = f"{address_type}; {message.rcpt_to}"
    recipient["Action"] = "failed"
    recipient["Status"] = status_of(failure)
    if remote_mta is not None and failure.code is not None:
        recipient["Remote-MTA"] = f"dns; {remote_mta}"
    if failure.code is not None:
        recipient["Diagnostic-Code"] = f"smtp; {' '.join(failure.detail.split())}"
    else:
        recipient["Diagnostic-Code"] = f"x-clickrelay; {' '.join(failure.detail.split())}"
    recipient["Last-Attempt-Date"] = when
    part = MIMENonMultipart("message", "delivery-status")
    part.set_payload([per_message, recipient])
    return part


def _headers_part(body: bytes) -> MIMENonMultipart:
    """The copy's header block (``text/rfc822-headers``, RFC 6522 §4)."""
    header_end, _ = entity_bounds(body)
    header = body[:header_end].decode("utf-8", "replace").replace("\r\n", "\n")
    part = MIMENonMultipart("text", "rfc822-headers")
    part.set_payload(header, "us-ascii" if header.isascii() else "utf-8")
    return part


def _is_report(body: bytes) -> bool:
    """The copy is itself a report (a notification relayed with a sender of its own)."""
    header_end, _ = entity_bounds(body)
    content_type = get_value(parse_fields(body[:header_end]), "Content-Type") or ""
    return content_type.split(";")[0].strip().lower() == "multipart/report"
