"""Outages: an upstream MTA that is down, answers 421 or hangs keeps the mail waiting in
the spool until it comes back; a webhook receiver that hangs holds up neither another
webhook's deliveries nor the redirect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from tests.clicking import click_as_person, send_tracked
from tests.conftest import finished, send, simple_message, wait_until, write_config
from tests.receiver import Receiver
from tests.silent import Silent
from tests.sink import Sink


async def only_message_id(relay: Running) -> str:
    [message] = await wait_until(lambda: relay.store.list_queued())
    return str(message.id)


async def temporary_attempts(relay: Running, message_id: str, count: int) -> list[Any]:
    async def enough() -> list[Any] | None:
        attempts = await relay.store.delivery_attempts(message_id)
        return attempts if len(attempts) >= count else None

    attempts: list[Any] = await wait_until(enough)
    assert all(a.outcome == "temporary" for a in attempts)
    return attempts


@pytest.fixture
async def quick(tmp_path: Path, settings: dict[str, Any]) -> AsyncIterator[Running]:
    """A relay that retries soon: backoff from a hundredth of a second."""
    settings["upstream"]["retry_initial_seconds"] = 0.01
    async with running(write_config(tmp_path / "clickrelay.toml", settings)) as r:
        yield r


async def test_mail_waits_while_the_upstream_is_down_or_busy_then_goes_out(
    quick: Running, sink: Sink
) -> None:
    relay = quick
    port = sink.port
    await sink.stop()  # connections refused
    await send(relay.smtp_port, simple_message())
    message_id = await only_message_id(relay)
    await temporary_attempts(relay, message_id, 2)
    sink.fail("MAIL", "421 4.3.2 service not available, closing channel", times=2)
    await sink.start(port)
    message = await finished(relay, message_id)
    assert message.status == "delivered"
    assert len(await sink.wait_for(1)) == 1
    attempts = await relay.store.delivery_attempts(message_id)
    assert [a.code for a in attempts if a.code == 421] == [421, 421]
    assert [a.outcome for a in attempts][-1] == "delivered"


async def test_mail_waits_while_the_upstream_hangs_then_goes_out(
    tmp_path: Path, settings: dict[str, Any], silent: Silent
) -> None:
    settings["upstream"] = {"url": f"smtp://127.0.0.1:{silent.port}",
                            "timeout_seconds": 0.2, "retry_initial_seconds": 0.01}
    async with running(write_config(tmp_path / "clickrelay.toml", settings)) as relay:
        await send(relay.smtp_port, simple_message())
        message_id = await only_message_id(relay)
        await temporary_attempts(relay, message_id, 2)
        assert silent.connections >= 2
        await silent.stop()
        sink = Sink()
        await sink.start(silent.port)  # the upstream answers again, on the same address
        try:
            message = await finished(relay, message_id)
            assert message.status == "delivered"
            assert len(await sink.wait_for(1)) == 1
        finally:
            await sink.stop()


@pytest.fixture
async def two_hooks(tmp_path: Path, settings: dict[str, Any], receiver: Receiver
                    ) -> AsyncIterator[Running]:
    settings["projects"][0]["webhooks"] = [
        {"id": name, "url": receiver.url(name), "secret": "whsec_outage_0123456789",
         "events": ["message.clicked"], "include_machine_events": True}
        for name in ("slow", "fast")
    ]
    settings["webhook_delivery"] = {"retry_initial_seconds": 0.01, "timeout_seconds": 0.2}
    async with running(write_config(tmp_path / "clickrelay.toml", settings)) as r:
        yield r


async def test_a_hanging_webhook_holds_up_neither_other_webhooks_nor_the_redirect(
    two_hooks: Running, sink: Sink, receiver: Receiver
) -> None:
    hold = receiver.hold("slow")
    [sent] = await send_tracked(two_hooks, sink, '<a href="https://example.com/a">A</a>')
    clicks = 6
    for n in range(clicks):
        answer = await click_as_person(two_hooks, sent.links[0],
                                       **{"X-Forwarded-For": f"198.51.100.{n + 1}"})
        assert answer.status == 302
        assert answer.headers["Location"] == "https://example.com/a"

    def ids(hook: str) -> set[str]:
        return {r.payload["id"] for r in receiver.to(hook)}

    await wait_until(lambda: len(ids("fast")) == clicks)
    assert not hold.is_set()  # every fast delivery went out while the slow one hung
    await wait_until(lambda: receiver.to("slow"))
    hold.set()
    await wait_until(lambda: len(ids("slow")) == clicks)
