"""The webhook body's fast parts (tracker/webhooks/events.py) against the plain
computations they replace: the ISO timestamp made from a cached second, and the body
written by orjson (or, for what orjson refuses, the standard library) against
``json.dumps`` of the dataclasses field by field."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tracker.webhooks.events import (
    Bot,
    ClickEvent,
    Envelope,
    envelope_body,
    iso_timestamp,
)

# datetime's range, in microseconds since the epoch
FIRST = int(datetime(1, 1, 2, tzinfo=UTC).timestamp()) * 1_000_000
LAST = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp()) * 1_000_000


def _plain_timestamp(us: int) -> str:
    moment = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.one_of(st.integers(FIRST, LAST),
                 st.integers(1_600_000_000_000_000, 1_900_000_000_000_000)))
def test_timestamp_as_datetime_writes_it(us: int) -> None:
    assert iso_timestamp(us) == _plain_timestamp(us)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return dict(value)


# any code point, lone surrogates included (which orjson refuses: the body is then
# written by the standard library)
_text = st.text(st.characters(exclude_categories=()), max_size=12)
_maybe = st.none() | _text
_bots = st.builds(Bot, detected=st.booleans(), probability=st.integers(0, 100),
                  classification=_text, proxy_type=_maybe,
                  reason_codes=st.tuples(_text, _text), machine=st.booleans(),
                  counts_for_metrics=st.booleans())
_clicks = st.builds(
    ClickEvent, message_id=_text, subject=_maybe,
    metadata=st.dictionaries(_text, _text, max_size=3), tag=_maybe, recipient=_maybe,
    clicked_at=_text, destination_url=_text,
    link_index=st.integers(-1, 50) | st.integers(2**63, 2**80),  # beyond 64 bits: refused
    anchor_text=_maybe, first_click=st.booleans(), device_type=_maybe, client_type=_maybe,
    client_name=_maybe, user_agent=_maybe, bot=_bots)


@given(_clicks, _text)
def test_body_as_field_by_field_encoding_writes_it(data: ClickEvent, delivery: str) -> None:
    envelope = Envelope(delivery, "message.clicked", "2026-01-01T00:00:00.000Z", data)
    expected = json.dumps({"id": delivery, "event": "message.clicked",
                           "timestamp": "2026-01-01T00:00:00.000Z", "data": data},
                          ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=_plain)
    assert envelope_body(envelope) == expected
