"""Promotion: observations become classified click and open events
(docs/classification.md, docs/opens.md).

An observation waits ``settle_seconds`` (its ``promote_after``) so that the hits around it
can be seen; then this worker claims it, reads its context (the message's other hits,
the address's fan-out over recipients, the send time, the message's links), classifies it
once, and writes the event together with one outbox delivery per webhook that wants it,
in one transaction with marking the observation done (``WRITE_CHUNK`` observations a
transaction, so that the clicks' writer, which waits for the same write lock, waits for
no more than one short transaction).
Claims are atomic and leased, so several workers (in several processes) may share one
database; the claim hands out a message's observations in click order (store/events.py),
so ``first_click`` is decided with every earlier click of the message already promoted.
The worker loop (tracker/workers.py) claims, sleeps and gives claims back; to it, one
claim's batch is one item, and one batch is promoted at a time.

A hit on a route's hidden honeypot link is no click on a link of the message: it has no
event of its own, and is context that makes the clicks near it machine clicks. An open
(link index ``OPEN_LINK_INDEX``) becomes an open event and ``message.opened`` webhooks;
``first_open`` follows the message's opens as ``first_click`` its clicks.

What a batch did (its classifications, its lags, its webhook deliveries) goes out as one
``PromotionReport`` (tracker/promotion_report.py): in the server's process it is counted in
the metrics and wakes the webhook dispatcher (``metrics_report``); the server runs the
worker in a process of its own (relay/promotion.py), which sends its reports to the server
to be counted there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from store.clock import now_us
from store.context import BatchContext, Windows
from store.events import EarlierClicks, EventRecord, Promoted
from store.ids import new_id
from store.records import LinkRecord, MessageInfo, Observation
from store.webhooks import NewDelivery
from tracker.classify.rules import Rules
from tracker.classify.useragent import client_info
from tracker.classify.verdict import ClickContext, Hit, Verdict, classify
from tracker.config import ProjectConfig, WebhookConfig
from tracker.promotion_report import PromotionReport, Report
from tracker.webhooks.events import (
    HONEYPOT_LINK_INDEX,
    MESSAGE_CLICKED,
    MESSAGE_OPENED,
    OPEN_LINK_INDEX,
    ClickEvent,
    OpenEvent,
    click_event,
    deliveries_for,
    open_event,
)
from tracker.workers import LEASE_SECONDS, WorkerLoop

log = logging.getLogger("clickrelay.promote")

# Observations a claim takes. The claim and each write transaction hold SQLite's write
# lock, which the clicks' writer waits on: a claim of 500 held it for about 11 ms on a
# quiet machine, and the redirect's tail was made of such waits (docs/performance.md).
BATCH = 100
WRITE_CHUNK = 50  # observations whose events and deliveries one transaction writes
IDLE_POLL_SECONDS = 0.5
# Promotion shares the event loop with the clicks: it gives the loop back after this much
# work, so that a click waits behind it for no longer.
SLICE_SECONDS = 0.001
# How far apart two hits of one address on different recipients' messages still count as
# one fan-out: a gateway scans every copy of a bulk send as it arrives.
FANOUT_CAP = 100  # messages counted at most: far above any threshold
_US = 1_000_000


class PromoteView(Protocol):
    """What promotion reads of the live configuration."""

    @property
    def projects(self) -> tuple[ProjectConfig, ...]: ...


class PromoteStore(Protocol):
    async def claim_due_observations(
        self, worker: str, now: int, lease_us: int, limit: int
    ) -> list[Observation]: ...

    async def release_observation_claims(self, worker: str | None = None) -> int: ...

    async def renew_claims(self, queue: str, worker: str, until: int) -> int: ...

    async def next_observation_due(self) -> int | None: ...

    async def promotion_context(
        self, observations: Sequence[Observation], windows: Windows
    ) -> BatchContext: ...

    async def record_promotions(self, worker: str, promoted: Sequence[Promoted]) -> set[int]: ...


@dataclass(frozen=True)
class Facts:
    """What the store knows about the clicked message."""

    message: MessageInfo | None
    project: ProjectConfig | None
    link_count: int  # the links a person can click

    @property
    def project_id(self) -> str | None:
        return self.message.project_id if self.message else (
            self.project.id if self.project else None)


@dataclass
class _Batch:
    """One claim's worth of observations, promoted in click order and written in one
    transaction: their context is read once for the whole batch (store/context.py),
    ``first_click`` follows the batch's own events, and a message whose promotion failed
    keeps its later clicks waiting."""

    context: BatchContext
    facts: dict[str, Facts] = field(default_factory=dict)
    earlier: dict[tuple[str, bool], EarlierClicks] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    promoted: list[Promoted] = field(default_factory=list)
    report: PromotionReport = field(default_factory=PromotionReport)


def windows(rules: Rules) -> Windows:
    """How far around a click the classifier's rules look."""
    return Windows(
        hits_us=int(max(rules.burst_window_s, rules.rapid_window_s, rules.all_links_window_s,
                        rules.honeypot_window_s) * _US),
        fanout_us=int(rules.fanout_window_s * _US),
        fanout_cap=FANOUT_CAP,
        honeypot_index=HONEYPOT_LINK_INDEX,
    )


def wanted_by(hook: WebhookConfig, machine: bool, event_type: str = MESSAGE_CLICKED) -> bool:
    """Machine clicks and opens go only to webhooks that asked for them
    (docs/webhooks.md)."""
    return (hook.enabled and event_type in hook.events
            and (not machine or hook.include_machine_events))


class PromotionWorker(WorkerLoop[Sequence[Observation]]):
    idle_poll_seconds = IDLE_POLL_SECONDS

    def __init__(
        self,
        config: Callable[[], PromoteView],
        store: PromoteStore,
        report: Report,
        rules: Callable[[], Rules],
        *,
        clock: Callable[[], int] = now_us,
        batch: int = BATCH,
        lease: Callable[[], float] = lambda: LEASE_SECONDS,
    ) -> None:
        super().__init__("promote", clock, lease)
        self._config = config
        self._store = store
        self._report = report
        self._rules = rules
        self._batch = batch

    def concurrency(self) -> int:
        return 1  # batches one after the other, so that clicks are promoted in order

    async def renew(self, until: int) -> None:
        await self._store.renew_claims("observations", self.worker_id, until)

    async def claim(self, now: int, lease_us: int, room: int) -> list[Sequence[Observation]]:
        """The due observations, up to a batch of them, as one item."""
        claimed = await self._store.claim_due_observations(self.worker_id, now, lease_us,
                                                           self._batch)
        return [claimed] if claimed else []

    async def next_due(self) -> int | None:
        return await self._store.next_observation_due()

    async def release(self) -> None:
        await self._store.release_observation_claims(self.worker_id)

    def describe(self, batch: Sequence[Observation]) -> str:
        return f"a batch of {len(batch)} observations"

    async def handle(self, batch: Sequence[Observation]) -> None:
        await self.promote(batch)

    async def promote_due(self) -> int:
        """Claim the observations that are due and promote them, in one step outside the
        loop (for tests and benchmarks); how many were claimed."""
        batches = await self.claim(self._clock(), int(self.lease_seconds() * _US), 1)
        for batch in batches:
            await self.promote(batch)
        return sum(len(batch) for batch in batches)

    async def promote(self, observations: Sequence[Observation]) -> None:
        """Promote claimed observations, given in click order, and write the result."""
        rules = self._rules()
        batch = _Batch(await self._store.promotion_context(observations, windows(rules)))
        slice_ends = time.perf_counter() + SLICE_SECONDS
        for observation in observations:
            if time.perf_counter() >= slice_ends:
                await asyncio.sleep(0)
                slice_ends = time.perf_counter() + SLICE_SECONDS
            if observation.message_id in batch.failed:
                continue  # it waits for the earlier click of its message to be retried
            try:
                batch.promoted.append(await self._promote(observation, batch, rules))
            except Exception:
                # The claim lapses and the observation is tried again, in click order.
                batch.failed.add(observation.message_id)
                batch.report.failures += 1
                log.exception("promotion failed observation_id=%s", observation.id)
        written: set[int] = set()
        try:
            for start in range(0, len(batch.promoted), WRITE_CHUNK):
                written |= await self._store.record_promotions(
                    self.worker_id, batch.promoted[start:start + WRITE_CHUNK])
        finally:  # what was written is counted, even when a later chunk failed
            self._account([p for p in batch.promoted if p.observation_id in written],
                          batch.report)
        if len(written) < len(batch.promoted):
            log.warning("%d observations were taken over by another worker",
                        len(batch.promoted) - len(written))

    async def _promote(self, obs: Observation, batch: _Batch, rules: Rules) -> Promoted:
        oid = obs.id
        if oid is None:
            raise ValueError("only a stored observation can be promoted")
        facts = batch.facts.get(obs.message_id) or self._facts(obs, batch.context)
        batch.facts[obs.message_id] = facts
        link = batch.context.links.get((obs.message_id, obs.link_index))
        # The index alone tells a honeypot hit whose link rows are gone (retention).
        if obs.link_index == HONEYPOT_LINK_INDEX or (link is not None and link.honeypot):
            batch.report.honeypot_hits += 1
            log.info("honeypot hit message_id=%s", obs.message_id)
            return Promoted(oid)
        if facts.project_id is None:
            log.warning("click on a message of an unknown project dropped observation_id=%d "
                        "project_sid=%s", oid, obs.project_sid)
            return Promoted(oid)
        verdict = classify(self._context(obs, oid, facts, batch.context), rules)
        kind = (obs.message_id, obs.link_index == OPEN_LINK_INDEX)
        earlier = (batch.earlier.get(kind)
                   or batch.context.earlier.get(kind, EarlierClicks(False, False)))
        first = not (earlier.human if verdict.counts_for_metrics else earlier.any)
        batch.earlier[kind] = EarlierClicks(True, earlier.human or verdict.counts_for_metrics)
        return self._event(obs, oid, facts, facts.project_id, verdict, first, link)

    def _account(self, written: Sequence[Promoted], report: PromotionReport) -> None:
        now = self._clock()
        for p in written:
            if p.event is None:
                continue
            e = p.event
            (report.opened if e.opened else report.classified)[e.classification] += 1
            report.lags.append(max(0, now - e.clicked_at) / _US)
            report.deliveries += len(p.deliveries)
            log.info("%s message_id=%s link=%d classification=%s probability=%d first=%s "
                     "webhooks=%d", "open" if e.opened else "click", e.message_id,
                     e.link_index, e.classification, e.probability, e.first_click,
                     len(p.deliveries))
        self._report(report)

    def _facts(self, observation: Observation, context: BatchContext) -> Facts:
        message = context.messages.get(observation.message_id)
        projects = self._config().projects
        project = (next((p for p in projects if p.id == message.project_id), None) if message
                   else next((p for p in projects if p.sid == observation.project_sid), None))
        return Facts(message, project, context.link_counts.get(observation.message_id, 0))

    def _context(
        self, obs: Observation, oid: int, facts: Facts, context: BatchContext
    ) -> ClickContext:
        hits = context.hits.get(oid, ())
        message = facts.message
        return ClickContext(
            method=obs.method,
            user_agent=obs.user_agent,
            headers=obs.headers,
            network=obs.network,
            addr_hash=obs.addr_hash,
            at_us=obs.at,
            sent_at_us=message.created_at if message else 0,
            link_index=obs.link_index,
            honeypot=False,
            message_hits=[Hit(h.at, h.link_index, h.addr_hash, h.user_agent, h.honeypot,
                              h.link_index == OPEN_LINK_INDEX) for h in hits],
            message_link_count=facts.link_count,
            fanout_messages=context.fanout.get(oid, 0),
            opened=obs.link_index == OPEN_LINK_INDEX,
            delivered_at_us=_delivered_at(message),
        )

    def _event(
        self, obs: Observation, oid: int, facts: Facts, project_id: str, verdict: Verdict,
        first: bool, link: LinkRecord | None,
    ) -> Promoted:
        now = self._clock()
        info = client_info(obs.user_agent)
        event = EventRecord(
            id=new_id(), observation_id=oid, message_id=obs.message_id,
            project_id=project_id, link_index=obs.link_index, destination=obs.destination,
            clicked_at=obs.at, classification=verdict.classification,
            probability=verdict.probability, machine=verdict.machine,
            counts_for_metrics=verdict.counts_for_metrics, first_click=first,
            proxy_type=verdict.proxy_type, reason_codes=verdict.reason_codes,
            rules=verdict.rules, rules_version=verdict.rules_version,
            device_type=info.device_type, client_type=info.client_type,
            client_name=info.client_name, user_agent=obs.user_agent or None, created_at=now,
        )
        data: ClickEvent | OpenEvent
        if event.opened:
            data = open_event(event, facts.message)
        else:
            data = click_event(event, facts.message, link.anchor_text if link else None)
        return Promoted(oid, event, tuple(self._deliveries(event, data, facts, now)))

    def _deliveries(
        self, event: EventRecord, data: ClickEvent | OpenEvent, facts: Facts, now: int
    ) -> list[NewDelivery]:
        hooks = facts.project.webhooks if facts.project else ()
        kind = MESSAGE_OPENED if event.opened else MESSAGE_CLICKED
        return deliveries_for([h for h in hooks if wanted_by(h, event.machine, kind)],
                              kind, data, event.project_id, now, event.id)


def _delivered_at(message: MessageInfo | None) -> int | None:
    """When the copy was delivered upstream: None while it was not; 0 when nothing is
    known of it any more (its data purged), which no open precedes."""
    if message is None:
        return 0
    return message.finished_at if message.status == "delivered" else None

