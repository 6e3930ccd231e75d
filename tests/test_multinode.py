"""Two real `clickrelay serve` nodes on one PostgreSQL schema, as behind a load balancer
(docs/deployment.md): each with its own file and ports, the same store, keys and projects,
one upstream sink and one webhook receiver. Mail submitted to both is delivered once per
copy; clicks on both are promoted once each, with one first click per message, and their
webhooks sent once; one idempotency key raced on both sends once; a route switched on one
node is in force on the other, across its restart; when one node is killed under load,
the other delivers and promotes everything that was acknowledged; and a webhook added to one
node's file first is not swept by the other, still on the old file."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from store.store import Store
from tests.api_helpers import email
from tests.clicking import HOOK_SECRET
from tests.conftest import wait_until
from tests.nodes import (
    HOOK,
    Node,
    copies_by_id,
    drained,
    message_id_of,
    running,
    shared_store,
    with_subject,
)
from tests.receiver import Receiver
from tests.redirecting import links_in
from tests.sink import Sink
from tests.test_crash import Traffic

MAILS_PER_NODE = 6
RECIPIENTS = [f"r{n}@example.org" for n in range(3)]
TWO_LINKS = ('<p><a href="https://example.com/one">One</a>'
             ' <a href="https://example.com/two">Two</a></p>')
SUBJECT = re.compile(rb"^Subject: (.*)\r$", re.M)


@pytest.fixture
async def nodes(pg_url: str, sink: Sink, receiver: Receiver, tmp_path: Path
                ) -> AsyncIterator[tuple[Node, Node]]:
    """Nodes A and B, started together (both migrate the empty schema at once)."""
    a, b = (Node(tmp_path / name, pg_url, sink, receiver) for name in ("a", "b"))
    try:
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        yield a, b
    finally:
        for node in (a, b):
            if node.proc is not None and node.proc.poll() is None:
                await asyncio.to_thread(node.stop)


@pytest.fixture
async def shared(pg_url: str) -> AsyncIterator[Store]:
    """The nodes' store, as the test reads it."""
    async with shared_store(pg_url) as opened:
        yield opened


async def test_mail_submitted_to_both_nodes_is_delivered_once_per_recipient_copy(
    nodes: tuple[Node, Node], sink: Sink, shared: Store
) -> None:
    def submit_all(node: Node) -> list[str]:
        return [copy for n in range(MAILS_PER_NODE)
                for copy in node.submit(f"{node.name} {n}", RECIPIENTS)]

    per_node = await asyncio.gather(*(asyncio.to_thread(submit_all, n) for n in nodes))
    queued = [copy for ids in per_node for copy in ids]
    assert len(set(queued)) == len(queued) == 2 * MAILS_PER_NODE * len(RECIPIENTS)

    await wait_until(lambda: drained(shared), timeout=60)
    assert copies_by_id(sink.received) == Counter(queued)  # each copy once, nothing else
    envelopes = Counter((_subject(r.content), r.rcpt_tos) for r in sink.received)
    assert envelopes == Counter({(f"{node.name} {n}", (rcpt,)): 1 for node in nodes
                                 for n in range(MAILS_PER_NODE) for rcpt in RECIPIENTS})


async def test_clicks_on_both_nodes_are_promoted_once_with_one_first_click_each(
    nodes: tuple[Node, Node], sink: Sink, receiver: Receiver, shared: Store
) -> None:
    a, b = nodes
    await asyncio.to_thread(a.submit, "Clicks A", RECIPIENTS, TWO_LINKS)
    await asyncio.to_thread(b.submit, "Clicks B", RECIPIENTS, TWO_LINKS)
    copies = await sink.wait_for(2 * len(RECIPIENTS))
    clicks: Counter[str] = Counter()
    for n, copy in enumerate(copies):
        # Each recipient clicks on one node, then on the other, then on the first again.
        first, second = (a, b) if n % 2 == 0 else (b, a)
        one, two = links_in(copy.content)
        address = f"198.51.100.{10 + n}"
        for node, link in ((first, one), (second, two), (first, one)):
            assert await asyncio.to_thread(node.click, link, address) == 302
            clicks[message_id_of(copy)] += 1

    await wait_until(lambda: drained(shared), timeout=60)
    delivery_ids = []
    for message_id, count in clicks.items():
        events = await shared.list_message_events(message_id, include_machine=True)
        observations = await shared.get_observations(message_id)
        assert len(observations) == count
        # Both nodes reduce the recipient's address to the same hash: one person to promotion.
        assert len({o.addr_hash for o in observations}) == 1
        assert sorted(e.observation_id for e in events) == sorted(o.id for o in observations)
        earliest = min(events, key=lambda e: (e.clicked_at, e.observation_id))
        assert [e.id for e in events if e.first_click] == [earliest.id], message_id
        for event in events:
            (delivery,) = await shared.deliveries_of_event(event.id)
            assert (delivery.status, delivery.attempts) == ("delivered", 1)
            delivery_ids.append(delivery.id)
    sent = Counter(r.payload["id"] for r in receiver.to(HOOK))
    assert sent == Counter(delivery_ids)  # each once, and no other


async def test_one_idempotency_key_raced_on_both_nodes_sends_once(
    nodes: tuple[Node, Node], sink: Sink, shared: Store
) -> None:
    a, b = nodes
    for n in range(6):
        body, key = email(subject=f"Race {n}", to=RECIPIENTS[:2]), f"race-{n}"
        answers = await asyncio.gather(a.send_api(body, key), b.send_api(body, key))
        statuses = sorted(status for status, _, _ in answers)
        assert statuses in ([202, 202], [202, 409]), answers
        accepted = [(headers, answer) for status, headers, answer in answers if status == 202]
        if len(accepted) == 2:  # the second came after the first's commit: a replay
            assert accepted[0][1] == accepted[1][1]
            assert sorted(h.get("Idempotent-Replayed", "") for h, _ in accepted) == ["", "true"]
        status, headers, again = await b.send_api(body, key)
        assert (status, headers.get("Idempotent-Replayed"), again) == (202, "true",
                                                                       accepted[0][1])

    await wait_until(lambda: drained(shared), timeout=60)
    for n in range(6):
        assert len(with_subject(sink.received, f"Race {n}")) == 2  # one mail, two copies


async def test_route_switched_on_one_node_is_in_force_on_the_other_and_across_its_restart(
    nodes: tuple[Node, Node], sink: Sink
) -> None:
    a, b = nodes
    route = "/v1/routes/acme-outgoing"
    await asyncio.to_thread(b.submit, "Before", RECIPIENTS[:1])
    (before,) = await wait_until(lambda: with_subject(sink.received, "Before"))
    assert links_in(before.content)

    status, _, _ = await a.api("PATCH", route, {"track_clicks": False})
    assert status == 200

    async def switched_on_b() -> bool:
        _, _, answer = await b.api("GET", route)
        return answer["settings"]["track_clicks"] is False

    await wait_until(switched_on_b, timeout=30)  # docs/deployment.md: within two seconds
    await asyncio.to_thread(b.submit, "After", RECIPIENTS[:1])
    (after,) = await wait_until(lambda: with_subject(sink.received, "After"))
    assert not links_in(after.content) and b"https://example.com/a" in after.content

    assert await asyncio.to_thread(b.stop) == 0
    await asyncio.to_thread(b.start)
    b_file = tomlkit.parse(b.path.read_text())
    assert b_file["projects"][0]["routes"][0]["track_clicks"] is True  # type: ignore[index]
    await asyncio.to_thread(b.submit, "Restarted", RECIPIENTS[:1])
    (restarted,) = await wait_until(lambda: with_subject(sink.received, "Restarted"))
    assert not links_in(restarted.content)


async def test_kill_9_of_one_node_under_load_leaves_the_other_to_finish_everything(
    nodes: tuple[Node, Node], sink: Sink, receiver: Receiver, shared: Store
) -> None:
    a, b = nodes
    loads = [Traffic(node.smtp_port, node.http_port, sink) for node in nodes]
    stop = threading.Event()
    for traffic in loads:
        traffic.stop = stop
    threads = [threading.Thread(target=t.mail, args=(n,)) for t in loads for n in range(2)]
    threads += [threading.Thread(target=t.click) for t in loads]
    for thread in threads:
        thread.start()
    try:
        # A killed with mail, clicks and webhooks in every state on both nodes.
        await wait_until(lambda: all(t.counts()[0] >= 10 and t.counts()[1] >= 5 for t in loads)
                         and receiver.requests, timeout=60)
        left_behind = a.children()
        assert left_behind  # its promotion process at least
        await asyncio.to_thread(a.kill)
        # B goes on under load for a while, A's claims still held.
        settled = loads[1].counts()[0] + 10
        await wait_until(lambda: loads[1].counts()[0] >= settled, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join)

    queued = {copy for t in loads for copy in t.queued}
    clicked = {message for t in loads for message in t.clicked}
    await wait_until(lambda: queued <= set(copies_by_id(sink.received)), timeout=60)
    await wait_until(lambda: drained(shared), timeout=60)  # A's claims lapsed, B took them
    for message_id in clicked:
        events = await shared.list_message_events(message_id, include_machine=True)
        assert events, message_id
        for event in events:
            assert [d.status for d in await shared.deliveries_of_event(event.id)] == ["delivered"]
    hooked = {r.payload["data"]["message_id"] for r in receiver.to(HOOK)}
    assert clicked <= hooked
    assert b.healthy()
    # A's promotion process saw its input close and gave its claims back; nothing of A runs.
    await wait_until(lambda: not running(left_behind), timeout=60)


async def test_a_webhook_added_on_one_node_first_is_not_swept_by_the_other(
    nodes: tuple[Node, Node], receiver: Receiver, shared: Store
) -> None:
    """A new file rolled out to the running nodes one at a time names a new webhook: A has
    it, and B, still on the old file, ends the deliveries of webhooks it does not know
    whenever its configuration changes, but not those of one noted after B read its file."""
    a, b = nodes
    held = receiver.hold("added")
    a.settings["projects"][0]["webhooks"].append(
        {"id": "added", "url": receiver.url("added"), "secret": HOOK_SECRET,
         "events": ["message.clicked"]})
    # One delivery at a time on A, waiting as long as it takes: held, it fills A's slot.
    a.settings["webhook_delivery"].update(concurrency=1, per_webhook_concurrency=1,
                                          timeout_seconds=120)
    a.write()
    assert a.proc is not None
    a.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: _status(a.api("GET", "/v1/webhooks/added"), 200))
    assert (await a.api("POST", "/v1/webhooks/added/test"))[0] == 200
    await wait_until(lambda: receiver.to("added"))  # in flight on A, its one slot taken

    # B's configuration changes (a route switched on A): B sweeps at its next round.
    route = "/v1/routes/acme-news"
    assert (await a.api("PATCH", route, {"track_clicks": True}))[0] == 200
    await wait_until(lambda: _switched(b.api("GET", route)), timeout=30)
    assert (await b.api("POST", f"/v1/webhooks/{HOOK}/test"))[0] == 200
    # Only B can deliver it, at a round after the change, once it has swept.
    await wait_until(lambda: receiver.to(HOOK), timeout=30)

    held.set()
    await wait_until(lambda: drained(shared), timeout=60)
    rows = await shared.db.fetchall(
        "SELECT status FROM webhook_deliveries WHERE webhook_id = 'added'")
    assert [r[0] for r in rows] == ["delivered"]


async def _status(answer: Awaitable[tuple[int, dict[str, str], Any]], wanted: int) -> bool:
    return (await answer)[0] == wanted


async def _switched(answer: Awaitable[tuple[int, dict[str, str], Any]]) -> bool:
    return bool((await answer)[2]["settings"]["track_clicks"])


def _subject(content: bytes) -> str:
    found = SUBJECT.search(content)
    assert found is not None
    return found.group(1).decode()
