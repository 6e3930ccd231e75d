"""Guessing tokens (docs/hostile-input.md): wrong passwords and API tokens are slowed down
per source
network across connections and across SMTP and the API (relay/throttle.py), so that
parallel connections do not multiply the guesses; a header byte that is not UTF-8 is a
wrong token (401), not a server error.

The throttle's clock is stopped in these tests: whatever the machine's speed, no spacing
runs out while they run, and no assertion depends on the time taken."""

from __future__ import annotations

import asyncio
import base64
import math

import pytest

from relay.api.common import API_KEY
from relay.server import Running
from relay.throttle import FAILURE_MEMORY, FREE_FAILURES, Throttle, source_network, spacing
from tests.conftest import PROJECT_TOKEN, TEAM_TOKEN
from tests.redirecting import HOST
from tests.test_http_hostile import assert_redirect_still_correct
from tracker.clicks.network import parse_address

PARALLEL = 12
ATTACKER = "127.0.0.66"  # one network, 127.0.0.0/24 (the tests' own clients too)
NEIGHBOUR = "127.0.1.66"  # another network


def stopped_throttle(relay: Running) -> Throttle:
    """The running relay's throttle (SMTP's and the API's), its clock stopped."""
    throttle = relay.app[API_KEY].throttle
    now = throttle.clock()
    throttle.clock = lambda: now
    return throttle


def network_of(address: str) -> str:
    return source_network(parse_address(address))


def plain(password: str) -> str:
    return base64.b64encode(f"\0user\0{password}".encode()).decode()


async def smtp_auth(port: int, password: str, source: str = ATTACKER) -> str:
    """EHLO and AUTH PLAIN from ``source``: the AUTH reply line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        await reader.readline()  # greeting
        writer.write(b"EHLO client.test\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        writer.write(f"AUTH PLAIN {plain(password)}\r\n".encode())
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


async def api_request(port: int, headers: bytes, source: str = ATTACKER) -> tuple[int, bytes]:
    """``GET /v1/ping`` with raw header lines, from ``source``: the status and the head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(b"GET /v1/ping HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n" + headers
                     + b"Connection: close\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split()[1]), answer.partition(b"\r\n\r\n")[0]


async def test_parallel_smtp_auth_guesses_are_checked_only_up_to_the_free_failures(
    relay: Running,
) -> None:
    throttle = stopped_throttle(relay)
    replies = await asyncio.gather(*(smtp_auth(relay.smtp_port, f"guess-{i}")
                                     for i in range(PARALLEL)))
    checked = [r for r in replies if r.startswith("535")]
    refused = [r for r in replies if r.startswith("454")]
    assert len(checked) == FREE_FAILURES and len(refused) == PARALLEL - FREE_FAILURES, replies
    key = network_of(ATTACKER)
    assert throttle.failures(key) == FREE_FAILURES  # the refused ones tried nothing
    wait = throttle.wait([key])
    assert wait == spacing(FREE_FAILURES) > 0
    assert all(r.endswith(f"try again in {math.ceil(wait)} s") for r in refused), refused
    # While its network waits, even the right password is not checked; elsewhere it is.
    assert (await smtp_auth(relay.smtp_port, PROJECT_TOKEN)).startswith("454")
    assert (await smtp_auth(relay.smtp_port, PROJECT_TOKEN, NEIGHBOUR)).startswith("235")
    # Once the spacing has run out, one more check, and the next waits twice as long.
    later = throttle.clock() + wait
    throttle.clock = lambda: later
    assert (await smtp_auth(relay.smtp_port, "guess-again")).startswith("535")
    assert throttle.wait([key]) == spacing(FREE_FAILURES + 1) == 2 * wait
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_auth_throttled_total", {"service": "smtp"}) == PARALLEL - FREE_FAILURES + 1
    await assert_redirect_still_correct(relay)


async def test_wrong_api_tokens_are_slowed_down_with_smtp_auth_per_network(
    relay: Running,
) -> None:
    throttle = stopped_throttle(relay)
    wrong = [b"Authorization: Bearer wrong-%d\r\n" % i if i % 2 else
             b"x-lettermint-token: wrong-%d\r\n" % i for i in range(PARALLEL)]
    answers = await asyncio.gather(*(api_request(relay.http_port, h) for h in wrong))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [401] * FREE_FAILURES + [429] * (PARALLEL - FREE_FAILURES)
    wait = throttle.wait([network_of(ATTACKER)])
    assert all(b"\r\nRetry-After: %d\r\n" % math.ceil(wait) in head
               for status, head in answers if status == 429)
    # The same network's SMTP AUTH waits too, and the team token is not checked either.
    assert (await smtp_auth(relay.smtp_port, PROJECT_TOKEN)).startswith("454")
    team = b"Authorization: Bearer " + TEAM_TOKEN.encode() + b"\r\n"
    assert (await api_request(relay.http_port, team))[0] == 429
    assert (await api_request(relay.http_port, team, NEIGHBOUR))[0] == 200
    # Behind a trusted proxy (127.0.0.1 here), the forwarded client's network counts;
    # from anyone else, a forwarded address changes nothing.
    forwarded = team + b"X-Forwarded-For: 198.51.100.7\r\n"
    assert (await api_request(relay.http_port, forwarded, "127.0.0.1"))[0] == 200
    assert (await api_request(relay.http_port, forwarded))[0] == 429
    await assert_redirect_still_correct(relay)


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff",
                                    b"Authorization: Bearer t\xe9am-token",
                                    b"x-lettermint-token: \xff\xfe",
                                    b"x-lettermint-token: " + PROJECT_TOKEN.encode() + b"\x80"])
async def test_a_token_that_is_not_utf8_is_a_wrong_token(relay: Running, header: bytes) -> None:
    """Was a 500 with a traceback (UnicodeEncodeError in the comparison)."""
    status, head = await api_request(relay.http_port, header + b"\r\n", NEIGHBOUR)
    assert status == 401, head
    team = b"Authorization: Bearer " + TEAM_TOKEN.encode() + b"\r\n"
    assert (await api_request(relay.http_port, team, NEIGHBOUR))[0] == 200
    await assert_redirect_still_correct(relay)


def test_failures_are_counted_per_network_and_forgotten_after_an_hour_without_one() -> None:
    now = 1_000.0
    throttle = Throttle(clock=lambda: now)
    key = network_of("192.0.2.7")
    assert key == network_of("192.0.2.200") != network_of("192.0.3.7")
    assert network_of("2001:db8:0:ff::1") == network_of("2001:db8:0:1::1") == "net:2001:db8::/56"
    for _ in range(FREE_FAILURES):
        assert throttle.wait([key]) == 0
        throttle.failed([key])
    assert throttle.wait([key]) == spacing(FREE_FAILURES)
    assert throttle.wait([network_of("192.0.3.7")]) == 0
    now += FAILURE_MEMORY + 1
    assert throttle.wait([key]) == 0 and throttle.failures(key) == 0
