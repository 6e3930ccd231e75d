"""A project's messages and one message's page (docs/dashboard.md).

The list (recipient, subject, tag, route, sent, delivery state, human clicks) is searched by
recipient, subject or tag and paged newest first with a cursor that names the last copy
shown, so that a page costs the same however deep it is. A message's page has its delivery
attempts, its links with their human and machine clicks, and its click timeline; each click
says in words why it was classed as it was (docs/classification.md)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from aiohttp import web

from relay.dashboard.auth import signed_in
from relay.dashboard.pages import dashboard_of, error_page, render
from relay.dashboard.projects import project_or_404
from store.events import EventRecord

PAGE_SIZE = 50
MAX_SEARCH = 200
MAX_TIMELINE = 500
MACHINE_PARAM = "machine"  # the "Include machine activity" checkbox's field
LIVE_PARAM = "live"  # "Refresh every 30 s": the page reloads itself (no script needed)

CLASSIFICATION_WORDS: Final[Mapping[str, str]] = MappingProxyType({
    "genuine": "A person's click, as far as any signal shows.",
    "privacy_proxy": "The request came through a privacy proxy: a person behind Apple "
                     "Private Relay is counted; a mailbox's image proxy fetching the link is not.",
    "security_scanner": "Link protection or a security gateway vetting the link before the "
                        "recipient saw it.",
    "link_preview": "A chat or mail app fetching the link to draw a preview card.",
    "generic_bot": "Other automation: an HTTP library, a headless browser, a crawler, or an "
                   "agent that is not a browser's.",
})
REASON_WORDS: Final[Mapping[str, str]] = MappingProxyType({
    "privacy_proxy": "it came through a privacy proxy",
    "image_proxy": "a mailbox image proxy fetched it",
    "link_protection": "its agent is a security vendor's link checker",
    "known_bot": "its agent is a known bot, preview fetcher or HTTP library",
    "security_network": "it came from a security scanner's network, or the same address "
                        "hit many recipients' messages",
    "timing": "its timing was a machine's (a burst of links, rapid hits, or very early)",
    "link_pattern": "it hit the hidden honeypot link, or every link of the message",
    "request_shape": "the request was not shaped like a browser's (HEAD, prefetch, or "
                     "missing headers)",
    "sandbox": "its agent is a headless or outdated sandbox browser",
    "other": "it came from a cloud provider's network",
})


@signed_in
async def messages(request: web.Request) -> web.StreamResponse:
    project = project_or_404(request)
    if isinstance(project, web.Response):
        return project
    search = request.query.get("search", "").strip()
    if len(search) > MAX_SEARCH:
        return error_page(request, 400, "Search too long",
                          f"Search: at most {MAX_SEARCH} characters.")
    before = None
    if request.query.get("before"):
        before = _decode_cursor(request.query["before"])
        if before is None:
            return error_page(request, 400, "Bad page cursor",
                              "before: not a cursor this dashboard gave out.")
    rows = await dashboard_of(request).store.message_page(
        project.id, search=search, before=before, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    last = rows[-1].message if rows else None
    return render(request, "messages.html", {
        "project": project, "rows": rows, "search": search, "first_page": before is None,
        "next_cursor": _encode_cursor(last.created_at, last.id) if more and last else None,
    })


@signed_in
async def message(request: web.Request) -> web.StreamResponse:
    dashboard = dashboard_of(request)
    message_id = request.match_info["message_id"]
    found = await dashboard.store.get_message(message_id)
    if found is None:
        return error_page(request, 404, "Not found", f"There is no message {message_id!r}.")
    include_machine = request.query.get(MACHINE_PARAM) in ("1", "on")
    events = await dashboard.store.message_click_events(
        found.id, include_machine=include_machine, descending=False, limit=MAX_TIMELINE,
        include_opens=True)
    clicks = [(e, anchor, explain(e)) for e, anchor in events if not e.opened]
    return render(request, "message.html", {
        "message": found, "include_machine": include_machine,
        "live": request.query.get(LIVE_PARAM) == "1",
        "project": dashboard.config().project_by_id(found.project_id),
        "attempts": await dashboard.store.delivery_attempts(found.id),
        "links": await dashboard.store.message_link_counts(found.id),
        "clicks": clicks,
        "opens": [(e, explain(e)) for e, _ in events if e.opened],
        "timeline_cut": len(events) >= MAX_TIMELINE,
    })


def explain(event: EventRecord) -> str:
    """Why a click (or an open) was classed as it was, in words."""
    noun = "open" if event.opened else "click"
    words = CLASSIFICATION_WORDS.get(event.classification, event.classification)
    reasons = [REASON_WORDS.get(code, code) for code in event.reason_codes]
    if reasons:
        words += " Signals: " + "; ".join(reasons) + "."
    if event.machine:
        words += (f" Likelihood of automation {event.probability}%: a machine {noun}, not "
                  "counted.")
    elif event.counts_for_metrics:
        words += f" Counted as a human {noun}."
    return words


def _encode_cursor(created_at: int, message_id: str) -> str:
    raw = f"{created_at}:{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str] | None:
    if len(cursor) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    created, sep, message_id = raw.partition(":")
    if not sep or not created.isdigit() or not message_id or len(created) > 20:
        return None
    return int(created), message_id
