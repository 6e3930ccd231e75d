"""Promotion of observations to events (docs/classification.md): the settle window, the context the
classifier gets (bursts, all links, fan-out, honeypot), ``first_click``, the outbox rows
written with the event, and atomic claiming by several workers on one database. The
worker runs against a real SQLite store with a clock the test sets; one test goes through
the running relay over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running
from store.dialect import SQLITE
from store.events import EventRecord, _claim, _mark_done
from store.records import LinkRecord, NewMessage, Observation, SharedBody
from store.store import Store
from tests.clicking import CHROME, click_as_person, events_of, probe_as_scanner, send_tracked
from tests.conftest import sqlite_plan
from tests.sink import Sink
from tracker.classify.rules import DEFAULT_RULES
from tracker.config import ProjectConfig, WebhookConfig
from tracker.metrics import Metrics
from tracker.promote import WRITE_CHUNK, PromotionWorker
from tracker.promotion_report import metrics_report
from tracker.webhooks.events import HONEYPOT_LINK_INDEX

S = 1_000_000  # microseconds
T0 = 1_900_000_000 * S
HONEYPOT = HONEYPOT_LINK_INDEX
BROWSER = {"accept": "text/html", "accept-language": "en", "sec-fetch-mode": "navigate"}
HOOKS = (WebhookConfig("people", "http://127.0.0.1:9/people", "whsec_x"),
         WebhookConfig("everything", "http://127.0.0.1:9/all", "whsec_x",
                       include_machine_events=True))


@dataclass(frozen=True)
class View:
    projects: tuple[ProjectConfig, ...] = (
        ProjectConfig("acme", "acme1", "token", webhooks=HOOKS),)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now



def worker(store: Any, clock: Clock, metrics: Metrics | None = None,
           batch: int = 100) -> PromotionWorker:
    return PromotionWorker(View, store, metrics_report(metrics or Metrics()),
                           lambda: DEFAULT_RULES, clock=clock, batch=batch)


async def message(store: Store, links: int = 5, *, honeypot: bool = False,
                  sent: int = T0 - 3600 * S) -> str:
    message_id = str(uuid.uuid4())
    records = [LinkRecord(i, f"https://example.com/{i}", f"Link {i}") for i in range(links)]
    if honeypot:
        records.append(LinkRecord(HONEYPOT, "http://pacme1.t.localhost/", "", honeypot=True))
    await store.spool_messages([NewMessage(
        id=message_id, submission_id=str(uuid.uuid4()), project_id="acme",
        route_id="acme-outgoing", mail_from="a@acme.test", rcpt_to=f"{message_id}@example.org",
        subject="Hi", tag=None, metadata={}, track_clicks=True, created_at=sent, body=b"x",
        links=tuple(records))])
    return message_id


async def observe(store: Store, message_id: str, link: int, at: int, *,
                  method: str = "GET", agent: str = CHROME, addr: str = "addr-1",
                  settle: int = 10 * S) -> None:
    await store.record_observations([Observation(
        message_id=message_id, link_index=link, destination=f"https://example.com/{link}",
        project_sid="acme1", at=at, method=method, user_agent=agent, headers=dict(BROWSER),
        network=None, addr_hash=addr, promote_after=at + settle)])


async def promoted(store: Store, message_id: str) -> list[EventRecord]:
    return await store.list_message_events(message_id, include_machine=True)


async def test_an_observation_waits_for_its_settle_window(store: Store) -> None:
    m = await message(store)
    await observe(store, m, 0, T0)
    clock = Clock(T0 + 10 * S - 1)
    w = worker(store, clock)
    assert await w.promote_due() == 0
    clock.now += 1
    assert await w.promote_due() == 1
    [event] = await promoted(store, m)
    assert (event.classification, event.machine, event.first_click) == ("genuine", False, True)
    assert await w.promote_due() == 0  # promoted once, never again


async def test_three_distinct_links_within_three_seconds_are_a_burst(store: Store) -> None:
    m = await message(store)
    for i, offset in enumerate((0, 1.2 * S, 2.4 * S)):
        await observe(store, m, i, T0 + int(offset))
    await worker(store, Clock(T0 + 60 * S)).promote_due()
    events = await promoted(store, m)
    assert [e.machine for e in events] == [True, True, True]
    assert all("burst" in e.rules and "timing" in e.reason_codes for e in events)
    assert {e.classification for e in events} == {"security_scanner"}


async def test_more_than_two_hits_within_a_second_are_machine(store: Store) -> None:
    m = await message(store)
    for offset in (0, 300_000, 600_000):
        await observe(store, m, 0, T0 + offset)
    await worker(store, Clock(T0 + 60 * S)).promote_due()
    events = await promoted(store, m)
    assert all(e.machine and "rapid_hits" in e.rules for e in events)


async def test_clicks_a_person_spreads_out_stay_genuine(store: Store) -> None:
    m = await message(store)
    for i in range(3):
        await observe(store, m, i, T0 + i * 20 * S)
    await worker(store, Clock(T0 + 120 * S)).promote_due()
    events = await promoted(store, m)
    assert [e.classification for e in events] == ["genuine"] * 3
    assert [e.first_click for e in events] == [True, False, False]


async def test_every_link_of_a_message_hit_is_a_link_pattern(store: Store) -> None:
    m = await message(store, links=3)
    for i in range(3):
        await observe(store, m, i, T0 + i * 10 * S)
    await worker(store, Clock(T0 + 120 * S)).promote_due()
    events = await promoted(store, m)
    assert "all_links" in events[-1].rules and "link_pattern" in events[-1].reason_codes


async def test_the_copies_of_a_shared_body_have_their_submissions_links(store: Store) -> None:
    # Copies that share one body keep their links once, with the submission: what is
    # counted (the honeypot not) and what is clicked is read from there.
    submission = str(uuid.uuid4())
    body = SharedBody(submission, (b"Subject: Hi\r\n\r\nclick ", b"\r\n"))
    links = (*(LinkRecord(i, f"https://example.com/{i}", f"Link {i}") for i in range(3)),
             LinkRecord(HONEYPOT, "http://pacme1.t.localhost/", "", honeypot=True))
    first, second = (str(uuid.uuid4()) for _ in range(2))
    await store.spool_messages([NewMessage(
        id=m, submission_id=submission, project_id="acme", route_id="acme-outgoing",
        mail_from="a@acme.test", rcpt_to=f"{m}@example.org", subject="Hi", tag=None,
        metadata={}, track_clicks=True, created_at=T0 - 3600 * S, body=b"", links=links,
        shared=body, fills=(m.encode(),)) for m in (first, second)])
    for i in range(3):
        await observe(store, second, i, T0 + i * 10 * S)
    await observe(store, first, 1, T0 + 200 * S, addr="addr-2")
    await worker(store, Clock(T0 + 300 * S)).promote_due()
    events = await promoted(store, second)
    assert "all_links" in events[-1].rules  # three links a person can click, all clicked
    [lone] = await promoted(store, first)
    assert "all_links" not in lone.rules
    [delivery, _] = await store.deliveries_of_event(lone.id)
    assert '"anchor_text":"Link 1"' in delivery.body


async def test_one_address_across_recipients_is_a_fan_out(store: Store) -> None:
    messages = [await message(store) for _ in range(4)]
    for n, m in enumerate(messages):
        await observe(store, m, 0, T0 + n * 5 * S, addr="shared-gateway")
    lone = await message(store)
    await observe(store, lone, 0, T0, addr="someone-else")
    await worker(store, Clock(T0 + 120 * S)).promote_due()
    [last] = await promoted(store, messages[-1])
    assert "fanout" in last.rules
    [other] = await promoted(store, lone)
    assert "fanout" not in other.rules


async def test_a_honeypot_hit_marks_nearby_clicks_and_has_no_event(store: Store) -> None:
    m = await message(store, links=2, honeypot=True)
    await observe(store, m, HONEYPOT, T0, agent="Mozilla/5.0 (compatible; Scanner)")
    await observe(store, m, 0, T0 + 2 * S)
    metrics = Metrics()
    await worker(store, Clock(T0 + 60 * S), metrics).promote_due()
    [event] = await promoted(store, m)
    assert event.link_index == 0 and event.machine and "near_honeypot" in event.rules
    assert all(o.state == "done" for o in await store.get_observations(m))
    assert metrics.honeypot_hits._value.get() == 1


async def test_first_click_counts_people_and_machines_apart(store: Store) -> None:
    m = await message(store)
    await observe(store, m, 0, T0, method="HEAD", addr="gateway")
    await observe(store, m, 1, T0 + 30 * S)
    await observe(store, m, 1, T0 + 60 * S)
    await observe(store, m, 2, T0 + 90 * S, method="HEAD", addr="gateway")
    await worker(store, Clock(T0 + 200 * S)).promote_due()
    events = await promoted(store, m)
    assert [e.machine for e in events] == [True, False, False, True]
    # machine: no earlier click of any kind; human: no earlier human-countable click
    assert [e.first_click for e in events] == [True, True, False, False]


async def test_the_event_and_its_deliveries_are_written_together(store: Store) -> None:
    m = await message(store)
    await observe(store, m, 0, T0, method="HEAD", addr="gateway")
    await observe(store, m, 1, T0 + 30 * S)
    await worker(store, Clock(T0 + 100 * S)).promote_due()
    machine, human = await promoted(store, m)
    assert [d.webhook_id for d in await store.deliveries_of_event(machine.id)] == ["everything"]
    deliveries = await store.deliveries_of_event(human.id)
    assert sorted(d.webhook_id for d in deliveries) == ["everything", "people"]
    assert all(d.status == "pending" and d.event_type == "message.clicked"
               and f'"id":"{d.id}"' in d.body for d in deliveries)


async def test_a_held_earlier_click_keeps_the_later_ones_of_its_message_waiting(
    store: Store,
) -> None:
    m, other = await message(store), await message(store)
    await observe(store, m, 0, T0)
    await observe(store, m, 1, T0 + 30 * S)
    await observe(store, other, 0, T0 + 31 * S)
    clock = Clock(T0 + 100 * S)
    a, b = worker(store, clock), worker(store, clock)
    [held] = await store.claim_due_observations(a.worker_id, clock(), 60 * S, 1)
    # b may not promote the later click while a holds the earlier one: first_click would
    # be decided without it.
    assert await b.promote_due() == 1
    assert await promoted(store, m) == []
    await a.promote([held])
    assert await b.promote_due() == 1
    assert [e.first_click for e in await promoted(store, m)] == [True, False]


async def test_two_workers_on_one_database_never_promote_an_observation_twice(
    store: Store, tmp_path: Path
) -> None:
    messages = [await message(store) for _ in range(10)]
    for n in range(200):
        await observe(store, messages[n % 10], n % 5, T0 + n * S, addr=f"a{n % 7}")
    other = await Store.open(store.where)
    stores = [RecordingStore(store), RecordingStore(other)]
    clock, metrics = Clock(T0 + 1000 * S), Metrics()
    try:
        # One claim after the other: the second skips what the first holds.
        first = await store.claim_due_observations("a", clock(), 60 * S, 5)
        second = await other.claim_due_observations("b", clock(), 60 * S, 5)
        assert len(first) == len(second) == 5
        assert not {o.id for o in first} & {o.id for o in second}
        await store.release_observation_claims()
        # Then both at once, in small batches, until nothing is left.
        workers = [worker(s, clock, metrics, batch=7) for s in stores]
        while sum(await asyncio.gather(*(w.promote_due() for w in workers))):
            pass
    finally:
        await other.close()
    ids = stores[0].claimed + stores[1].claimed
    assert len(ids) == len(set(ids)) == 200
    events = [e for m in messages for e in await promoted(store, m)]
    assert sorted(e.observation_id for e in events) == sorted(ids)
    assert metrics.promotion_failures._value.get() == 0
    for m in messages:  # click order held within every message
        firsts = [e.first_click for e in await promoted(store, m) if not e.machine]
        assert firsts[:1] == [True] and not any(firsts[1:])


class RecordingStore:
    """The store, noting the observations each claim returned."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.claimed: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim_due_observations(self, *args: Any) -> list[Observation]:
        got = await self._store.claim_due_observations(*args)
        self.claimed += [o.id for o in got if o.id is not None]
        return got


async def test_a_batch_is_written_in_chunks_and_a_failed_chunk_leaves_the_rest_waiting(
    store: Store,
) -> None:
    """The events of a batch are written ``WRITE_CHUNK`` observations a transaction. When
    the second chunk's transaction fails, the first one's events stay written and are
    counted; the rest keep their claims until the lease ends, and are then promoted once,
    in click order."""
    messages = [await message(store) for _ in range(3)]
    total = WRITE_CHUNK + 10
    for n in range(total):
        await observe(store, messages[n % 3], n % 5, T0 + n * 20 * S)
    clock, metrics = Clock(T0 + total * 20 * S + 20 * S), Metrics()
    failing = FailingSecondWrite(store)
    first = worker(failing, clock, metrics, batch=total)
    with pytest.raises(RuntimeError, match="went away"):
        await first.promote_due()
    events = [e for m in messages for e in await promoted(store, m)]
    assert len(events) == WRITE_CHUNK
    assert sum(metrics.clicks_classified.labels(c)._value.get()
               for c in {e.classification for e in events}) == WRITE_CHUNK
    assert await worker(store, clock, metrics).promote_due() == 0  # still claimed
    clock.now += 3600 * S  # the lease has lapsed
    assert await worker(store, clock, metrics).promote_due() == total - WRITE_CHUNK
    ids = [e.observation_id for m in messages for e in await promoted(store, m)]
    assert len(ids) == len(set(ids)) == total
    for m in messages:
        firsts = [e.first_click for e in await promoted(store, m)]
        assert firsts == [True] + [False] * (len(firsts) - 1)


class FailingSecondWrite:
    """The store, whose second ``record_promotions`` fails as a lost database would."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record_promotions(self, *args: Any) -> set[int]:
        self.writes += 1
        if self.writes == 2:
            raise RuntimeError("the database went away")
        written: set[int] = await self._store.record_promotions(*args)
        return written


async def test_first_click_over_http(relay: Running, sink: Sink) -> None:
    [sent] = await send_tracked(relay, sink, '<a href="https://example.com/x">X</a>')
    await probe_as_scanner(relay, sent.link(0))
    await events_of(relay, sent.message_id, 1)
    await click_as_person(relay, sent.link(0))
    await events_of(relay, sent.message_id, 2)
    await click_as_person(relay, sent.link(0))
    await probe_as_scanner(relay, sent.link(0))
    events = await events_of(relay, sent.message_id, 4)
    assert [(e.machine, e.first_click) for e in events] == [
        (True, True), (False, True), (False, False), (True, False)]


async def test_promotion_commits_without_waiting_for_the_disk_and_others_still_wait(
    store: Store,
) -> None:
    """Promotion's store (``sync_commits=False``) commits without a sync of its own; every
    other writer's commits still sync, and with them the log promotion wrote before."""
    setting = ("SHOW synchronous_commit" if store.shared else "PRAGMA synchronous")

    async def read(tx: Any) -> Any:
        row = await tx.fetchone(setting)
        return row[0]

    promotion = await Store.open(store.where, sync_commits=False)
    try:
        assert str(await promotion.db.write(read)) in ("off", "1")  # NORMAL is 1
    finally:
        await promotion.close()
    assert str(await store.db.write(read)) in ("on", "2")  # FULL is 2


async def test_the_claim_asks_only_the_pending_observations_of_a_message(
    tmp_path: Path,
) -> None:
    """The claim's order rule looks for an earlier pending observation of each candidate's
    message in the index of pending ones, not among every observation the message ever
    had (SQLite's plan; the claim holds the write lock the clicks' commits wait for)."""
    details = await sqlite_plan(tmp_path, _claim(SQLITE), ("w", 1, 1, 100))
    assert any("observations_pending_message" in d for d in details), details
    assert not any("observations_message " in d or d.endswith("observations_message")
                   for d in details), details


async def test_a_batch_is_marked_done_by_its_keys_not_through_the_backlog(
    tmp_path: Path,
) -> None:
    """Marking a written batch done finds its observations by their keys; through the
    index of states SQLite walked every pending observation for each batch (SQLite's plan;
    the write holds the lock the clicks' commits wait for)."""
    details = await sqlite_plan(tmp_path, _mark_done(SQLITE), ("[1]", "w"))
    assert any("observations USING INTEGER PRIMARY KEY" in d for d in details), details
    assert not any("USING INDEX observations" in d or "USING COVERING INDEX observations" in d
                   for d in details), details
