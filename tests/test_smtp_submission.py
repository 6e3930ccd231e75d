"""SMTP submission as a client sees it (docs/mail.md): AUTH, limits, EHLO, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from tests.conftest import PROJECT_TOKEN, send, simple_message, write_config
from tests.sink import Sink

# The tests where the store is the point also run on PostgreSQL (the rest, refusals that
# store nothing, on SQLite alone: the suite's time).
both_stores = pytest.mark.usefixtures("both_stores")


def _session(port: int, commands: list[str], tls: ssl.SSLContext | None = None) -> list[tuple]:
    """Run raw commands after EHLO; return each (code, message)."""
    client = smtplib.SMTP_SSL if tls else smtplib.SMTP
    kwargs: dict[str, Any] = {"context": tls} if tls else {}
    with client("127.0.0.1", port, timeout=30, **kwargs) as s:
        s.ehlo("client.test")
        return [s.docmd(c) for c in commands]


async def test_mail_without_auth_is_refused_with_530(relay: Running, sink: Sink) -> None:
    replies = await asyncio.to_thread(_session, relay.smtp_port, ["MAIL FROM:<a@b.test>"])
    assert replies[0][0] == 530
    assert sink.received == []


async def test_wrong_token_is_refused_with_535(relay: Running) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        await send(relay.smtp_port, simple_message(), token="not-a-token")
    assert info.value.smtp_code == 535


@both_stores
async def test_no_open_relay_even_after_failed_auth(relay: Running, sink: Sink) -> None:
    def attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=30) as s:
            s.ehlo("x")
            with contextlib.suppress(smtplib.SMTPAuthenticationError):
                s.login("u", "wrong")
            return s.docmd("MAIL FROM:<a@b.test>")

    code, _ = await asyncio.to_thread(attempt)
    assert code == 530
    assert sink.received == []


async def test_ehlo_offers_the_extensions(relay: Running) -> None:
    def ehlo() -> dict[str, str]:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=30) as s:
            s.ehlo("client.test")
            return dict(s.esmtp_features)

    features = await asyncio.to_thread(ehlo)
    for name in ("size", "8bitmime", "smtputf8", "pipelining", "auth"):
        assert name in features, name
    assert set(features["auth"].split()) >= {"PLAIN", "LOGIN"}
    assert features["size"] == "2000000"
    assert "starttls" not in features  # no certificate configured


@both_stores
async def test_too_many_recipients_get_452(relay: Running, sink: Sink) -> None:
    rcpts = [f"r{i}@example.org" for i in range(6)]  # max_recipients = 5
    refused = await send(relay.smtp_port, simple_message(), rcpts=rcpts)
    assert list(refused) == ["r5@example.org"]
    assert refused["r5@example.org"][0] == 452
    received = await sink.wait_for(5)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(rcpts[:5])


async def test_message_over_the_size_limit_gets_552(relay: Running, sink: Sink) -> None:
    big = simple_message(html="<p>" + "x" * 2_100_000 + "</p>")
    with pytest.raises(smtplib.SMTPResponseException) as info:
        await send(relay.smtp_port, big)
    assert info.value.smtp_code == 552


async def test_auth_on_plain_connection_refused_when_tls_required(
    settings: dict[str, Any], config_path: Path
) -> None:
    settings["smtp"]["auth_require_tls"] = True
    async with running(write_config(config_path, settings)) as r:
        replies = await asyncio.to_thread(_session, r.smtp_port, ["AUTH PLAIN AGFAYg=="])
    assert replies[0][0] == 538


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=relay.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_starttls_and_implicit_tls_with_auth_required_over_tls(
    settings: dict[str, Any], config_path: Path, certificate: tuple[Path, Path], sink: Sink
) -> None:
    settings["smtp"].update(auth_require_tls=True, tls_cert=str(certificate[0]),
                            tls_key=str(certificate[1]), listen_tls="127.0.0.1:0")
    client_tls = ssl.create_default_context(cafile=str(certificate[0]))
    client_tls.check_hostname = False

    def starttls_send(port: int) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.test")
            assert s.has_extn("starttls")
            assert not s.has_extn("auth")
            s.starttls(context=client_tls)
            s.ehlo("client.test")
            s.login("u", PROJECT_TOKEN)
            return s.sendmail("a@acme.test", ["r@example.org"], simple_message())

    def implicit_send(port: int) -> dict[str, Any]:
        with smtplib.SMTP_SSL("127.0.0.1", port, timeout=30, context=client_tls) as s:
            s.ehlo("client.test")
            s.login("u", PROJECT_TOKEN)
            return s.sendmail("a@acme.test", ["r@example.org"], simple_message())

    async with running(write_config(config_path, settings)) as r:
        assert await asyncio.to_thread(starttls_send, r.smtp_port) == {}
        assert await asyncio.to_thread(implicit_send, r.smtps_addresses[0][1]) == {}
        await sink.wait_for(2)
