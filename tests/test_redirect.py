"""GET/HEAD /c/{token} over HTTP against the running relay (docs/redirect.md): a valid link is
recorded, then redirected; an expired one redirects without a record; anything else is a
404 page. Key rotation, custom tracking domains, hosts and X-Forwarded-For. Each test runs
with the listener's front and with plain aiohttp (``[http] click_front``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import pytest

from relay.server import Running, running
from tests.conftest import SIGNING_SECRET, send, simple_message, write_config
from tests.redirecting import FUTURE, HOST, click, links_in, token
from tracker.clicks.network import address_hash
from tracker.config import SigningKey
from tracker.tokens import MAX_TOKEN_LENGTH

K2_SECRET = "second-signing-key-0123456789abcdef0"

pytestmark = pytest.mark.usefixtures("both_click_paths")
# The tests where the store is the point also run on PostgreSQL (the rest, refusals that
# store nothing, on SQLite alone: the suite's time).
both_stores = pytest.mark.usefixtures("both_stores")


@both_stores
async def test_click_is_stored_then_redirected(relay: Running) -> None:
    headers = {
        "User-Agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15",
        "Accept": "text/html", "Accept-Language": "de-CH", "Sec-Fetch-Site": "none",
        "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1",
        "Sec-Purpose": "prefetch", "Purpose": "prefetch", "Cookie": "not=kept",
    }
    answer = await click(relay, token(message_id="m-1", index=2), headers=headers)
    assert answer.status == 302
    assert answer.headers["Location"] == "https://example.com/a"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Robots-Tag"] == "noindex"
    # Committed before the 302 went out: no waiting needed.
    [obs] = await relay.store.get_observations("m-1")
    assert (obs.link_index, obs.destination, obs.project_sid, obs.method) == (
        2, "https://example.com/a", "acme1", "GET")
    assert obs.user_agent == headers["User-Agent"]
    assert obs.headers == {
        "accept": "text/html", "accept-language": "de-CH", "sec-fetch-site": "none",
        "sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-user": "?1",
        "purpose": "prefetch", "sec-purpose": "prefetch",
    }
    assert obs.network is None and obs.state == "pending"
    assert obs.addr_hash == address_hash(relay.config().tracking.address_hasher,
                                         _ip("127.0.0.1"))
    assert obs.promote_after == obs.at  # settle_seconds = 0 in the tests
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_clicks_total", {"outcome": "recorded"}) == 1


@both_stores
async def test_head_is_recorded_and_redirected(relay: Running) -> None:
    answer = await click(relay, token(message_id="m-head"), method="HEAD")
    assert answer.status == 302 and answer.headers["Location"] == "https://example.com/a"
    [obs] = await relay.store.get_observations("m-head")
    assert obs.method == "HEAD"


@both_stores
async def test_expired_token_redirects_and_records_nothing(relay: Running) -> None:
    answer = await click(relay, token(message_id="m-old", expires=1_000_000))
    assert answer.status == 302 and answer.headers["Location"] == "https://example.com/a"
    assert answer.headers["Cache-Control"] == "no-store"
    assert await relay.store.get_observations("m-old") == []
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_clicks_total", {"outcome": "expired"}) == 1


def _swapped_destination() -> str:
    header, _, signature = token(message_id="m-bad").split(".")
    evil = {"m": "m-bad", "i": 0, "u": "https://evil.example/", "s": "acme1", "exp": FUTURE}
    payload = base64.urlsafe_b64encode(json.dumps(evil).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


def _other_alg(alg: str) -> str:
    """A token whose header names another algorithm, signed with our key under it."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"m": "m-bad", "i": 0, "u": "https://evil.example/", "s": "acme1", "exp": FUTURE}
    signing_input = (f"{b64(json.dumps({'alg': alg, 'kid': 'k1'}).encode())}."
                     f"{b64(json.dumps(claims).encode())}")
    digest = {"HS512": hashlib.sha512, "none": None}[alg]
    signature = (hmac.new(SIGNING_SECRET.encode(), signing_input.encode(), digest).digest()
                 if digest else b"")
    return f"{signing_input}.{b64(signature)}"


REFUSED = {
    "bad signature": token(message_id="m-bad", key=SigningKey("k1", "x" * 40)),
    "unknown kid": token(message_id="m-bad", key=SigningKey("k7", "x" * 40)),
    "alg HS512": _other_alg("HS512"),
    "alg none": _other_alg("none"),
    "swapped destination": _swapped_destination(),
    "truncated": token(message_id="m-bad")[:-4],
    "malformed": "not-a-token",
    "garbage": "%00%ff..%2e",
    "with slashes": "a/b/c",
    "empty": "",
    "oversize": "A" * (MAX_TOKEN_LENGTH + 100),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_anything_else_is_a_404_page(relay: Running, name: str, method: str) -> None:
    answer = await click(relay, f"/c/{REFUSED[name]}", method=method)
    assert answer.status == 404
    assert "Location" not in answer.headers
    assert answer.headers["Content-Type"].startswith("text/html")
    if method == "GET":
        assert "Link not found" in answer.body and len(answer.body) < 1000
    assert await relay.store.get_observations("m-bad") == []
    assert await relay.store.count_observations() == 0


@both_stores
async def test_unicode_destination_is_sent_in_ascii_form(relay: Running) -> None:
    answer = await click(relay, token("https://bücher.example/straße?q=ä#frag"))
    assert answer.status == 302
    assert answer.headers["Location"] == (
        "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%A4#frag")
    # The observation keeps the destination as the mail had it.
    [obs] = await relay.store.get_observations("msg-1")
    assert obs.destination == "https://bücher.example/straße?q=ä#frag"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("pacme1.t.localhost:8080", 302),
        ("pacme1.t.localhost", 302),  # port in Host tolerated, absent too
        ("PACME1.T.LOCALHOST:80", 302),
        ("pother1.t.localhost:8080", 404),  # another project's host
        ("t.localhost:8080", 404),
        ("pacme1.evil.example", 404),
        ("127.0.0.1", 404),
    ],
)
async def test_host_must_serve_the_tokens_project(relay: Running, host: str, status: int) -> None:
    answer = await click(relay, token(message_id="m-host"), host=host)
    assert answer.status == status
    assert len(await relay.store.get_observations("m-host")) == (status == 302)


@both_stores
async def test_end_to_end_mail_then_click(relay: Running, sink: Any) -> None:
    await send(relay.smtp_port, simple_message(
        '<p><a href="https://example.com/a">A</a> <a href="https://example.com/b?x=1&amp;y=2">B'
        "</a></p>"))
    [received] = await sink.wait_for(1)
    first, second = links_in(received.content)
    assert first.startswith("http://pacme1.t.localhost:8080/c/")
    claims = jwt.decode(second.rsplit("/", 1)[1], options={"verify_signature": False})
    message = await relay.store.get_message(claims["m"])
    assert message is not None
    assert set(claims) == {"m", "i", "u", "s", "exp"}
    assert claims["exp"] == message.created_at // 1_000_000 + 30 * 86_400

    answer = await click(relay, second)
    assert answer.status == 302 and answer.headers["Location"] == "https://example.com/b?x=1&y=2"
    [obs] = await relay.store.get_observations(message.id)
    assert (obs.link_index, obs.destination, obs.project_sid) == (
        1, "https://example.com/b?x=1&y=2", "acme1")


@both_stores
async def test_key_rotation_keeps_old_links_working(
    relay: Running, sink: Any, settings: dict[str, Any], config_path: Path
) -> None:
    await send(relay.smtp_port, simple_message())
    [old_link] = links_in((await sink.wait_for(1))[0].content)
    assert jwt.get_unverified_header(old_link.rsplit("/", 1)[1])["kid"] == "k1"

    k1 = settings["tracking"]["signing_keys"][0]
    settings["tracking"]["signing_keys"] = [{"id": "k2", "secret": K2_SECRET}, k1]
    write_config(config_path, settings)
    assert await relay.config.reload()
    await send(relay.smtp_port, simple_message())
    [new_link] = links_in((await sink.wait_for(2))[1].content)
    assert jwt.get_unverified_header(new_link.rsplit("/", 1)[1])["kid"] == "k2"
    assert (await click(relay, old_link)).status == 302
    assert (await click(relay, new_link)).status == 302

    settings["tracking"]["signing_keys"] = [{"id": "k2", "secret": K2_SECRET}]
    write_config(config_path, settings)
    assert await relay.config.reload()
    assert (await click(relay, old_link)).status == 404  # its key is gone
    assert (await click(relay, new_link)).status == 302


@both_stores
async def test_custom_tracking_domain(
    sink: Any, settings: dict[str, Any], config_path: Path
) -> None:
    settings["projects"][0]["tracking_domain"] = "track.acme.test"
    async with running(write_config(config_path, settings)) as relay:
        await send(relay.smtp_port, simple_message())
        [link] = links_in((await sink.wait_for(1))[0].content)
        assert link.startswith("https://track.acme.test/c/")
        assert (await click(relay, link)).status == 302
        assert (await click(relay, link, host="track.acme.test:443")).status == 302
        # The p{sid} name keeps working for links sent before the domain was set.
        assert (await click(relay, link, host=HOST)).status == 302
        # Another project's token is refused on this project's domain.
        other = token(sid="other1", message_id="m-other")
        assert (await click(relay, other, host="track.acme.test")).status == 404
        assert (await click(relay, other, host="pother1.t.localhost:8080")).status == 302


@both_stores
async def test_forwarded_for_believed_from_trusted_proxy(relay: Running) -> None:
    # The tests trust 127.0.0.1/32, the peer: the right-most hop it added counts.
    forwarded = {"X-Forwarded-For": "198.51.100.1, 40.107.5.5"}
    await click(relay, token(message_id="m-xff"), headers=forwarded)
    [obs] = await relay.store.get_observations("m-xff")
    assert obs.network == "microsoft_eop"
    assert obs.addr_hash == address_hash(relay.config().tracking.address_hasher, _ip("40.107.5.5"))


@both_stores
async def test_forwarded_for_ignored_from_untrusted_peer(
    sink: Any, settings: dict[str, Any], config_path: Path
) -> None:
    settings["http"]["trusted_proxies"] = ["10.0.0.0/8"]
    async with running(write_config(config_path, settings)) as relay:
        await click(relay, token(message_id="m-xff"),
                    headers={"X-Forwarded-For": "40.107.5.5"})
        [obs] = await relay.store.get_observations("m-xff")
        assert obs.network is None
        key = relay.config().tracking.address_hasher
        assert obs.addr_hash == address_hash(key, _ip("127.0.0.1"))


def _ip(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_address(text)


@both_stores
async def test_an_ip_address_tracking_host_needs_no_wildcard_dns(
    sink: Any, settings: dict[str, Any], config_path: Path
) -> None:
    """python-requests and wget do not resolve ``*.localhost``: with an IP address as the
    tracking host, links are on the host itself, and any client follows them."""
    settings["tracking"]["base_url"] = "http://127.0.0.1:8080"
    async with running(write_config(config_path, settings)) as relay:
        await send(relay.smtp_port, simple_message())
        [link] = links_in((await sink.wait_for(1))[0].content)
        assert link.startswith("http://127.0.0.1:8080/c/")
        assert (await click(relay, link)).status == 302
        # Followed as a client does it: to the address and port, with them as the Host.
        path = urlsplit(link).path
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{relay.http_port}{path}", allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == "https://example.com/a"
        # Every project's tokens are served there; another host is still refused.
        assert (await click(relay, token(sid="other1"), host="127.0.0.1:8080")).status == 302
        assert (await click(relay, link, host="127.0.0.2:8080")).status == 404
        assert (await click(relay, link, host="p.acme1.127.0.0.1:8080")).status == 404
