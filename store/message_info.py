"""A copy as the API, promotion and the dashboard read it: the columns of ``messages``
they select first, and the MessageInfo made of them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from store.records import MessageInfo, MessageNames

INFO_COLUMNS = (
    "id, submission_id, project_id, route_id, mail_from, rcpt_to, subject, tag, metadata,"
    " track_clicks, created_at, status, attempts, next_attempt_at, last_error, finished_at,"
    " from_name, rcpt_name, reply_to, track_opens"
)
_COUNT = INFO_COLUMNS.count(",") + 1


def message_info(row: Iterable[Any]) -> MessageInfo:
    """A MessageInfo from a row that starts with INFO_COLUMNS (more columns may follow)."""
    values = list(row)[:_COUNT]
    values[8] = json.loads(values[8] or "{}")
    values[9] = bool(values[9])
    from_name, rcpt_name, reply_to, track_opens = values[16:]
    values[16:] = [MessageNames(from_name, rcpt_name, tuple(json.loads(reply_to or "[]"))),
                   bool(track_opens)]
    return MessageInfo(*values)
