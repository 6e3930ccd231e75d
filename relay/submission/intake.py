"""Reading a submitted mail, in a worker process (relay/submission/pool.py): parse → choose route
→ decide tracking → rewrite once → each recipient's tokens (docs/mail.md).

A pure function of what it is given: the server's event loop sends the mail's bytes and
gets back the recipients' copies as shared pieces and per-copy fills (relay/rewrite/copies.py),
so that no parsing work runs on the loop however large or hostile the mail. A mail over a
limit of relay/message/limits.py is refused here (``LimitExceeded``), before any work that grows
with it; a header byte that is not UTF-8 is read as U+FFFD, never refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from email.utils import getaddresses
from pathlib import Path

from relay.errors import BadInput, LimitExceeded
from relay.message.headers import (
    HeaderField,
    decoded,
    entity_bounds,
    get_values,
    line_ending,
    parse_fields,
    remove_fields,
)
from relay.message.limits import check_header, check_header_block
from relay.message.mime import PartOutcome, fold_long_lines
from relay.rewrite.copies import Template
from relay.rewrite.minting import LinkSettings, copy_tokens, track_message
from relay.rewrite.policy import list_unsubscribe_urls
from relay.submission.controls import Controls, header_text, is_control_header, read_controls
from relay.submission.idempotency import fingerprint
from store.bodies import INLINE_BODY_BYTES, body_size, fills_size, write_body
from store.ids import new_id
from store.records import LinkRecord, MessageNames, SharedBody
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
    mail_params: tuple[str, ...] = ()  # MAIL parameters carried upstream (upstream.py)


@dataclass(frozen=True)
class PreparedCopy:
    id: str
    rcpt_to: str
    fills: tuple[bytes, ...]  # its bytes for the holes of the template; () when in the file
    fills_span: tuple[int, int] | None = None  # where they are in the body's file
    names: MessageNames = field(default_factory=MessageNames)


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
        body_hash = fingerprint(submission.mail_from, submission.rcpt_tos, fields,
                                memoryview(raw)[body_start:])
    forwarded = fold_long_lines(remove_fields(header_block, is_control_header)
                                + line_ending(raw) + raw[body_start:])
    ids = [new_id() for _ in submission.rcpt_tos]
    links: tuple[LinkRecord, ...] = ()
    parts: tuple[PartOutcome, ...] = ()
    if not (tracking or opens):
        template = Template.plain(forwarded)
        fills: list[tuple[bytes, ...]] = [() for _ in ids]
    else:
        settings = replace(submission.links, honeypot=route.bot_honeypot,
                           untracked=list_unsubscribe_urls(get_values(fields,
                                                                      "List-Unsubscribe")),
                           track_clicks=tracking, track_opens=opens)
        tracked = track_message(settings, forwarded)
        template, links, parts = tracked.template, tracked.links, tracked.parts
        minter = TokenMinter(settings.key)
        fills = [template.fills(copy_tokens(settings, tracked, i, minter)) for i in ids]
    body, copies = shared_body(submission, template, ids, fills)
    copies = name_copies(copies, fields)
    return Prepared(submission.submission_id, route, tracking, opens, controls, subject,
                    body_hash,
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


def name_copies(copies: tuple[PreparedCopy, ...], fields: list[HeaderField]
                ) -> tuple[PreparedCopy, ...]:
    """Each copy with the names its message gives: the From display name, its
    recipient's name in To or Cc, the Reply-To addresses."""
    senders = _addresses(fields, "from")
    reply_to = tuple(address for _, address in _addresses(fields, "reply-to") if address)
    names = {address.lower(): name for name, address in reversed(_addresses(fields, "to", "cc"))
             if name and address}
    from_name = next((name for name, _ in senders if name), None)
    return tuple(replace(copy, names=MessageNames(from_name, names.get(copy.rcpt_to.lower()),
                                                  reply_to))
                 for copy in copies)


def _addresses(fields: list[HeaderField], *names: str) -> list[tuple[str, str]]:
    """The (display name, address) pairs of the fields called ``names``; a name is decoded
    (RFC 2047) after the field is split, so that an encoded comma splits nothing. A field
    over the decoding limits is passed over: the names are for display, and a To field
    of many recipients is no reason to refuse a mail."""
    values = []
    for f in fields:
        if f.lname in names:
            try:
                check_header(f.name, f.raw, f.value)
            except LimitExceeded:
                continue
            values.append(f.value)
    return [(decoded(name).strip(), address.strip()) for name, address in getaddresses(values)]


def read_subject(fields: list[HeaderField]) -> str | None:
    subject = next((f for f in fields if f.lname == "subject"), None)
    return (header_text(subject) or None) if subject is not None else None


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
