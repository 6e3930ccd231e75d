"""Reading a submitted mail, in a worker process (relay/submission/pool.py): parse → choose route
→ decide tracking → rewrite once → each recipient's tokens (docs/mail.md).

A pure function of what it is given: the server's event loop sends the mail's bytes and
gets back the recipients' copies as shared pieces and per-copy fills (relay/rewrite/copies.py),
so that no parsing work runs on the loop however large or hostile the mail. A mail over a
limit of relay/message/limits.py is refused here (``LimitExceeded``), before any work that grows
with it; a header byte that is not UTF-8 is read as U+FFFD, never refused.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from relay.errors import BadInput
from relay.message.headers import (
    HeaderField,
    entity_bounds,
    line_ending,
    parse_fields,
    remove_fields,
)
from relay.message.limits import check_header_block
from relay.message.mime import PartOutcome
from relay.rewrite.copies import Template
from relay.rewrite.minting import LinkSettings, copy_tokens, track_message
from relay.submission.controls import Controls, header_text, is_control_header, read_controls
from store.bodies import INLINE_BODY_BYTES, body_size, fills_size, write_body
from store.records import LinkRecord, SharedBody
from tracker.config import ProjectConfig, RouteConfig
from tracker.tokens import TokenMinter


@dataclass(frozen=True)
class Submission:
    """One mail as submitted, and what reading it needs of the configuration.

    A large mail comes in a file (``raw_file``) and its shared body goes out in one
    (``body_file``, store/bodies.py) rather than through the pipe to the worker: the
    server's side of a pipe pickles and copies them in one step that holds the GIL,
    where file reads and writes let the event loop run."""

    submission_id: str
    project: ProjectConfig
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes  # b"" when it is in ``raw_file``
    created_at: int  # µs; the expiry of the tokens in ``links`` counts from it
    links: LinkSettings  # ``honeypot`` is set from the route chosen here
    raw_file: Path | None = None
    body_file: Path | None = None  # where a shared body over INLINE_BODY_BYTES goes


@dataclass(frozen=True)
class PreparedCopy:
    id: str
    rcpt_to: str
    fills: tuple[bytes, ...]  # its bytes for the holes of the template; () when in the file
    fills_span: tuple[int, int] | None = None  # where they are in the body's file


@dataclass(frozen=True)
class Prepared:
    """A mail read and rewritten, ready to be spooled."""

    submission_id: str
    route: RouteConfig
    tracking: bool  # clicks
    opens: bool
    controls: Controls
    subject: str | None
    body_hash: str | None  # for the Idempotency-Key claim, when the mail has one
    body: SharedBody  # the copies' shared bytes, or where they are
    copies: tuple[PreparedCopy, ...]
    links: tuple[LinkRecord, ...]  # the same in every copy
    parts: tuple[PartOutcome, ...]  # the text/html parts considered, for the log


def prepare(submission: Submission) -> Prepared:
    raw = submission.raw
    if submission.raw_file is not None:
        raw = submission.raw_file.read_bytes()
    header_end, body_start = entity_bounds(raw)
    check_header_block(header_end)
    header_block = raw[:header_end]
    fields = parse_fields(header_block)
    controls = read_controls(fields)
    subject = read_subject(fields)
    route = choose_route(submission.project, controls.route_slug)
    tracking, opens = decide_tracking(route, controls)
    body_hash = None
    if controls.idempotency_key is not None:
        body_hash = hash_submission(submission.mail_from, submission.rcpt_tos, raw)
    forwarded = (remove_fields(header_block, is_control_header) + line_ending(raw)
                 + raw[body_start:])
    ids = [str(uuid.uuid4()) for _ in submission.rcpt_tos]
    links: tuple[LinkRecord, ...] = ()
    parts: tuple[PartOutcome, ...] = ()
    if not (tracking or opens):
        template = Template.plain(forwarded)
        fills: list[tuple[bytes, ...]] = [() for _ in ids]
    else:
        settings = replace(submission.links, honeypot=route.bot_honeypot,
                           track_clicks=tracking, track_opens=opens)
        tracked = track_message(settings, forwarded)
        template, links, parts = tracked.template, tracked.links, tracked.parts
        minter = TokenMinter(settings.key)
        fills = [template.fills(copy_tokens(settings, tracked, i, minter)) for i in ids]
    body, copies = shared_body(submission, template, ids, fills)
    return Prepared(submission.submission_id, route, tracking, opens, controls, subject, body_hash,
                    body, copies, links, parts)


def shared_body(
    submission: Submission, template: Template, ids: list[str], fills: list[tuple[bytes, ...]]
) -> tuple[SharedBody, tuple[PreparedCopy, ...]]:
    """The body and the copies as the spool takes them: a large body and the copies'
    fills written to the body's file here, so that they do not cross the pipe."""
    body = SharedBody(submission.submission_id, template.pieces)
    rcpts = submission.rcpt_tos
    if submission.body_file is None or (body_size(body) + fills_size(fills)
                                        <= INLINE_BODY_BYTES):
        return body, tuple(PreparedCopy(*c) for c in zip(ids, rcpts, fills, strict=True))
    spans = write_body(submission.body_file, template.pieces, fills)
    copies = tuple(PreparedCopy(i, rcpt, (), span)
                   for i, rcpt, span in zip(ids, rcpts, spans, strict=True))
    return SharedBody(body.id, (), body.piece_lengths()), copies


def read_subject(fields: list[HeaderField]) -> str | None:
    subject = next((f for f in fields if f.lname == "subject"), None)
    return (header_text(subject) or None) if subject is not None else None


def hash_submission(mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> str:
    """What an Idempotency-Key is bound to: the envelope and the message."""
    digest = hashlib.sha256()
    for part in (mail_from.encode(), "\0".join(rcpt_tos).encode(), raw):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def choose_route(
    project: ProjectConfig, slug: str | None, field: str = "X-Lettermint-Route"
) -> RouteConfig:
    """The route a mail names (``field``: where it named it, the header or an API field),
    or the project's default route; the one check of SMTP and the send API."""
    if slug is not None:
        route = project.route_by_slug(slug)
        if route is None:
            raise BadInput(field, f"{field}: unknown route {slug!r} in project {project.id}")
        return route
    route = project.default_route()
    if route is None:
        raise BadInput(field, f"{field}: project {project.id} has no default route; name one")
    return route


def decide_tracking(route: RouteConfig, controls: Controls) -> tuple[bool, bool]:
    """Whether clicks and opens are tracked: the per-email override beats the route;
    inbound routes never track."""
    if route.type == "inbound":
        return False, False
    clicks, opens = controls.track_clicks, controls.track_opens
    return (route.track_clicks if clicks is None else clicks,
            route.track_opens if opens is None else opens)
