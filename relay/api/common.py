"""What every view of the HTTP API shares: the context on the app, the two kinds of
credentials, JSON in and out, query parameters in the SDKs' syntax, cursor pages.

Credentials (docs/api.md): a project's token in ``x-lettermint-token`` for sending, the team
token as ``Authorization: Bearer`` for everything else; both compared in constant time, a
header that is not UTF-8 being just a wrong token, and both slowed down together with
SMTP AUTH per source network when wrong ones pile up (relay/throttle.py).
Booleans in queries arrive as ``1``/``0`` from the SDKs (``true``/``false`` by hand)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from relay.api.shapes import CursorPage, Item
from relay.api.store import ApiStore
from relay.config.live import LiveConfig, config_items, item_key
from relay.errors import BadInput, MalformedRequest, TooManyAttempts, Unauthenticated
from relay.submission.accept import Submitter
from relay.throttle import Throttle, source_network
from store.clock import now_us
from store.records import ItemTimes
from tracker.clicks.network import client_address
from tracker.config import ProjectConfig
from tracker.http.status import METRICS_KEY
from tracker.webhooks.events import iso_timestamp

SENDING_TOKEN_HEADER = "x-lettermint-token"
DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 100
MAX_OFFSET = 2**31

_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Api:
    """The API's view of the running clickrelay."""

    live: LiveConfig
    store: ApiStore
    submitter: Submitter
    # Deliveries were put in the outbox: the dispatcher should look now.
    wake_webhooks: Callable[[], None] = lambda: None
    # Write-backs of the configuration file happen one at a time.
    config_write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Wrong tokens slow down their network; the server shares it with SMTP AUTH.
    throttle: Throttle = field(default_factory=Throttle)
    # A route's switches changed here, after the file is written: on a store shared by
    # several nodes, they are put in force on every node (relay/config/shared.py).
    route_changed: Callable[[str, Mapping[str, bool]], Awaitable[None]] | None = None


API_KEY: web.AppKey[Api] = web.AppKey("api")


def api_of(request: web.Request) -> Api:
    return request.app[API_KEY]


@dataclass(frozen=True)
class ItemStamps:
    """The ``created_at`` and ``updated_at`` of the configuration's routes and webhooks."""

    times: dict[tuple[str, str], ItemTimes]
    now: int

    def of(self, kind: str, project_id: str, item_id: str) -> tuple[str, str]:
        times = self.times.get((kind, item_key(project_id, item_id)))
        if times is None:  # not in the configuration in force any more
            return iso_timestamp(self.now), iso_timestamp(self.now)
        return iso_timestamp(times.created_at), iso_timestamp(times.updated_at)


async def item_stamps(api: Api) -> ItemStamps:
    """Routes and webhooks live in the configuration file, which has no times of its own
    for them: the store notes when each was first seen and when its settings last
    changed (at start, at each reload, and here for a change not noted yet)."""
    now = now_us()
    return ItemStamps(await api.store.note_config_items(config_items(api.live()), now), now)


def sending_project(request: web.Request) -> ProjectConfig:
    """The project whose token the request carries in ``x-lettermint-token``."""
    token = request.headers.get(SENDING_TOKEN_HEADER)
    if not token:
        raise Unauthenticated(f"Missing {SENDING_TOKEN_HEADER} header with a project token.")
    api = api_of(request)
    keys = _token_check(request, api)
    project = api.live().project_by_token(token)
    if project is None:
        api.throttle.failed(keys)
        raise Unauthenticated("Invalid sending token.")
    return project


def require_team(request: web.Request) -> None:
    """The request must carry the team token as ``Authorization: Bearer <token>``."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("Missing Authorization: Bearer header with the team token.")
    api = api_of(request)
    keys = _token_check(request, api)
    expected = api.live().api.team_token
    # A header byte that is not UTF-8 is a surrogate here: encoded as one, it matches none.
    if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode()):
        api.throttle.failed(keys)
        raise Unauthenticated("Invalid team token.")


def _token_check(request: web.Request, api: Api) -> tuple[str]:
    """The throttle's keys for a token presented in ``request`` (its client's network);
    ``TooManyAttempts`` instead while that network must wait, the token unchecked."""
    config = api.live()
    address = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()),
                             config.http.trusted_proxies)
    keys = (source_network(address),)
    wait = api.throttle.wait(keys)
    if wait > 0:
        if METRICS_KEY in request.app:
            request.app[METRICS_KEY].auth_throttled.labels("api").inc()
        raise TooManyAttempts(math.ceil(wait))
    return keys


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request body as JSON; ``empty`` stands for a body that is absent, where allowed."""
    raw = await request.read()
    if not raw.strip() and empty is not None:
        return empty
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedRequest(f"The request body is not valid JSON: {exc}") from exc
    _check_text(data)
    return data


def _check_text(data: Any) -> None:
    """JSON may escape a lone UTF-16 surrogate (``"\\ud800"``), which is no character and
    cannot be written into a mail: name the field that holds one. Iterative, since the
    document may be nested as deep as the JSON parser allows."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, where or "body")
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, where or "body")


def _check_string(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInput(where, f"{where}: not valid Unicode text (a lone surrogate)") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """``body`` as JSON: a shape (``relay.api.shapes``), a list of them, or plain data."""
    if isinstance(body, list) and body and isinstance(body[0], BaseModel):
        body = [_plain(item) for item in body]
    elif isinstance(body, BaseModel):
        body = _plain(body)
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _plain(shape: BaseModel) -> Any:
    return shape.model_dump(mode="json", by_alias=True)


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    value = raw.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise BadInput(name, f"{name}: must be 1, 0, true or false, not {raw[:20]!r}")


def query_day_start(request: web.Request, name: str, plus_days: int = 0) -> int | None:
    """The start (µs) of the UTC day a ``YYYY-MM-DD`` parameter names, ``plus_days`` on
    (1: the end of that day, for an inclusive upper bound)."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw) + timedelta(days=plus_days)
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    except (ValueError, OverflowError) as exc:
        raise BadInput(name, f"{name}: not a date in the form YYYY-MM-DD") from exc


def query_list(request: web.Request, name: str) -> list[str]:
    """A list parameter: comma-separated, as the SDKs send it."""
    return [item for item in request.query.get(name, "").split(",") if item]


@dataclass(frozen=True)
class PageRequest:
    offset: int
    size: int
    cursor_param: str


def page_request(request: web.Request, cursor_param: str = "page[cursor]",
                 size_param: str = "page[size]") -> PageRequest:
    size = DEFAULT_PAGE_SIZE
    raw_size = request.query.get(size_param)
    if raw_size is not None:
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            raise BadInput(size_param, f"{size_param}: a whole number from 1 to {MAX_PAGE_SIZE}")
        size = int(raw_size)
    offset = 0
    cursor = request.query.get(cursor_param)
    if cursor:
        offset = _decode_cursor(cursor, cursor_param)
    return PageRequest(offset, size, cursor_param)


def cursor_page(request: web.Request, page: PageRequest, items: list[Item], more: bool
                ) -> CursorPage[Item]:
    """A CursorPage as the SDKs read it: ``data`` and ``next_cursor`` (None on the last)."""
    next_cursor = _encode_cursor(page.offset + page.size) if more else None
    prev_cursor = _encode_cursor(max(0, page.offset - page.size)) if page.offset > 0 else None

    def url(cursor: str | None) -> str | None:
        return str(request.url.update_query({page.cursor_param: cursor})) if cursor else None

    return CursorPage(
        data=items,
        path=str(request.url.with_query(None)),
        per_page=page.size,
        next_cursor=next_cursor,
        next_page_url=url(next_cursor),
        prev_cursor=prev_cursor,
        prev_page_url=url(prev_cursor),
    )


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(_dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, name: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = data["o"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise BadInput(name, f"{name}: not a cursor this API gave out") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < MAX_OFFSET:
        raise BadInput(name, f"{name}: not a cursor this API gave out")
    return offset
