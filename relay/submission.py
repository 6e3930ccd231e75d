"""Taking a submitted mail: the steps between the end of DATA (or an API send) and the
reply. Reads as a table of contents: parse → choose route → decide tracking → rewrite per
recipient → spool (DESIGN §1, §3). The caller replies only after ``accept`` returns."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.config import Config
from relay.controls import Controls, is_control_header, read_controls
from relay.errors import BadInput
from relay.headers import (
    decoded,
    get_value,
    line_ending,
    parse_fields,
    remove_fields,
    split_message,
)
from relay.tracking import track_links
from store.records import LinkRecord, NewMessage
from tracker.config import ProjectConfig, RouteConfig
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.submission")


@dataclass(frozen=True)
class Accepted:
    submission_id: str
    message_ids: tuple[str, ...]


class Spool(Protocol):
    """What the submission needs of the store."""

    async def spool_messages(self, messages: Sequence[NewMessage]) -> None: ...


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
        eol = line_ending(raw)
        forwarded = remove_fields(header_block, is_control_header) + eol + body
        copies, failed_parts = await asyncio.to_thread(
            make_copies, config, project, route, tracking, controls, mail_from, rcpt_tos,
            forwarded, decoded(get_value(fields, "Subject") or "") or None,
        )
        await self._store.spool_messages(copies)
        self._on_spooled()
        self._count(copies, failed_parts)
        return Accepted(copies[0].submission_id, tuple(c.id for c in copies))

    def _count(self, copies: Sequence[NewMessage], failed_parts: int) -> None:
        self._metrics.mail_accepted.inc(len(copies))
        self._metrics.rewrite_failures.inc(failed_parts)
        self._metrics.links_tracked.inc(
            sum(1 for c in copies for link in c.links if not link.honeypot)
        )


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
