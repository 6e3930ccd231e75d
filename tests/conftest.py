"""Shared fixtures: a real upstream sink, a configuration file in a tmp dir, and
clickrelay itself running on loopback port 0 in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import tomlkit

from relay.config.load import Config, load_config
from relay.server import Running, running
from store.store import Store
from tests.postgres import fresh_schema
from tests.receiver import Receiver
from tests.silent import Silent
from tests.sink import Sink

if TYPE_CHECKING:
    from tests.api_helpers import Clients

PROJECT_TOKEN = "test-project-token-0123456789"
OTHER_TOKEN = "test-other-token-0123456789"
TEAM_TOKEN = "test-team-token-0123456789"
SIGNING_SECRET = "test-signing-key-0123456789abcdef0123"
CORPUS = Path(__file__).resolve().parent / "data" / "corpus"  # sources: its SOURCES.md


def base_settings(tmp_path: Path, upstream_port: int) -> dict[str, Any]:
    return {
        "smtp": {"listen": "127.0.0.1:0", "hostname": "relay.test", "max_recipients": 5,
                 "max_message_size": 2_000_000},
        "upstream": {"url": f"smtp://127.0.0.1:{upstream_port}", "retry_initial_seconds": 0.05,
                     "timeout_seconds": 10},
        "http": {"listen": "127.0.0.1:0", "trusted_proxies": ["127.0.0.1/32"]},
        "tracking": {"base_url": "http://t.localhost:8080", "token_ttl_days": 30,
                     "signing_keys": [{"id": "k1", "secret": SIGNING_SECRET}],
                     "settle_seconds": 0,
                     # A click waits for its commit however slow the test machine is, so
                     # that "stored before the 302" holds; fault tests set their own.
                     "store_deadline_ms": 30_000},
        "store": {"url": f"sqlite:///{tmp_path / 'data' / 'clickrelay.db'}"},
        "api": {"team_token": TEAM_TOKEN},
        "projects": [
            {
                "id": "acme", "sid": "acme1", "token": PROJECT_TOKEN,
                "routes": [
                    {"id": "acme-outgoing", "slug": "outgoing", "type": "transactional",
                     "default": True, "track_clicks": True},
                    {"id": "acme-news", "slug": "news", "type": "broadcast",
                     "track_clicks": False},
                    {"id": "acme-inbound", "slug": "inbound", "type": "inbound"},
                ],
                "webhooks": [],
            },
            {
                "id": "other", "sid": "other1", "token": OTHER_TOKEN,
                "routes": [{"id": "other-main", "slug": "main", "default": True,
                            "track_clicks": True}],
            },
        ],
    }


def upstream_at(settings: dict[str, Any], sink: Sink, scheme: str = "smtp",
                **options: Path | str) -> Sink:
    """Make ``sink`` the relay's upstream, with ``[upstream]`` ``options`` (in a fixture
    that the ``relay`` fixture comes after)."""
    settings["upstream"]["url"] = f"{scheme}://127.0.0.1:{sink.port}"
    settings["upstream"].update({name: str(value) for name, value in options.items()})
    return sink


def write_config(path: Path, settings: dict[str, Any]) -> Config:
    path.write_text(tomlkit.dumps(settings), encoding="utf-8")
    return load_config(path)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real webhook receiver on a loopback port (tests/receiver.py)."""
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test
    (tests/postgres.py); the test is skipped when no PostgreSQL answers."""
    async with fresh_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The store, on each database in turn: a SQLite file, then a PostgreSQL schema of
    its own (skipped with the reason when no PostgreSQL answers; CI has one)."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            where: Path | str = tmp_path / "data" / "clickrelay.db"
        else:
            where = await stack.enter_async_context(fresh_schema())
        opened = await Store.open(where)
        stack.push_async_callback(opened.close)
        yield opened


@pytest.fixture(params=["sqlite", "postgresql"])
async def both_stores(request: pytest.FixtureRequest, settings: dict[str, Any]
                      ) -> AsyncIterator[str]:
    """The relay on each database in turn (``usefixtures``, before ``relay``): its own
    SQLite file, then a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    async with fresh_schema() as url:
        settings["store"]["url"] = url
        yield "postgresql"


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    """A TCP server that accepts and never answers (tests/silent.py)."""
    s = Silent()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def sdk(relay: Running) -> Iterator[Clients]:
    """Lettermint SDK clients against the relay, closed at the end of the test."""
    from tests.api_helpers import Clients  # it imports this module

    clients = Clients(relay)
    yield clients
    clients.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def settings(tmp_path: Path, sink: Sink) -> dict[str, Any]:
    return base_settings(tmp_path, sink.port)


@pytest.fixture(params=[True, False], ids=["front", "aiohttp"])
def both_click_paths(request: pytest.FixtureRequest, settings: dict[str, Any]) -> bool:
    """Clicks answered by the listener's front, then by aiohttp alone (``[http]
    click_front``): for tests that must hold over both (``usefixtures``, before ``relay``)."""
    settings["http"]["click_front"] = request.param
    return bool(request.param)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "clickrelay.toml"


@pytest.fixture
async def relay(settings: dict[str, Any], config_path: Path) -> AsyncIterator[Running]:
    config = write_config(config_path, settings)
    async with running(config) as r:
        yield r


def smtp_send(port: int, message: bytes | str, *, rcpts: list[str] | None = None,
              mail_from: str = "sender@acme.test", token: str = PROJECT_TOKEN,
              login: bool = True) -> dict[str, Any]:
    """Send with the standard library's blocking client (call it in a thread)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        if login:
            client.login("anything", token)
        raw = message.encode() if isinstance(message, str) else message
        return client.sendmail(mail_from, rcpts or ["rcpt@example.org"], raw)


async def send(port: int, message: bytes | str, **kwargs: Any) -> dict[str, Any]:
    return await asyncio.to_thread(smtp_send, port, message, **kwargs)


def simple_message(html: str = '<p><a href="https://example.com/a">A</a></p>',
                   headers: str = "", subject: str = "Hello") -> bytes:
    text = (
        "From: Sender <sender@acme.test>\r\n"
        "To: Rcpt <rcpt@example.org>\r\n"
        f"Subject: {subject}\r\n"
        "MIME-Version: 1.0\r\n"
        f"{headers}"
        "Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Plain https://example.com/a\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        f"{html}\r\n"
        "--b1--\r\n"
    )
    return text.encode()


Sender = Callable[..., Any]


async def sqlite_plan(directory: Path, sql: str, params: Sequence[Any]) -> list[str]:
    """SQLite's plan of a statement (EXPLAIN QUERY PLAN) on a fresh, migrated store in
    ``directory``: the detail of each step."""
    store = await Store.open(directory / "plan.db")
    try:
        plan = await store.db.fetchall("EXPLAIN QUERY PLAN " + sql, params)
    finally:
        await store.close()
    return [row[3] for row in plan]


async def wait_until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll an (async or plain) condition until it is truthy; a guard against hanging,
    not a timed assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


async def finished(relay: Running, message_id: str) -> Any:
    """Wait until a spooled copy is delivered or failed; return its record."""

    async def done() -> Any:
        message = await relay.store.get_message(message_id)
        return message if message and message.status != "queued" else None

    return await wait_until(done)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The call's report on the test item, for fixtures that act on a failure (the
    browser tests' screenshot, tests/browser.py)."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
