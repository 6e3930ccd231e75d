"""Hostile mail from an authenticated sender (docs/hostile-input.md), each sent over SMTP to the
running relay: a header byte that is not UTF-8 is accepted and stored as text; headers and
messages over the limits of relay/message/limits.py get 552 naming the header or the setting; a
mail to many recipients is read and rewritten once. After each, an ordinary mail is
relayed and an ordinary click on it is stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running
from relay.submission import intake
from store.clock import now_us
from tests.conftest import running, simple_message, wait_until, write_config
from tests.redirecting import K1, links_in
from tests.sink import Sink
from tests.smtp_helpers import assert_mail_and_clicks_still_work, data_reply
from tests.test_serve_process import Server
from tracker.tokens import verify_token


def mail(headers: bytes, html: str = '<p><a href="https://example.com/a">A</a></p>') -> bytes:
    return (b"From: app@acme.test\r\nTo: rcpt@example.org\r\n" + headers
            + b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            + html.encode() + b"\r\n")


# -- R4: an 8-bit header byte ----------------------------------------------------------


async def test_8bit_subject_and_control_headers_are_accepted_and_stored_as_text(
    relay: Running, sink: Sink
) -> None:
    """Was 451 4.3.0 on every attempt (the surrogate could not be stored), so the sender
    retried for days."""
    headers = (b"Subject: caf\xe9 \xff\r\nX-LM-Tag: t\xff\r\n"
               b"X-LM-Metadata-order: n\xc3\xa9 \xfe\r\n")
    assert (await data_reply(relay, mail(headers)))[0] == 250
    (row,) = await relay.store.db.fetchall("SELECT id, subject, tag, metadata FROM messages")
    assert (row["subject"], row["tag"]) == ("caf\ufffd \ufffd", "t\ufffd")
    assert (await relay.store.get_message(row["id"])).metadata == {"order": "né \ufffd"}
    (received,) = await sink.wait_for(1)
    assert b"Subject: caf\xe9 \xff\r\n" in received.content  # forwarded as it came
    assert b"X-LM-" not in received.content
    await assert_mail_and_clicks_still_work(relay, sink)


async def test_8bit_route_header_is_refused_naming_it(relay: Running, sink: Sink) -> None:
    code, text = await data_reply(relay, mail(b"Subject: x\r\nX-Lettermint-Route: n\xffws\r\n"))
    assert code == 550 and "route" in text
    await assert_mail_and_clicks_still_work(relay, sink)


# -- R3: headers too large to decode cheaply ---------------------------------------------


def folded_words(count: int) -> bytes:
    return b"\r\n ".join([b"=?utf-8?q?caf=C3=A9?="] * count)


async def test_subject_of_many_encoded_words_gets_552_naming_it(
    relay: Running, sink: Sink
) -> None:
    """Decoded on the event loop in time that grew with the square of the words (1.4 s
    at 0.58 MB): every click waited."""
    code, text = await data_reply(relay, mail(b"Subject: " + folded_words(300) + b"\r\n"))
    assert (code, text.split()[0]) == (552, "5.3.4")
    assert "Subject" in text and "256 encoded words" in text
    long = b"\r\n ".join([b"x" * 900] * 20)  # folded: lines stay under SMTP's 1000 octets
    code, text = await data_reply(relay, mail(b"Subject: " + long + b"\r\n"))
    assert code == 552 and "Subject header of 18068 bytes" in text and "16384" in text
    code, text = await data_reply(relay, mail(b"Subject: s\r\nX-LM-Tag: "
                                              + folded_words(300) + b"\r\n"))
    assert code == 552 and "X-LM-Tag" in text
    # A long subject within the limits is read.
    assert (await data_reply(relay, mail(b"Subject: " + folded_words(200) + b"\r\n")))[0] == 250
    subjects = [r[0] for r in await relay.store.db.fetchall("SELECT subject FROM messages")]
    assert subjects == ["café" * 200]
    await assert_mail_and_clicks_still_work(relay, sink)


async def test_a_huge_header_block_gets_552(relay: Running, sink: Sink) -> None:
    headers = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(80_000))  # about 1.4 MB
    code, text = await data_reply(relay, mail(b"Subject: s\r\n" + headers))
    assert code == 552 and "header blocks" in text
    await assert_mail_and_clicks_still_work(relay, sink)


async def test_a_content_type_with_thousands_of_parameters_gets_552(
    relay: Running, sink: Sink
) -> None:
    """The email package parses parameters in time that grows with their square."""
    params = b"".join(b';\r\n a%d="x;y"' % i for i in range(1_000))
    raw = (b"From: a@acme.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n"
           b"\r\n--b\r\nContent-Type: text/html" + params + b"\r\n\r\n<a href='https://e.com/'>"
           b"e</a>\r\n--b--\r\n")
    code, text = await data_reply(relay, raw)
    assert code == 552 and "Content-Type" in text
    await assert_mail_and_clicks_still_work(relay, sink)


# -- R5: parts, nesting, links and tags ---------------------------------------------------


@pytest.fixture
def limited(settings: dict[str, Any]) -> dict[str, Any]:
    settings["smtp"].update(max_parts=20, max_depth=6, max_links=50, max_html_tags=2_000)
    return settings


def multipart(parts: int, html: str = "<p>x</p>") -> bytes:
    body = b"".join(b"--b\r\nContent-Type: text/html\r\n\r\n" + html.encode() + b"\r\n"
                    for _ in range(parts))
    return (b"From: a@acme.test\r\nSubject: parts\r\nContent-Type: multipart/mixed; "
            b"boundary=b\r\n\r\n" + body + b"--b--\r\n")


def nested(levels: int) -> bytes:
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
                    for n in range(levels))
    tail = b"".join(b"\r\n--b%d--" % n for n in reversed(range(levels)))
    return (b"Subject: deep\r\n" + head
            + b'Content-Type: text/html\r\n\r\n<a href="https://example.com/d">d</a>' + tail
            + b"\r\n")


def links(count: int) -> str:
    return "\r\n".join(f'<a href="https://example.com/{n}">{n}</a>' for n in range(count))


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: multipart(20), "max_parts"),  # 20 parts and the message itself
        (lambda: nested(7), "max_depth"),
        (lambda: mail(b"Subject: s\r\n", links(51)), "max_links"),
        (lambda: mail(b"Subject: s\r\n", "<b>x</b>\r\n" * 1_001), "max_html_tags"),
        (lambda: multipart(3, links(20)), "max_links"),  # over all the parts together
    ],
)
async def test_messages_over_a_limit_get_552_naming_it(
    limited: dict[str, Any], config_path: Any, sink: Sink, make: Callable[[], bytes],
    setting: str,
) -> None:
    async with running(write_config(config_path, limited)) as relay:
        code, text = await data_reply(relay, make())
        assert (code, text.split()[0]) == (552, "5.3.4")
        assert f"smtp.{setting}" in text
        assert await relay.store.db.fetchall("SELECT id FROM messages") == []
        await assert_mail_and_clicks_still_work(relay, sink)


async def test_messages_at_the_limits_are_relayed(
    limited: dict[str, Any], config_path: Any, sink: Sink
) -> None:
    async with running(write_config(config_path, limited)) as relay:
        for raw in (multipart(19), nested(6), mail(b"Subject: s\r\n", links(50)),
                    mail(b"Subject: s\r\n", "<b>x</b>\r\n" * 1_000)):
            assert (await data_reply(relay, raw))[0] == 250
        await sink.wait_for(4)
        await assert_mail_and_clicks_still_work(relay, sink)


async def test_a_mail_to_many_recipients_is_read_once_and_its_body_kept_once(
    settings: dict[str, Any], config_path: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every copy was parsed and rewritten on its own: 2.1 MB × 50 recipients took 8.9 s."""
    settings["smtp"].update(max_recipients=50, parse_workers=0)  # in a thread: countable
    walks: list[int] = []
    real = intake.track_message

    def counted(*args: Any, **kwargs: Any) -> Any:
        walks.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(intake, "track_message", counted)
    html = links(30) + "<p>" + "filler words\r\n" * 30_000 + "</p>"  # over 256 KB: in a file
    rcpts = [f"r{n}@example.org" for n in range(50)]
    async with running(write_config(config_path, settings)) as r:
        assert (await data_reply(r, simple_message(html), rcpts))[0] == 250
        assert len(walks) == 1
        (body,) = await r.store.db.fetchall("SELECT id, data IS NULL FROM bodies")
        assert body[1] == 1 and r.store.body_file(body[0]).stat().st_size > 350_000
        received = await sink.wait_for(50)
        ids = set()
        for copy in received:
            tokens = [link.rsplit("/c/", 1)[1] for link in links_in(copy.content)]
            claims = [verify_token(t, [K1]) for t in tokens]
            assert [c.link_index for c in claims] == list(range(30))
            assert {c.message_id for c in claims} == {claims[0].message_id}
            ids.add(claims[0].message_id)
            assert without_tokens(copy.content) == without_tokens(received[0].content)
        assert len(ids) == 50  # each copy its own tokens, and nothing else its own
        await wait_until(lambda: delivered(r, 50))
        assert r.store.body_file(body[0]).exists()  # the API shows the copies' source
        purged = await r.store.purge_expired(now_us() + 1, 0)
        assert (purged.messages, purged.bodies) == (50, 1)
        assert not r.store.body_file(body[0]).exists()  # gone with the last copy
        await assert_mail_and_clicks_still_work(r, sink)


async def delivered(r: Running, count: int) -> bool:
    return (await r.store.spool_summary(now_us())).delivered == count


def without_tokens(content: bytes) -> bytes:
    for link in links_in(content):
        content = content.replace(link.rsplit("/c/", 1)[1].encode(), b"TOKEN")
    return content


async def test_a_worker_killed_between_mails_costs_no_mail(relay: Running, sink: Sink) -> None:
    await assert_mail_and_clicks_still_work(relay, sink)  # the workers are running now
    pids = relay.submitter.workers.pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert (await data_reply(relay, mail(b"Subject: after the kill\r\n")))[0] == 250
    assert not set(relay.submitter.workers.pids()) & set(pids)
    await assert_mail_and_clicks_still_work(relay, sink)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children are listed per thread that made them)."""
    found: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in map(int, f.read().split()):
                found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_the_server_s_processes_end_with_a_killed_server(tmp_path: Path) -> None:
    """The mail workers held their own ends of the pool's pipes and outlived a server
    killed -9, with the fork server they kept alive; the promotion process and the
    observation writer end when their input closes."""
    server = Server(tmp_path)
    server.start()
    assert server.proc is not None
    try:
        await asyncio.to_thread(server.send)
        server.delivered(1)
        below = descendants(server.proc.pid)
        # the observation writer, the promotion process, the fork server, two workers
        assert len(below) >= 5
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    await wait_until(lambda: not any(alive(pid) for pid in below))
