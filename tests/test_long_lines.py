"""Lines as long as real mail has (docs/mail.md, "Delivery"): taken up to ``[smtp]
max_line_length``, sent upstream with none over 998 octets, the same once decoded."""

from __future__ import annotations

import email
import email.policy
import smtplib
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from relay.config.load import ConfigError
from relay.message.body import MAX_LINE
from relay.message.mime import fold_long_lines
from relay.server import Running
from tests.conftest import CORPUS, send, write_config
from tests.sink import Sink

# The corpus messages with a line over 998 octets (an Infusionsoft newsletter, an Outlook
# reply): aiosmtpd's default limit refused both with 500.
LONG_LINED = ("phpmmp-infusionsoft-tracked.eml", "talon-outlook-reply.eml")


def longest_line(content: bytes) -> int:
    return max(len(line) for line in content.split(b"\r\n"))


def leaves(raw: bytes) -> list[tuple[str, bytes]]:
    """Each leaf part's type and decoded body, line ends as LF."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    out = []
    for part in message.walk():
        if not part.is_multipart():
            assert isinstance(part, Message)
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append((part.get_content_type(), payload.replace(b"\r\n", b"\n")))
    return out


@pytest.fixture(params=[True, False], ids=["own-reader", "aiosmtpd-reader"])
def data_reader(request: pytest.FixtureRequest, settings: dict[str, Any]) -> bool:
    settings["smtp"]["own_data_reader"] = request.param
    return bool(request.param)


@pytest.mark.usefixtures("data_reader")
@pytest.mark.parametrize("name", LONG_LINED)
@pytest.mark.parametrize("route", ["outgoing", "news"], ids=["tracked", "untracked"])
async def test_corpus_mail_with_long_lines_goes_upstream_folded(
    relay: Running, sink: Sink, name: str, route: str
) -> None:
    # With CRLF line ends, as an MTA sends it (smtplib leaves bare LFs, and stuffs a dot
    # after them that a server does not take away).
    original = (CORPUS / "eml" / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert longest_line(original) > MAX_LINE
    message = f"X-Lettermint-Route: {route}\r\n".encode() + original
    assert await send(relay.smtp_port, message) == {}
    (got,) = await sink.wait_for(1)
    assert longest_line(got.content) <= MAX_LINE
    if route == "news":  # untracked: every part the same once decoded
        assert leaves(got.content) == leaves(original)


async def test_line_over_max_line_length_is_refused(
    settings: dict[str, Any], config_path: Path, sink: Sink
) -> None:
    from relay.server import running

    settings["smtp"]["max_line_length"] = 2000
    config = write_config(config_path, settings)
    async with running(config) as relay:
        body = b"Subject: long\r\n\r\n" + b"x" * 2500 + b"\r\n"
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(relay.smtp_port, body)
        assert refused.value.smtp_code == 500
        assert await send(relay.smtp_port, b"Subject: ok\r\n\r\n" + b"y" * 1500 + b"\r\n") == {}
        (got,) = await sink.wait_for(1)
        assert longest_line(got.content) <= MAX_LINE


def test_max_line_length_below_rfc_5321_is_a_config_error(
    settings: dict[str, Any], config_path: Path
) -> None:
    settings["smtp"]["max_line_length"] = 1000
    with pytest.raises(ConfigError, match=r"smtp\.max_line_length.*at least 1001"):
        write_config(config_path, settings)


def test_long_header_line_is_folded_at_a_space() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    raw = f"Subject: {words}\r\nX-Opaque: {'z' * 1200}\r\n\r\nbody\r\n".encode()
    folded = fold_long_lines(raw)
    header, _, body = folded.partition(b"\r\n\r\n")
    subject = email.message_from_bytes(folded, policy=email.policy.default)["Subject"]
    assert subject == words
    assert body == b"body\r\n"
    # A line with no space to fold at cannot be folded; it is left whole.
    assert [len(line) for line in header.split(b"\r\n") if len(line) > MAX_LINE] == [1210]


def test_mail_without_long_lines_is_left_as_it_is() -> None:
    raw = (CORPUS / "eml" / "inbucket-outlook.eml").read_bytes()
    assert fold_long_lines(raw) is raw


def test_long_lines_in_a_part_and_its_header_are_folded() -> None:
    words = " ".join(f"name{i}" for i in range(300))
    raw = (b'Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"'
           b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nshort\r\n"
           b"--b\r\nContent-Type: text/plain\r\nContent-Description: " + words.encode()
           + b"\r\n\r\n" + b"y" * 3000 + b"\r\n--b--\r\n")
    folded = fold_long_lines(raw)
    assert longest_line(folded) <= MAX_LINE
    assert leaves(folded) == leaves(raw)
    part = email.message_from_bytes(folded, policy=email.policy.default).get_payload()[1]
    assert part["Content-Description"] == words
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
