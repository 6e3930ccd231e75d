"""Every operation of ``/v1/openapi.json``, fuzzed by schemathesis (property-based, on
hypothesis) against the running clickrelay: requests the document allows and requests it
does not, with valid credentials, random ids and real ids. No answer may be a 5xx, and
every answer must be one the document describes (status, content type, body schema).

Bounded and deterministic: a fixed number of examples per operation, derandomized, no
example database; all traffic stays on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relay.api.send import prepare
from relay.config.load import parse_config
from relay.errors import BadInput
from relay.server import Running
from tests.api_helpers import Clients, base_url, call, email, http
from tests.conftest import PROJECT_TOKEN, TEAM_TOKEN, base_settings
from tests.receiver import Receiver

EXAMPLES = 20  # per operation, generation mode and set of ids
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
AUTH = {"sendingToken": {"x-lettermint-token": PROJECT_TOKEN},
        "teamToken": {"Authorization": f"Bearer {TEAM_TOKEN}"}}


@pytest.fixture
def settings(settings: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    settings["projects"][0]["webhooks"] = [
        {"id": "acme-hook", "url": receiver.url("acme-hook"), "secret": "whsec_fuzz_0123456789"}]
    return settings


@pytest.mark.slow
async def test_no_request_makes_the_api_fail(relay: Running, sdk: Clients) -> None:
    sent = await call(sdk().emails.send, email())
    status, _, document = await http(relay, "GET", "/v1/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    known = {"route_id": "acme-news", "project_id": "acme", "message_id": sent["message_id"],
             "webhook_id": "acme-hook"}
    checked = await asyncio.to_thread(fuzz, document, base_url(relay), known)
    assert checked >= len(document["paths"]) * EXAMPLES  # every operation was exercised


def fuzz(document: dict[str, Any], base: str, known: dict[str, str]) -> int:
    """Run every operation in both generation modes, with generated and with real path
    ids; raise on the first failed check. Blocking: runs in a worker thread."""
    schema = schemathesis.openapi.from_dict(document)
    calls = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            headers = _auth(operation.definition.raw.get("security", []))
            ids = {k: v for k, v in known.items() if "{" + k + "}" in operation.path}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for fixed in ({}, ids) if ids else ({},):
                    strategy = operation.as_strategy(generation_mode=mode,
                                                     path_parameters=fixed or None)
                    try:
                        calls += _run(strategy, session, base, headers)
                    except Unsatisfiable:
                        # Nothing in the operation can be made invalid (no parameters, no
                        # body): there is no negative case to send.
                        assert mode is GenerationMode.NEGATIVE, operation.label
    return calls


def _run(strategy: Any, session: requests.Session, base: str, headers: dict[str, str]) -> int:
    count = 0

    @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        nonlocal count
        count += 1
        response = case.call(base_url=base, session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    check()
    return count


TEXT = st.text(max_size=30)
ADDRESS = st.one_of(
    st.sampled_from(["a@example.org", "Jöhn <j@example.org>", '"Doe, J" <d@x.test>',
                     "ü@exämple.org"]),
    TEXT, st.from_regex(r"[^@\s]{1,8}@[^@\s]{1,8}", fullmatch=True),
)
HEADER_NAME = st.one_of(TEXT, st.from_regex(r"[!-9;-~]{1,12}", fullmatch=True),
                        st.sampled_from(["Date", "Message-ID", "References", "Sender",
                                         "X-LM-Tag", "List-Unsubscribe", "Received"]))
SEND_REQUESTS = st.fixed_dictionaries(
    {"from": ADDRESS, "to": st.lists(ADDRESS, max_size=3), "subject": TEXT, "html": TEXT},
    optional={
        "text": TEXT, "cc": st.lists(ADDRESS, max_size=2),
        "reply_to": st.lists(ADDRESS, max_size=2),
        "headers": st.dictionaries(HEADER_NAME, TEXT, max_size=3),
        "metadata": st.dictionaries(HEADER_NAME, TEXT, max_size=3),
        "tag": st.one_of(st.none(), TEXT), "route": st.sampled_from(["outgoing", "news", "x"]),
        "settings": st.dictionaries(st.sampled_from(["track_clicks", "track_opens"]),
                                    st.one_of(st.booleans(), TEXT)),
        "attachments": st.lists(st.fixed_dictionaries(
            {"filename": TEXT, "content": st.one_of(TEXT, st.just("aGVsbG8="))},
            optional={"content_type": TEXT, "content_id": TEXT}), max_size=2),
    },
)


def test_any_send_request_is_built_or_refused_by_field(tmp_path: Path) -> None:
    """Whatever the fields hold, building the message ends in a message or a 422 that
    names one of them; never another exception (a 500)."""
    config = parse_config(base_settings(tmp_path, 25), tmp_path / "c.toml")

    @hypothesis.settings(max_examples=400, derandomize=True, database=None, deadline=None)
    @given(data=SEND_REQUESTS)
    def build(data: dict[str, Any]) -> None:
        try:
            prepared = prepare(config, config.projects[0], data)
        except BadInput as exc:
            assert exc.field.split(".")[0].split("[")[0] in {*data, "html", "to", "route"}
            return
        assert prepared.raw.startswith(b"From: ") and b"\r\n\r\n" in prepared.raw

    build()


def _auth(security: list[dict[str, Any]]) -> dict[str, str]:
    """Valid credentials for the operation, so that the fuzzing gets past them."""
    for requirement in security:
        for scheme in requirement:
            if scheme in AUTH:
                return AUTH[scheme]
    return {}
