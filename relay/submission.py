"""Taking a submitted mail: the steps between the end of DATA (or an API send) and the
reply. Reads as a table of contents: parse → choose route → decide tracking → rewrite per
recipient → spool (DESIGN §1, §3). The caller replies only after ``accept`` returns."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.config import Config
from relay.controls import IDEMPOTENCY_HEADER, Controls, is_control_header, read_controls
from relay.errors import BadInput, TemporaryRefusal
from relay.headers import (
    HeaderField,
    decoded,
    get_value,
    line_ending,
    parse_fields,
    remove_fields,
    split_message,
)
from relay.tracking import track_links
from store.idempotency import DONE, IN_FLIGHT, MISMATCH, KeyClaim, KeyState
from store.records import AnsweredKey, LinkRecord, NewMessage
from tracker.config import ProjectConfig, RouteConfig
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.submission")

SMTP_KEY_SCOPE = "smtp"
IDEMPOTENCY_TTL_US = 24 * 3600 * 1_000_000


@dataclass(frozen=True)
class Accepted:
    submission_id: str
    message_ids: tuple[str, ...]


class Spool(Protocol):
    """What the submission needs of the store."""

    async def spool_messages(
        self, messages: Sequence[NewMessage], answered_key: AnsweredKey | None = None
    ) -> None: ...

    async def claim_idempotency_keys(
        self, project_id: str, claims: Sequence[KeyClaim], now: int, ttl_us: int
    ) -> list[KeyState]: ...

    async def release_idempotency_keys(
        self, project_id: str, keys: Sequence[tuple[str, str]]
    ) -> None: ...


class Submitter:
    def __init__(
        self,
        config: Callable[[], Config],
        store: Spool,
        metrics: Metrics,
        on_spooled: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._on_spooled = on_spooled

    async def accept(
        self, project: ProjectConfig, mail_from: str, rcpt_tos: Sequence[str], raw: bytes
    ) -> Accepted:
        """Spool one copy per recipient; on return every copy is on disk."""
        config = self._config()
        project = config.project_by_id(project.id) or project  # routes as reloaded
        header_block, body = split_message(raw)
        fields = parse_fields(header_block)
        controls = read_controls(fields)
        route = choose_route(project, controls.route_slug)
        tracking = decide_tracking(route, controls)
        claim = None
        if controls.idempotency_key is not None:
            claim = _key_claim(controls.idempotency_key, mail_from, rcpt_tos, raw)
            replayed = await self._claim(project.id, claim)
            if replayed is not None:
                return replayed
        try:
            forwarded = remove_fields(header_block, is_control_header) + line_ending(raw) + body
            return await self._spool(config, project, route, tracking, controls, mail_from,
                                     rcpt_tos, forwarded, fields, claim)
        except BaseException:
            if claim is not None:
                await self._store.release_idempotency_keys(project.id, [(claim.scope, claim.key)])
            raise

    async def _spool(
        self, config: Config, project: ProjectConfig, route: RouteConfig, tracking: bool,
        controls: Controls, mail_from: str, rcpt_tos: Sequence[str], forwarded: bytes,
        fields: list[HeaderField], claim: KeyClaim | None,
    ) -> Accepted:
        copies, failed_parts = await asyncio.to_thread(
            make_copies, config, project, route, tracking, controls, mail_from, rcpt_tos,
            forwarded, decoded(get_value(fields, "Subject") or "") or None,
        )
        accepted = Accepted(copies[0].submission_id, tuple(c.id for c in copies))
        answered = None
        if claim is not None:
            response = json.dumps({"submission_id": accepted.submission_id,
                                   "message_ids": list(accepted.message_ids)})
            answered = AnsweredKey(project.id, claim.scope, claim.key, response)
        await self._store.spool_messages(copies, answered)
        self._on_spooled()
        self._count(copies, failed_parts)
        return accepted

    async def _claim(self, project_id: str, claim: KeyClaim) -> Accepted | None:
        """Take an Idempotency-Key for this mail: the earlier answer when the same mail
        was accepted under it before, None when it is new (DESIGN §3)."""
        [state] = await self._store.claim_idempotency_keys(
            project_id, [claim], time.time_ns() // 1000, IDEMPOTENCY_TTL_US
        )
        if state.state == DONE and state.response:
            answer = json.loads(state.response)
            self._metrics.mail_replayed.inc()
            return Accepted(answer["submission_id"], tuple(answer["message_ids"]))
        if state.state == IN_FLIGHT:
            raise TemporaryRefusal(
                f"{IDEMPOTENCY_HEADER} {claim.key!r} is still being processed; try again later"
            )
        if state.state == MISMATCH:
            raise BadInput(IDEMPOTENCY_HEADER, f"{IDEMPOTENCY_HEADER} {claim.key!r} was used "
                           "for a different message in the last 24 hours")
        return None

    def _count(self, copies: Sequence[NewMessage], failed_parts: int) -> None:
        self._metrics.mail_accepted.inc(len(copies))
        self._metrics.rewrite_failures.inc(failed_parts)
        self._metrics.links_tracked.inc(
            sum(1 for c in copies for link in c.links if not link.honeypot)
        )


def _key_claim(key: str, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> KeyClaim:
    digest = hashlib.sha256()
    for part in (mail_from.encode(), "\0".join(rcpt_tos).encode(), raw):
        digest.update(len(part).to_bytes(8, "big") + part)
    return KeyClaim(SMTP_KEY_SCOPE, key, digest.hexdigest())


def choose_route(project: ProjectConfig, slug: str | None) -> RouteConfig:
    if slug is not None:
        route = project.route_by_slug(slug)
        if route is None:
            raise BadInput("X-Lettermint-Route", f"unknown route {slug!r} in project {project.id}")
        return route
    route = project.default_route()
    if route is None:
        raise BadInput("X-Lettermint-Route", f"project {project.id} has no default route; "
                       "name one with X-Lettermint-Route")
    return route


def decide_tracking(route: RouteConfig, controls: Controls) -> bool:
    """The per-email override beats the route; inbound routes never track."""
    if route.type == "inbound":
        return False
    if controls.track_clicks is not None:
        return controls.track_clicks
    return route.track_clicks


def make_copies(
    config: Config,
    project: ProjectConfig,
    route: RouteConfig,
    tracking: bool,
    controls: Controls,
    mail_from: str,
    rcpt_tos: Sequence[str],
    forwarded: bytes,
    subject: str | None,
) -> tuple[list[NewMessage], int]:
    """One copy per envelope recipient, each with its own id and its own tokens.
    CPU-bound (HTML parsing): runs in a worker thread."""
    submission_id = str(uuid.uuid4())
    created_at = time.time_ns() // 1000
    copies = []
    failures = 0
    for rcpt in rcpt_tos:
        message_id = str(uuid.uuid4())
        body, failed = forwarded, 0
        links: tuple[LinkRecord, ...] = ()
        if tracking:
            tracked = track_links(config, project, route, message_id, created_at, forwarded)
            body, links, failed = tracked.body, tracked.links, tracked.failed_parts
        copies.append(
            NewMessage(
                id=message_id, submission_id=submission_id, project_id=project.id,
                route_id=route.id, mail_from=mail_from, rcpt_to=rcpt, subject=subject,
                tag=controls.tag, metadata=controls.metadata, track_clicks=tracking,
                created_at=created_at, body=body, links=links,
            )
        )
        failures += failed
    return copies, failures
