"""Messages, events, stats and webhooks through the API, read with the official SDK
(docs/api.md): a person's click and a machine's on a mail sent through the API, the events
and counts they become (machine activity only when asked), and a ``webhook.test`` delivery
that the SDK's ``Webhook(secret).verify`` accepts."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lettermint import NotFoundError, ValidationError

from relay.server import Running
from tests.api_helpers import Clients, call, email, http
from tests.conftest import TEAM_TOKEN, wait_until
from tests.receiver import Receiver, verified
from tests.redirecting import click, links_in
from tests.sink import Sink

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")

DATA = tomllib.loads((Path(__file__).parent / "data" / "user_agents.toml").read_text())
AGENTS = {a["id"]: a for a in DATA["agents"]}
PERSON = {"User-Agent": AGENTS["chrome_windows"]["user_agent"],
          **DATA["headers"]["chrome_navigation"]}
MACHINE = {"User-Agent": "python-requests/2.32.3", "Accept": "*/*"}
SECRET = "whsec_reports_test_0123456789"
TEAM = {"Authorization": f"Bearer {TEAM_TOKEN}"}


@pytest.fixture
def settings(settings: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    settings["projects"][0]["webhooks"] = [
        {"id": "acme-hook", "url": receiver.url("acme-hook"), "secret": SECRET,
         "events": ["message.clicked"]},
        {"id": "acme-off", "url": receiver.url("acme-off"), "secret": SECRET,
         "enabled": False},
    ]
    return settings


def today() -> str:
    return datetime.now(UTC).date().isoformat()


async def events(sdk: Clients, message_id: str, **query: Any) -> list[dict[str, Any]]:
    return await call(lambda: list(sdk().messages.iterate_events(message_id, query)))


async def clicked_message(relay: Running, sdk: Clients, sink: Sink) -> str:
    """A mail sent through the API, clicked by a person and by a script; returns its id
    once both clicks are events."""
    sent = await call(sdk().emails.send, email(
        html='<p><a href="https://example.com/a">A</a> <a href="https://example.com/b">B</a></p>'))
    link = links_in((await sink.wait_for(1))[0].content)[0]
    assert (await click(relay, link, headers=PERSON)).status == 302
    assert (await click(relay, link, headers=MACHINE)).status == 302

    async def both_promoted() -> bool:
        found = await events(sdk, sent["message_id"], include_machine_events=True)
        return sum(e["event"] == "clicked" for e in found) == 2

    await wait_until(both_promoted)
    return str(sent["message_id"])


async def test_message_events_after_clicks(relay: Running, sdk: Clients, sink: Sink) -> None:
    message_id = await clicked_message(relay, sdk, sink)
    human = await events(sdk, message_id)
    assert [e["event"] for e in human] == ["queued", "delivered", "clicked"]
    click_data = human[-1]["metadata"]
    assert click_data["destination_url"] == "https://example.com/a"
    assert click_data["link_index"] == 0 and click_data["anchor_text"] == "A"
    assert click_data["first_click"] and click_data["counts_for_metrics"]
    assert click_data["bot"]["machine"] is False
    everything = await events(sdk, message_id, include_machine_events=True,
                              page={"size": 1}, sort=["-timestamp"])
    assert len(everything) == 4 and everything[-1]["event"] == "queued"
    machine = next(e for e in everything if e["event"] == "clicked"
                   and e["metadata"]["bot"]["machine"])
    assert machine["metadata"]["counts_for_metrics"] is False
    assert machine["metadata"]["classification"] != "genuine" and machine["metadata"]["rules"]
    message = await call(sdk().messages.retrieve, message_id)
    assert message["status"] == "delivered" and message["to"][0]["email"] == "rcpt@example.org"


async def test_per_link_breakdown_of_a_message(relay: Running, sdk: Clients, sink: Sink) -> None:
    message_id = await clicked_message(relay, sdk, sink)
    status, _, body = await http(relay, "GET", f"/v1/messages/{message_id}/links",
                                 headers=TEAM)
    assert status == 200
    assert [(link["destination_url"], link["clicked"], link["machine_clicked"])
            for link in body["data"]] == [("https://example.com/a", 1, None),
                                           ("https://example.com/b", 0, None)]
    _, _, body = await http(relay, "GET",
                            f"/v1/messages/{message_id}/links?include_machine=1", headers=TEAM)
    assert [(link["clicked"], link["machine_clicked"]) for link in body["data"]] == [
        (2, 1), (0, 0)]


async def test_stats_count_people_and_split_out_machines(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    await clicked_message(relay, sdk, sink)
    day = today()
    human = await call(sdk().stats.retrieve, {"from": day, "to": day})
    assert human["totals"]["sent"] == 1 and human["totals"]["delivered"] == 1
    assert human["totals"]["clicked"] == 1 and human["totals"]["unique_clicked"] == 1
    assert human["totals"]["machine_clicked"] is None
    assert human["totals"]["transactional"] is None  # team-wide: no split by route type
    assert [d["date"] for d in human["daily"]] == [day]
    assert human["links"][0]["destination_url"] == "https://example.com/a"
    both = await call(sdk().stats.retrieve,
                      {"from": day, "to": day, "include_machine": True, "project_id": "acme"})
    assert both["totals"]["clicked"] == 2 and both["totals"]["machine_clicked"] == 1
    assert both["totals"]["transactional"] == {"sent": 1, "hard_bounced": 0,
                                               "spam_complaints": 0}
    week_ago = (datetime.now(UTC).date() - timedelta(days=7)).isoformat()
    week = await call(sdk().stats.retrieve, {"from": week_ago, "to": day})
    assert len(week["daily"]) == 8 and week["daily"][0]["sent"] == 0
    _, _, other_tag = await http(relay, "GET", f"/v1/stats?from={day}&to={day}&tag=none",
                                 headers=TEAM)
    assert other_tag["totals"]["sent"] == 0 and other_tag["totals"]["clicked"] == 0
    route = await call(sdk().routes.retrieve, "acme-outgoing", {"include": ["statistics"]})
    assert route["statistics"][-1]["date"] == day
    assert route["statistics"][-1]["sent_count"] == 1
    assert route["statistics"][-1]["clicked_count"] == 1


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "2026-01-02", "to": "2026-01-01"}, "to"),
    ({"from": "2026-01-01", "to": "2026-06-01"}, "to"),  # more than 90 days
    ({"from": "01/02/2026", "to": "2026-01-03"}, "from"),
])
async def test_stats_ranges_are_checked(
    relay: Running, sdk: Clients, query: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await call(sdk().stats.retrieve, query)
    assert caught.value.errors is not None and list(caught.value.errors) == [field]


async def test_unknown_messages_projects_and_webhooks_are_404(
    relay: Running, sdk: Clients
) -> None:
    with pytest.raises(NotFoundError):
        await call(sdk().messages.retrieve, "no-such-message")
    with pytest.raises(NotFoundError):
        await call(sdk().messages.events, "no-such-message")
    with pytest.raises(NotFoundError):
        await call(sdk().stats.retrieve, {"from": today(), "to": today(), "project_id": "x"})
    with pytest.raises(NotFoundError):
        await call(sdk().webhooks.test, "no-such-hook")


async def test_webhook_test_delivery_verifies_with_the_sdk(
    relay: Running, sdk: Clients, receiver: Receiver
) -> None:
    hooks = await call(sdk().webhooks.list)
    assert [h["id"] for h in hooks["data"]] == ["acme-hook", "acme-off"]
    hook = await call(sdk().webhooks.retrieve, "acme-hook")
    assert hook["include_machine_events"] is False and hook["url"] == receiver.url("acme-hook")
    queued = await call(sdk().webhooks.test, "acme-hook")
    await wait_until(lambda: receiver.to("acme-hook"))
    payload = verified(receiver.to("acme-hook")[0], SECRET)
    assert payload["event"] == "webhook.test" and payload["id"] == queued["delivery_id"]

    async def delivered() -> list[dict[str, Any]]:
        page = await call(sdk().webhooks.deliveries.list, "acme-hook")
        return [d for d in page["data"] if d["status"] == "success"]

    (delivery,) = await wait_until(delivered)
    assert delivery["id"] == queued["delivery_id"] and delivery["http_status_code"] == 200
    assert delivery["event_type"] == "webhook.test" and delivery["attempt_number"] == 1
    status, _, body = await http(relay, "POST", "/v1/webhooks/acme-off/test", headers=TEAM)
    assert status == 409 and "disabled" in body["message"]
