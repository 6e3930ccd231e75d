"""What the redirect remembers between clicks (docs/redirect.md): each cache is bounded, gives
the answer the uncached code gives, and starts afresh when a reload puts a new
configuration in force (new address-hash key, new network lists, new tracking domains).
The tests that click run with the listener's front and with plain aiohttp."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.server import Running
from store.clicks import _headers_json
from tests.conftest import write_config
from tests.redirecting import click, token
from tracker.clicks.network import (
    address_hash,
    address_hasher,
    address_reducer,
    build_table,
    client_address,
)
from tracker.http.redirect import (
    HOST_CACHE_SIZE,
    LOCATION_CACHE_SIZE,
    REDIRECTOR_KEY,
    Redirector,
    host_serves,
)

ip = ipaddress.ip_address
net = ipaddress.ip_network
EOP = "40.107.5.5"  # in the shipped microsoft_eop list


async def _observed(relay: Running, message_id: str, **headers: str) -> Any:
    answer = await click(relay, token(message_id=message_id), headers=headers)
    assert answer.status == 302
    [obs] = await relay.store.get_observations(message_id)
    return obs


@pytest.mark.usefixtures("both_click_paths")
async def test_reload_changes_what_a_click_keeps_of_its_address(
    relay: Running, settings: dict[str, Any], config_path: Path
) -> None:
    # The tests trust the peer (127.0.0.1/32): the forwarded address is the client's.
    before = await _observed(relay, "m-before", **{"X-Forwarded-For": EOP})
    assert before.network == "microsoft_eop"
    assert before.addr_hash == address_hash(relay.config().tracking.address_hasher, ip(EOP))

    settings["tracking"]["address_hash_key"] = "a-new-address-hash-key-0123456789abcdef"
    settings["networks"] = {"microsoft_eop": [], "scanner:acme_gateway": ["40.107.0.0/16"]}
    write_config(config_path, settings)
    assert await relay.config.reload()

    after = await _observed(relay, "m-after", **{"X-Forwarded-For": EOP})
    assert after.network == "scanner:acme_gateway"
    assert after.addr_hash == address_hash(relay.config().tracking.address_hasher, ip(EOP))
    assert after.addr_hash != before.addr_hash


@pytest.mark.usefixtures("both_click_paths")
async def test_reload_changes_which_hosts_serve_a_project(
    relay: Running, settings: dict[str, Any], config_path: Path
) -> None:
    link = token(message_id="m-domain")
    assert (await click(relay, link, host="track.acme.test")).status == 404
    settings["projects"][0]["tracking_domain"] = "track.acme.test"
    write_config(config_path, settings)
    assert await relay.config.reload()
    assert (await click(relay, link, host="track.acme.test")).status == 302
    del settings["projects"][0]["tracking_domain"]
    write_config(config_path, settings)
    assert await relay.config.reload()
    assert (await click(relay, link, host="track.acme.test")).status == 404


async def test_a_new_configuration_gets_a_new_context_and_keeps_a_verifier_of_same_keys(
    relay: Running, settings: dict[str, Any], config_path: Path
) -> None:
    redirector = relay.app[REDIRECTOR_KEY]
    first = redirector.context()
    assert redirector.context() is first  # one per configuration object, not per click
    settings["tracking"]["settle_seconds"] = 5
    write_config(config_path, settings)
    assert await relay.config.reload()
    second = redirector.context()
    assert second is not first and second.config is relay.config()
    assert second.verifier is first.verifier  # the keys did not change
    assert second.settle_us == 5_000_000

    settings["tracking"]["signing_keys"].append({"id": "k2", "secret": "k2-" + "x" * 40})
    write_config(config_path, settings)
    assert await relay.config.reload()
    third = redirector.context()
    assert third.verifier is not second.verifier
    assert [k.id for k in third.verifier.keys] == ["k1", "k2"]


def test_context_caches_are_bounded_and_answer_as_uncached(relay: Running) -> None:
    context = Redirector(relay.config, _NoRecorder(), relay.metrics).context()
    config = relay.config()
    for i in range(LOCATION_CACHE_SIZE + 10):
        assert context.location(f"https://example.com/{i}") == (f"https://example.com/{i}", "")
    assert context.location("ftp://example.com/") == (None, "not an absolute http(s) URL")
    assert context.location.cache_info().currsize == LOCATION_CACHE_SIZE
    hosts = [f"p{i}.t.localhost" for i in range(HOST_CACHE_SIZE + 10)] + ["pacme1.t.localhost"]
    for host in hosts:
        assert context.serves(host, "acme1") == host_serves(host, "acme1", config)
    assert context.serves("pacme1.t.localhost:8080", "acme1")
    assert context.serves.cache_info().currsize == HOST_CACHE_SIZE


def test_address_reducer_remembers_a_bounded_number_of_addresses() -> None:
    trusted = (net("10.0.0.0/8"),)
    table = build_table({"cloud": [net("198.51.100.0/24")]})
    hasher = address_hasher(b"address-hash-key-0123456789abcdef")
    reduce = address_reducer(trusted, table, hasher, size=4)
    cases = [(f"198.51.100.{i}", ()) for i in range(8)] + [
        ("10.1.1.1", ("203.0.113.9",)), ("10.1.1.1", ("198.51.100.7, 10.2.2.2",)),
        ("203.0.113.5", ("198.51.100.7",)), (None, ()), ("garbage", ()),
    ]
    for peer, forwarded in cases * 2:
        address = client_address(peer, forwarded, trusted)
        expected = (table.label(address) if address else None, address_hash(hasher, address))
        assert reduce(peer, forwarded) == expected
    assert reduce.cache_info().currsize == 4
    assert reduce.cache_info().maxsize == 4


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8))
def test_headers_are_stored_as_json_dumps_writes_them(headers: dict[str, str]) -> None:
    text = _headers_json(headers)
    assert text == json.dumps(headers, ensure_ascii=False)
    assert json.loads(text) == headers


class _NoRecorder:
    async def record(self, observation: Any) -> bool:
        return True
