"""Routes through the API (docs/api.md): read with the SDK, changed by PUT (the SDK's shape)
and PATCH (the click tracking document's), written back into the TOML file with its
comments and layout, and in force for the very next send."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from lettermint import NotFoundError, ValidationError

from relay.config.load import load_config
from relay.config.writeback import edit_route_settings
from relay.errors import Conflict
from relay.server import Running, running
from tests.api_helpers import TRACKED, Clients, call, email, http, read_text, write_text
from tests.conftest import TEAM_TOKEN
from tests.sink import Sink

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")

HEADER = "# clickrelay test configuration: keep this comment\n"
OUTGOING_BEFORE = 'slug = "outgoing"\ntype = "transactional"\ndefault = true\ntrack_clicks = true\n'
OUTGOING = OUTGOING_BEFORE.replace("true\n", "true          # receipts are tracked\n")
NEWS = 'slug = "news"\n# news opts in per email\n'
TEAM = {"Authorization": f"Bearer {TEAM_TOKEN}", "Content-Type": "application/json"}


def commented(settings: dict[str, Any]) -> str:
    text = tomlkit.dumps(settings)
    assert text.count(OUTGOING_BEFORE) == 1 and text.count('slug = "news"\n') == 1
    text = text.replace(OUTGOING_BEFORE, OUTGOING).replace('slug = "news"\n', NEWS)
    return HEADER + text


@pytest.fixture
async def relay(settings: dict[str, Any], config_path: Path) -> AsyncIterator[Running]:
    """clickrelay on a configuration file written by hand, comments included."""
    await write_text(config_path, commented(settings))
    async with running(load_config(config_path)) as r:
        yield r


async def patch(relay: Running, route_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, _, data = await http(relay, "PATCH", f"/v1/routes/{route_id}",
                                 data=json.dumps(body), headers=TEAM)
    return status, data


async def sent_content(relay: Running, sdk: Clients, sink: Sink, **fields: Any) -> bytes:
    count = len(sink.received)
    await call(sdk().emails.send, email(**fields))
    return (await sink.wait_for(count + 1))[count].content


async def test_routes_read_with_the_sdk(relay: Running, sdk: Clients) -> None:
    route = await call(sdk().routes.retrieve, "acme-outgoing")
    assert route["project_id"] == "acme" and route["slug"] == "outgoing"
    assert route["is_default"] and route["settings"]["track_clicks"] is True
    page = await call(sdk().routes.list, "acme", {"page": {"size": 2}})
    assert [r["id"] for r in page["data"]] == ["acme-outgoing", "acme-news"]
    assert page["next_cursor"]
    everything = await call(lambda: list(sdk().routes.iterate("acme", {"page": {"size": 2}})))
    assert [r["id"] for r in everything] == ["acme-outgoing", "acme-news", "acme-inbound"]
    broadcast = await call(sdk().routes.list, "acme", {"filter": {"route_type": "broadcast"}})
    assert [r["id"] for r in broadcast["data"]] == ["acme-news"]
    by_slug = await call(sdk().routes.list, "acme", {"sort": ["slug"]})
    assert [r["slug"] for r in by_slug["data"]] == ["inbound", "news", "outgoing"]
    newest = await call(sdk().routes.list, "acme", {"sort": ["-created_at"]})
    assert [r["id"] for r in newest["data"]] == ["acme-inbound", "acme-news", "acme-outgoing"]


async def test_put_writes_back_keeps_comments_and_applies_at_once(
    relay: Running, sdk: Clients, sink: Sink, config_path: Path
) -> None:
    before = (await read_text(config_path))
    assert TRACKED.search(await sent_content(relay, sdk, sink))
    result = await call(sdk().routes.update, "acme-outgoing",
                        {"settings": {"track_clicks": False}})
    assert result["data"]["settings"]["track_clicks"] is False
    after = (await read_text(config_path))
    assert after == before.replace(
        "track_clicks = true          # receipts are tracked",
        "track_clicks = false         # receipts are tracked")
    assert not TRACKED.search(await sent_content(relay, sdk, sink))
    await call(sdk().routes.update, "acme-outgoing", {"settings": {"track_clicks": True}})
    assert (await read_text(config_path)) == before
    assert TRACKED.search(await sent_content(relay, sdk, sink))


async def test_patch_as_the_click_tracking_document_shows(
    relay: Running, sdk: Clients, sink: Sink, config_path: Path
) -> None:
    before = (await read_text(config_path))
    assert not TRACKED.search(await sent_content(relay, sdk, sink, route="news"))
    status, body = await patch(relay, "acme-news", {"track_clicks": True})
    assert status == 200 and body["data"]["settings"]["track_clicks"] is True
    assert (await read_text(config_path)) == before.replace(
        NEWS + 'type = "broadcast"\ntrack_clicks = false',
        NEWS + 'type = "broadcast"\ntrack_clicks = true')
    assert TRACKED.search(await sent_content(relay, sdk, sink, route="news"))
    assert relay.config().find_route("acme-news") is not None


async def test_patch_adds_a_key_the_route_did_not_have(
    relay: Running, config_path: Path
) -> None:
    status, body = await patch(relay, "acme-news", {"track_opens": True})
    assert status == 200 and body["data"]["settings"]["track_opens"] is True
    assert 'track_clicks = false\ntrack_opens = true\n' in (await read_text(config_path))
    on_disk = await asyncio.to_thread(load_config, config_path)
    assert on_disk.find_route("acme-news")[1].track_opens  # type: ignore[index]


@pytest.mark.parametrize("key", ["track_clicks", "track_opens"])
async def test_an_inbound_route_never_tracks(
    relay: Running, sdk: Clients, config_path: Path, key: str
) -> None:
    before = (await read_text(config_path))
    with pytest.raises(ValidationError) as caught:
        await call(sdk().routes.update, "acme-inbound", {"settings": {key: True}})
    assert caught.value.errors == {
        f"settings.{key}": [f"settings.{key}: an inbound route never tracks {key[6:]}"]}
    status, body = await patch(relay, "acme-inbound", {key: True})
    assert status == 422 and list(body["errors"]) == [key]
    assert (await read_text(config_path)) == before
    status, body = await patch(relay, "acme-inbound", {key: False})
    assert status == 200 and body["data"]["settings"][key] is False
    assert (await read_text(config_path)) == before.replace(
        'type = "inbound"\n', f'type = "inbound"\n{key} = false\n')


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "renamed"}, "name"),
    ({"settings": {"tls": "enforced"}}, "settings.tls"),
    ({"settings": {"track_clicks": "on"}}, "settings.track_clicks"),
    ({"settings": {"colour": True}}, "settings.colour"),
])
async def test_what_a_route_cannot_hold_is_refused(
    relay: Running, sdk: Clients, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await call(sdk().routes.update, "acme-outgoing", body)
    assert caught.value.errors is not None and list(caught.value.errors) == [field]


async def test_unknown_routes_and_projects_are_404(relay: Running, sdk: Clients) -> None:
    with pytest.raises(NotFoundError):
        await call(sdk().routes.retrieve, "nope")
    with pytest.raises(NotFoundError):
        await call(sdk().routes.update, "nope", {"settings": {"track_clicks": True}})
    with pytest.raises(NotFoundError):
        await call(sdk().routes.list, "nope")
    status, body = await patch(relay, "nope", {"track_clicks": True})
    assert status == 404 and body["error"] == "RESOURCE_NOT_FOUND"


async def test_an_admin_edit_and_reload_work_alongside(
    relay: Running, config_path: Path
) -> None:
    assert (await patch(relay, "acme-outgoing", {"track_clicks": False}))[0] == 200
    # The administrator turns tracking on for news by hand and reloads (SIGHUP).
    text = (await read_text(config_path))
    edited = text.replace(NEWS + 'type = "broadcast"\ntrack_clicks = false',
                          NEWS + 'type = "broadcast"\ntrack_clicks = true')
    assert edited != text
    await write_text(config_path, edited)
    assert await relay.config.reload()
    routes = {r.id: r.track_clicks for r in relay.config().projects[0].routes}
    assert routes["acme-outgoing"] is False and routes["acme-news"] is True
    # The next write-back starts from the administrator's file.
    assert (await patch(relay, "acme-outgoing", {"track_clicks": True}))[0] == 200
    final = (await read_text(config_path))
    assert "track_clicks = true          # receipts are tracked" in final
    assert NEWS + 'type = "broadcast"\ntrack_clicks = true' in final
    assert final.startswith(HEADER)


async def test_a_broken_file_is_not_written_over(relay: Running, config_path: Path) -> None:
    broken = (await read_text(config_path)) + "\n[[projects\n"
    await write_text(config_path, broken)
    status, body = await patch(relay, "acme-outgoing", {"track_clicks": False})
    assert status == 409 and "not valid TOML" in body["message"]
    assert (await read_text(config_path)) == broken
    assert relay.config().find_route("acme-outgoing")[1].track_clicks  # type: ignore[index]


async def test_a_file_that_would_not_load_is_not_written(
    relay: Running, config_path: Path
) -> None:
    text = (await read_text(config_path)).replace("[smtp]\n", "[smtp]\nlistn = 1\n")
    await write_text(config_path, text)  # valid TOML, but not a valid configuration
    status, body = await patch(relay, "acme-outgoing", {"track_clicks": False})
    assert status == 409 and "smtp.listn: unknown key" in body["message"]
    assert (await read_text(config_path)) == text
    left = await asyncio.to_thread(lambda: list(config_path.parent.glob("*.tmp")))
    assert left == []


async def test_write_back_keeps_the_file_private(relay: Running, config_path: Path) -> None:
    await asyncio.to_thread(os.chmod, config_path, 0o600)
    assert (await patch(relay, "acme-outgoing", {"track_clicks": False}))[0] == 200
    mode = (await asyncio.to_thread(config_path.stat)).st_mode
    assert stat.S_IMODE(mode) == 0o600


async def test_concurrent_changes_are_all_kept(relay: Running, config_path: Path) -> None:
    wanted = {"acme-outgoing": False, "acme-news": True, "other-main": False}
    results = await asyncio.gather(*(patch(relay, route, {"track_clicks": value})
                                     for route, value in wanted.items()))
    assert [status for status, _ in results] == [200, 200, 200]
    on_disk = await asyncio.to_thread(load_config, config_path)
    for route_id, value in wanted.items():
        assert on_disk.find_route(route_id)[1].track_clicks is value  # type: ignore[index]
        assert relay.config().find_route(route_id)[1].track_clicks is value  # type: ignore[index]
    assert (await read_text(config_path)).startswith(HEADER)


def test_edit_keeps_inline_tables_and_aligned_comments() -> None:
    text = (
        '[[projects]]\nid = "p"  # the project\n'
        'routes = [{ id = "r1", slug = "a", track_clicks = false }, { id = "r2", slug = "b" }]\n'
        '[[projects]]\nid = "q"\n\n  [[projects.routes]]\n  id = "r3"\n'
        "  track_clicks = false   # aligned\n  slug = \"c\"  # after\n"
    )
    out = edit_route_settings(text, "r1", {"track_clicks": True})
    assert out == text.replace("track_clicks = false }", "track_clicks = true }")
    out = edit_route_settings(text, "r3", {"track_clicks": True})
    assert out == text.replace("track_clicks = false   # aligned",
                               "track_clicks = true    # aligned")
    with pytest.raises(Conflict):
        edit_route_settings(text, "r9", {"track_clicks": True})
