"""Upstream TLS with a private CA (docs/mail.md, "Delivery"): ``[upstream] tls_ca_file`` and
a client certificate, against an aiosmtpd upstream that requires STARTTLS; a certificate
that is not accepted fails the attempt for good, naming the option to set."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from relay.server import Running
from tests.conftest import finished, send, simple_message, upstream_at, wait_until
from tests.sink import Sink

STARTTLS = "smtp+starttls"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *, client_certs: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if client_certs:  # only a client with a certificate of this CA gets in
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def tls_sink(ca: trustme.CA, request: pytest.FixtureRequest) -> AsyncIterator[Sink]:
    s = Sink(tls=server_context(ca, client_certs=getattr(request, "param", False)))
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    files = {"ca": tmp_path / "ca.pem", "client": tmp_path / "client.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    ca.issue_cert("relay.test").private_key_and_cert_chain_pem.write_to_path(
        str(files["client"]))
    return files


async def only_copy(relay: Running) -> str:
    rows = await wait_until(lambda: relay.store.db.fetchall(
        "SELECT id FROM messages WHERE notice_of IS NULL"))
    return str(rows[0]["id"])


@pytest.fixture
def verified_upstream(settings: dict[str, Any], tls_sink: Sink,
                      tls_files: dict[str, Path]) -> Sink:
    return upstream_at(settings, tls_sink, STARTTLS, tls_ca_file=tls_files["ca"])


async def test_private_ca_bundle_verifies_the_upstream(
    verified_upstream: Sink, relay: Running
) -> None:
    assert await send(relay.smtp_port, simple_message()) == {}
    (got,) = await verified_upstream.wait_for(1)
    assert got.rcpt_tos == ("rcpt@example.org",)


@pytest.fixture
def unverified_upstream(settings: dict[str, Any], tls_sink: Sink) -> Sink:
    return upstream_at(settings, tls_sink, STARTTLS)  # the system's CAs never signed it


async def test_certificate_not_accepted_fails_for_good_naming_the_option(
    unverified_upstream: Sink, relay: Running
) -> None:
    await send(relay.smtp_port, simple_message())
    message = await finished(relay, await only_copy(relay))
    assert message.status == "failed"
    assert "set [upstream] tls_ca_file" in (message.last_error or "")
    attempts = await relay.store.delivery_attempts(message.id)
    assert [a.outcome for a in attempts] == ["permanent"]
    assert unverified_upstream.received == []


@pytest.fixture
def client_cert_upstream(settings: dict[str, Any], tls_sink: Sink,
                         tls_files: dict[str, Path]) -> Sink:
    return upstream_at(settings, tls_sink, STARTTLS, tls_ca_file=tls_files["ca"],
                       tls_client_cert=tls_files["client"])


@pytest.mark.parametrize("tls_sink", [True], indirect=True, ids=["client-certs"])
async def test_client_certificate_is_shown_to_an_upstream_that_asks(
    client_cert_upstream: Sink, relay: Running
) -> None:
    assert await send(relay.smtp_port, simple_message()) == {}
    (got,) = await client_cert_upstream.wait_for(1)
    assert got.rcpt_tos == ("rcpt@example.org",)


def test_tls_files_must_exist(settings: dict[str, Any], config_path: Path) -> None:
    from relay.config.load import ConfigError
    from tests.conftest import write_config

    settings["upstream"]["tls_ca_file"] = "missing-ca.pem"
    with pytest.raises(ConfigError, match=r"upstream\.tls_ca_file: file .*missing-ca\.pem"):
        write_config(config_path, settings)


@pytest.fixture
def opportunistic_upstream(settings: dict[str, Any], tls_sink: Sink) -> Sink:
    return upstream_at(settings, tls_sink)


async def test_smtp_upgrades_when_offered_and_greets_again(
    opportunistic_upstream: Sink, relay: Running
) -> None:
    """smtp:// takes STARTTLS when offered, unverified (RFC 7435), and sends EHLO again
    before MAIL (RFC 3207 §4.2): the sink takes no mail without both."""
    assert await send(relay.smtp_port, simple_message()) == {}
    (got,) = await opportunistic_upstream.wait_for(1)
    assert got.rcpt_tos == ("rcpt@example.org",)


@pytest.fixture
def no_client_cert_upstream(settings: dict[str, Any], tls_sink: Sink,
                            tls_files: dict[str, Path]) -> Sink:
    return upstream_at(settings, tls_sink, STARTTLS, tls_ca_file=tls_files["ca"])


@pytest.mark.parametrize("tls_sink", [True], indirect=True, ids=["client-certs"])
async def test_missing_client_certificate_names_the_option(
    no_client_cert_upstream: Sink, relay: Running
) -> None:
    """TLS 1.3 tells a missing client certificate as a closed connection: temporary (it
    could be any drop), with the option named."""
    await send(relay.smtp_port, simple_message())
    copy_id = await only_copy(relay)

    async def first_attempt() -> Any:
        return await relay.store.delivery_attempts(copy_id)

    (attempt, *_) = await wait_until(first_attempt)
    assert attempt.outcome == "temporary"
    assert "set [upstream] tls_client_cert" in (attempt.detail or "")
