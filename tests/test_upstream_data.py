"""The DATA the relay sends upstream (relay/delivery/upstream.py): made in a thread a slice at a
time, and the same bytes and SIZE as aiosmtplib's sendmail would send."""

from __future__ import annotations

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.delivery import upstream
from relay.delivery.upstream import wire_data

PIECES = [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\xff", b" "]


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(body=st.lists(st.sampled_from(PIECES), max_size=80).map(b"".join),
       slice_size=st.integers(1, 16))
def test_wire_data_is_aiosmtplibs(body: bytes, slice_size: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upstream, "WIRE_SLICE", slice_size)
        data, size = wire_data(body)
    normalized = normalize_message_line_endings(body)
    assert data == PERIOD_REGEX.sub(b"..", normalized) + b".\r\n"
    assert size == len(normalized)
