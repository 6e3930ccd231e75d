"""The API's shapes on their own, without a server: what a request body is refused for
and how the refusal names the field (the ``errors`` key of a 422), what is accepted, and
that ``/v1/openapi.json`` describes the same shapes the API validates with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.api.model import read
from relay.api.openapi import SEND_EXAMPLE, openapi_document, plain
from relay.api.send import BATCH, KEY
from relay.api.send_request import SendMailRequest
from relay.api.shapes import PatchRouteData, StatsData, StatsInbound, StatsTotals, UpdateRouteData
from relay.errors import BadInput


def email(**fields: Any) -> dict[str, Any]:
    return {"from": "Acme <sender@acme.test>", "to": ["rcpt@example.org"], "subject": "Hi",
            "html": "<p>Hi</p>", **fields}


def refusal(validate: Any, data: Any, prefix: str = "") -> tuple[str, str]:
    with pytest.raises(BadInput) as caught:
        read(validate, data, prefix)
    return caught.value.field, caught.value.message


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"from": None}, "from", "from: is required"),
    ({"to": ["a@example.org", 5]}, "to[1]", "to[1]: must be a string, not a number"),
    ({"to": ["a@example.org", "nobody"]}, "to[1]", "to[1]: not an email address: 'nobody'"),
    ({"to": "a@example.org"}, "to", "to: must be an array, not a string"),
    ({"to": []}, "to", "to: needs at least one address"),
    ({"from": " "}, "from", "from: must not be empty"),
    ({"settings": {"track_clicks": "true"}}, "settings.track_clicks",
     "settings.track_clicks: must be true or false, not a string"),
    ({"settings": {"track_click": True}}, "settings.track_click",
     "settings.track_click: unknown field (only track_clicks and track_opens are supported)"),
    ({"headers": {"X Bad": "x"}}, "headers.X Bad",
     "headers.X Bad: a header name is printable ASCII without a colon"),
    ({"headers": {"Date": "tomorrow"}}, "headers.Date",
     "headers.Date: not an RFC 5322 date: 'tomorrow'"),
    ({"html": None, "text": None}, "html", "html: give html, text or both"),
    ({"attachments": [{"filename": "a.txt", "content": "aGk=", "content_type": "text"}]},
     "attachments[0].content_type", "attachments[0].content_type: not a MIME type: 'text'"),
    ({"attachments": ["aGk="]}, "attachments[0]",
     "attachments[0]: must be an object, not a string"),
    ({"tags": [{"name": "a", "value": "b"}]}, "tags",
     "tags: name/value tags are not supported; use tag and metadata"),
    ({"tag": "x" * 256}, "tag", "tag: longer than 255 characters"),
])
def test_a_send_request_is_refused_naming_the_field(
    body: dict[str, Any], field: str, message: str
) -> None:
    assert refusal(SendMailRequest.model_validate, email(**body)) == (field, message)


def test_an_unknown_field_is_named_before_anything_else() -> None:
    assert refusal(SendMailRequest.model_validate, email(to=5, colour="blue"))[0] == "colour"


def test_a_body_that_is_no_object_is_the_request_body() -> None:
    assert refusal(SendMailRequest.model_validate, [email()]) == (
        "body", "the request body must be an object, not an array")


def test_null_is_a_field_left_out_and_values_are_repaired() -> None:
    request = read(SendMailRequest.model_validate, email(
        cc=None, tag="  news\r\n", tags=[], settings=None, route="", subject="Two\nlines",
        headers={"X-Note": "a\r\nb"}))
    assert request.cc == [] and request.tag == "news" and request.route is None
    assert request.subject == "Two lines" and request.headers == {"X-Note": "a b"}
    assert request.track_clicks is None and request.rcpt_tos == ["rcpt@example.org"]


def test_a_batch_names_the_email_and_its_field() -> None:
    bad = email(attachments=[{"filename": "a.bin", "content": "!!"}])
    assert refusal(BATCH.validate_python, [email(), email(), bad], "messages") == (
        "messages[2].attachments[0].content", "messages[2].attachments[0].content: not valid "
        "base64")
    assert refusal(BATCH.validate_python, [], "messages")[0] == "messages"
    assert refusal(BATCH.validate_python, {"to": []}, "messages") == (
        "messages", "messages: must be an array, not an object")
    assert refusal(BATCH.validate_python, [email(idempotency_key="")], "messages")[0] == (
        "messages[0].idempotency_key")


def test_the_idempotency_key_header_is_one_line_of_at_most_255() -> None:
    assert read(KEY.validate_python, "order-42") == "order-42"
    assert refusal(KEY.validate_python, "a\nb", "Idempotency-Key") == (
        "Idempotency-Key", "Idempotency-Key: 1 to 255 printable characters")
    assert refusal(KEY.validate_python, "k" * 256, "Idempotency-Key")[0] == "Idempotency-Key"


@pytest.mark.parametrize(("shape", "body", "field"), [
    (UpdateRouteData, {"name": "renamed"}, "name"),
    (UpdateRouteData, {"settings": {"tls": "enforced"}}, "settings.tls"),
    (UpdateRouteData, {"settings": {"track_clicks": 1}}, "settings.track_clicks"),
    (PatchRouteData, {"settings": {"track_clicks": True}}, "settings"),
])
def test_a_route_change_is_refused_naming_the_field(
    shape: Any, body: dict[str, Any], field: str
) -> None:
    assert refusal(shape.model_validate, body)[0] == field


def test_patch_says_what_it_takes() -> None:
    assert refusal(PatchRouteData.model_validate, {"track_click": True})[1] == (
        "track_click: unknown field (PATCH takes track_clicks and track_opens)")


def test_an_answer_is_written_with_the_sdks_names() -> None:
    counts = StatsTotals(sent=1, delivered=1, hard_bounced=0, spam_complaints=0, opened=None,
                         clicked=0, inbound=StatsInbound(received=0), transactional=None,
                         broadcast=None, observed_opened=None, human_opened=None,
                         privacy_opened=None, effective_opened=None, machine_opened=None,
                         machine_clicked=None, unique_clicked=0, machine_unique_clicked=None,
                         open_tracked_delivered=0, human_open_rate=None, opened_events=None,
                         machine_opened_events=None)
    stats = StatsData(from_="2026-01-01", to="2026-01-01", totals=counts, daily=[], links=[])
    assert set(stats.model_dump(by_alias=True)) == {"from", "to", "totals", "daily", "links"}


def test_the_document_describes_the_shapes_the_api_validates() -> None:
    document = openapi_document("http://127.0.0.1/v1")
    schemas = document["components"]["schemas"]
    assert schemas["SendMailRequest"]["additionalProperties"] is False
    assert set(schemas["SendMailRequest"]["required"]) == {"from", "to", "subject"}
    assert set(schemas["SendMailRequest"]["properties"]) == {
        field.alias or name for name, field in SendMailRequest.model_fields.items()}
    send = document["paths"]["/send"]["post"]["requestBody"]["content"]["application/json"]
    read(SendMailRequest.model_validate, send["example"])  # the example is a valid request
    assert send["example"] == plain(SEND_EXAMPLE)
    refs = {ref.rpartition("/")[2] for ref in _refs(document)}
    assert refs <= set(schemas) | {f"E{code}" for code in (400, 401, 404, 409, 410, 422, 429)}
    assert json.loads(json.dumps(document)) == document  # plain JSON
    source = document["paths"]["/messages/{message_id}/source"]["get"]["responses"]
    assert set(source["200"]["content"]) == {"message/rfc822"} and "410" in source


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
