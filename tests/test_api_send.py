"""The send API driven by the official Lettermint SDK (docs/api.md): the same pipeline as SMTP
(route, per-email override, per-recipient copies, spool), batches, idempotency, and the
errors the SDK turns into its exceptions."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
from typing import Any

import pytest
from lettermint import AuthenticationError, ConflictError, ValidationError

from relay.server import Running
from relay.submission.accept import Accepted
from tests.api_helpers import TRACKED, Clients, call, http
from tests.api_helpers import email as message
from tests.conftest import OTHER_TOKEN, finished
from tests.sink import Sink

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")


def parsed(content: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


async def test_ping_answers_pong_to_either_token(relay: Running, sdk: Clients) -> None:
    assert await call(sdk().ping) == "pong"
    assert await call(sdk(team_token=None).emails.ping) == "pong"


@pytest.mark.parametrize(("route", "track_clicks", "tracked"), [
    ("outgoing", False, False),  # the per-email override beats a tracking route
    ("news", True, True),  # and an untracked one
    ("news", None, False),
    (None, None, True),  # the default route tracks
])
async def test_send_tracks_as_route_and_override_decide(
    relay: Running, sdk: Clients, sink: Sink, route: str | None,
    track_clicks: bool | None, tracked: bool,
) -> None:
    fields: dict[str, Any] = {}
    if route:
        fields["route"] = route
    if track_clicks is not None:
        fields["settings"] = {"track_clicks": track_clicks}
    result = await call(sdk().emails.send, message(**fields))
    assert result["status"] == "pending"
    content = (await sink.wait_for(1))[0].content
    assert bool(TRACKED.search(content)) is tracked
    assert b"https://example.com/a" in content  # the text part is never rewritten
    stored = await relay.store.get_message(result["message_id"])
    assert stored is not None and stored.track_clicks is tracked


async def test_send_builds_the_message_and_copies_per_recipient(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    logo = base64.b64encode(b"\x89PNG fake").decode()
    request = message(
        to=["Jane Doe <jane@example.org>"], cc=["carl@example.org"],
        bcc=["hidden@example.org"], reply_to=["Help <help@acme.test>"],
        subject="Grüße", headers={"X-Custom": "stays"}, metadata={"user": "42"},
        tag="welcome",
        html='<p><a href="https://example.com/a">A</a><img src="cid:logo"></p>',
        attachments=[
            {"filename": "logo.png", "content": logo, "content_id": "logo"},
            {"filename": "invoice.pdf", "content": base64.b64encode(b"%PDF-1.4").decode()},
        ],
    )
    result = await call(sdk().emails.send, request)
    received = await sink.wait_for(3)
    assert sorted(r.rcpt_tos[0] for r in received) == [
        "carl@example.org", "hidden@example.org", "jane@example.org"]
    assert {r.mail_from for r in received} == {"sender@acme.test"}
    msg = parsed(received[0].content)
    assert msg["From"] == "Acme <sender@acme.test>"
    assert msg["To"] == "Jane Doe <jane@example.org>" and msg["Cc"] == "carl@example.org"
    assert msg["Bcc"] is None and msg["Reply-To"] == "Help <help@acme.test>"
    assert msg["Subject"] == "Grüße" and msg["X-Custom"] == "stays"
    assert msg["Message-ID"] and msg["Date"]
    head = received[0].content.split(b"\r\n\r\n", 1)[0].lower()
    assert b"x-lm-" not in head and b"x-lettermint-" not in head
    inline = next(p for p in msg.walk() if p["Content-ID"] == "<logo>")
    assert inline.get_content() == b"\x89PNG fake"
    pdf = next(p for p in msg.iter_attachments() if p.get_filename() == "invoice.pdf")
    assert pdf.get_content() == b"%PDF-1.4"
    copy = await relay.store.get_message(result["message_id"])
    assert copy is not None and copy.tag == "welcome" and copy.metadata == {"user": "42"}
    assert copy.rcpt_to == "jane@example.org"  # the first copy's id is the answer


async def test_batch_sends_each_email_with_its_own_settings(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    results = await call(sdk().emails.send_batch, [
        message(to=["a@example.org"], settings={"track_clicks": False}),
        message(to=["b@example.org"], route="news", settings={"track_clicks": True}),
    ])
    assert [r["status"] for r in results] == ["pending", "pending"]
    received = {r.rcpt_tos[0]: r.content for r in await sink.wait_for(2)}
    assert not TRACKED.search(received["a@example.org"])
    assert TRACKED.search(received["b@example.org"])


async def test_batch_with_one_bad_email_sends_nothing(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    with pytest.raises(ValidationError) as caught:
        await call(sdk().emails.send_batch,
                   [message(), message(to=["not an address"])])
    assert caught.value.errors is not None and "messages[1].to[0]" in caught.value.errors
    assert (await relay.store.spool_summary(0)).queued == 0 and sink.received == []


async def test_idempotency_key_replays_the_first_answer(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    client = sdk()
    first = await call(client.emails.send, message(), idempotency_key="order-1")
    again = await call(client.emails.send, message(), idempotency_key="order-1")
    assert again == first
    await finished(relay, first["message_id"])
    status, headers, _ = await http(
        relay, "POST", "/v1/send", data=json.dumps(message()),
        headers={"x-lettermint-token": relay.config().projects[0].token,
                 "Idempotency-Key": "order-1", "Content-Type": "application/json"})
    assert status == 202 and headers["Idempotent-Replayed"] == "true"
    assert len(sink.received) == 1


async def test_idempotency_key_with_another_body_is_a_conflict(
    relay: Running, sdk: Clients
) -> None:
    client = sdk()
    await call(client.emails.send, message(), idempotency_key="k")
    with pytest.raises(ConflictError) as caught:
        await call(client.emails.send, message(subject="Other"), idempotency_key="k")
    assert "different request body" in caught.value.message
    # Keys belong to their project: another project may use the same one.
    other = sdk(sending_token=OTHER_TOKEN)
    assert (await call(other.emails.send, message(), idempotency_key="k"))["status"] == "pending"


async def test_idempotency_key_in_flight_is_a_conflict(
    relay: Running, sdk: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    accept = relay.submitter.accept

    async def held(*args: Any, **kwargs: Any) -> Accepted:
        entered.set()
        await release.wait()
        return await accept(*args, **kwargs)

    monkeypatch.setattr(relay.submitter, "accept", held)
    client = sdk()
    first = asyncio.create_task(call(client.emails.send, message(), idempotency_key="slow"))
    await entered.wait()
    with pytest.raises(ConflictError) as caught:
        await call(client.emails.send, message(), idempotency_key="slow")
    assert "still being processed" in caught.value.message
    release.set()
    assert (await first)["status"] == "pending"


async def test_failed_send_frees_its_idempotency_key(
    relay: Running, sdk: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept = relay.submitter.accept

    async def broken(*args: Any, **kwargs: Any) -> Accepted:
        raise OSError("disk full")

    monkeypatch.setattr(relay.submitter, "accept", broken)
    status, _, body = await http(
        relay, "POST", "/v1/send", data=json.dumps(message()),
        headers={"x-lettermint-token": relay.config().projects[0].token,
                 "Idempotency-Key": "retry-me"})
    assert status == 500 and body["error"] == "INTERNAL_ERROR" and "disk" not in body["message"]
    monkeypatch.setattr(relay.submitter, "accept", accept)
    result = await call(sdk().emails.send, message(), idempotency_key="retry-me")
    assert result["status"] == "pending"


async def test_batch_item_keys_send_only_what_was_not_sent(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    client = sdk()
    first = await call(client.emails.send_batch, [
        {**message(to=["a@example.org"]), "idempotency_key": "a"},
        {**message(to=["b@example.org"]), "idempotency_key": "b"},
    ])
    second = await call(client.emails.send_batch, [
        {**message(to=["b@example.org"]), "idempotency_key": "b"},
        {**message(to=["c@example.org"]), "idempotency_key": "c"},
    ])
    assert second[0] == first[1] and second[1]["message_id"] not in {
        r["message_id"] for r in first}
    await sink.wait_for(3)
    await finished(relay, second[1]["message_id"])
    assert sorted(r.rcpt_tos[0] for r in sink.received) == [
        "a@example.org", "b@example.org", "c@example.org"]
    with pytest.raises(ConflictError):
        await call(client.emails.send_batch,
                   [{**message(subject="changed"), "idempotency_key": "a"}])


async def test_missing_or_wrong_tokens_are_401(relay: Running, sdk: Clients) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await call(sdk(sending_token="wrong-token").emails.send, message())
    assert caught.value.code == "UNAUTHENTICATED"
    with pytest.raises(AuthenticationError):
        await call(sdk(team_token="wrong-token").ping)
    with pytest.raises(AuthenticationError):  # a project token is not a team token
        await call(sdk(team_token=relay.config().projects[0].token).routes.retrieve,
                   "acme-outgoing")
    status, headers, body = await http(relay, "POST", "/v1/send", data=json.dumps(message()))
    assert status == 401 and "x-lettermint-token" in body["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("fields", "field"), [
    ({"from": "no-at-sign"}, "from"),
    ({"subject": None}, "subject"),
    ({"to": []}, "to"),
    ({"html": None, "text": None}, "html"),
    ({"route": "nope"}, "route"),
    ({"to": [f"r{i}@example.org" for i in range(6)]}, "to"),  # the test limit is 5
    ({"settings": {"track_clicks": "yes"}}, "settings.track_clicks"),
    ({"attachments": [{"filename": "a.bin", "content": "!!!"}]}, "attachments[0].content"),
    ({"headers": {"Subject": "twice"}}, "headers.Subject"),
    ({"scheduled_at": "tomorrow 9am"}, "scheduled_at"),
    ({"metadata": {"n": 1}}, "metadata.n"),
    ({"colour": "blue"}, "colour"),
])
async def test_validation_errors_name_the_field(
    relay: Running, sdk: Clients, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await call(sdk().emails.send, message(**fields))
    assert caught.value.status == 422 and caught.value.errors is not None
    assert list(caught.value.errors) == [field]


async def test_a_message_over_the_size_limit_is_refused(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    big = base64.b64encode(b"x" * 2_100_000).decode()  # the test limit is 2 MB
    with pytest.raises(ValidationError) as caught:
        await call(sdk().emails.send,
                   message(attachments=[{"filename": "big.bin", "content": big}]))
    assert caught.value.errors is not None and "attachments" in caught.value.errors
    assert sink.received == []


async def test_malformed_json_is_400_with_a_json_body(relay: Running) -> None:
    token = relay.config().projects[0].token
    status, _, body = await http(relay, "POST", "/v1/send", data=b"{not json",
                                 headers={"x-lettermint-token": token})
    assert status == 400 and body["error"] == "MALFORMED_REQUEST"
    status, _, body = await http(relay, "POST", "/v1/send", data=b'{"a": NaN}',
                                 headers={"x-lettermint-token": token})
    assert status == 400


async def test_text_that_is_not_unicode_names_its_field(relay: Running, sink: Sink) -> None:
    body = json.dumps(message(to=["rcpt@example.org"])).replace('"Hello"', '"Hi \\ud800"')
    status, _, answer = await http(relay, "POST", "/v1/send", data=body,
                                   headers={"x-lettermint-token": relay.config().projects[0].token})
    assert status == 422 and list(answer["errors"]) == ["subject"]
    assert sink.received == []


async def test_unknown_paths_and_methods_answer_json(relay: Running) -> None:
    status, _, body = await http(relay, "GET", "/v1/nothing-here")
    assert status == 404 and body["error"] == "RESOURCE_NOT_FOUND"
    status, _, body = await http(relay, "DELETE", "/v1/send")
    assert status == 405 and body["error"] == "METHOD_NOT_ALLOWED"
