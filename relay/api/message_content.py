"""A message's content through the API (docs/api.md): ``/source`` (the copy as it went to
the upstream, tracking links and all), ``/html`` and ``/text`` (its first text/html and
text/plain body, decoded). Kept until retention purges the message; a copy whose content
is kept no more answers 410."""

from __future__ import annotations

import asyncio
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiohttp import web

from relay.api.common import api_of, require_team
from relay.api.messages import find_message
from relay.api.store import MessageReportStore
from relay.errors import Gone, NotFound

SOURCE_TYPE = "message/rfc822"


async def message_source(request: web.Request) -> web.Response:
    require_team(request)
    return web.Response(body=await _source(request), content_type=SOURCE_TYPE)


async def message_html(request: web.Request) -> web.Response:
    require_team(request)
    return web.Response(text=await _body(request, "html"), content_type="text/html",
                        charset="utf-8")


async def message_text(request: web.Request) -> web.Response:
    require_team(request)
    return web.Response(text=await _body(request, "plain"), content_type="text/plain",
                        charset="utf-8")


async def _source(request: web.Request) -> bytes:
    message = await find_message(request)
    store: MessageReportStore = api_of(request).store
    source = await store.message_source(message.id)
    if source is None:
        raise Gone(f"The content of message {message.id!r} is no longer kept.")
    return source


async def _body(request: web.Request, subtype: str) -> str:
    source = await _source(request)
    text = await asyncio.to_thread(body_text, source, subtype)
    if text is None:
        kind = "HTML" if subtype == "html" else "plain-text"
        raise NotFound(f"Message {request.match_info['message_id']!r} has no {kind} body.")
    return text


def body_text(source: bytes, subtype: str) -> str | None:
    """The message's body of type text/``subtype`` as the reader sees it (the one a
    multipart/alternative prefers, not an attachment), decoded; None if it has none.
    A body whose charset Python does not know is read as UTF-8, bad bytes replaced."""
    message = BytesParser(policy=policy.default).parsebytes(source)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else None
