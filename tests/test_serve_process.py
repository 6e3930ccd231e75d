"""`clickrelay serve` as a real process: it starts, relays into a Maildir, reloads on
SIGHUP, keeps the running configuration when the new file is broken, and stops cleanly
on SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from tests.conftest import PROJECT_TOKEN, base_settings, simple_message

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Any, timeout: float = 30.0) -> Any:
    """Poll until truthy (a guard against hanging, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


class Server:
    program: tuple[str, ...] = ("-m", "relay.cli")  # what the interpreter runs

    def __init__(self, tmp_path: Path) -> None:
        self.smtp_port, self.http_port = free_port(), free_port()
        self.settings = base_settings(tmp_path, 25)
        self.settings["smtp"]["listen"] = f"127.0.0.1:{self.smtp_port}"
        self.settings["http"]["listen"] = f"127.0.0.1:{self.http_port}"
        self.settings["upstream"] = {"url": "maildir:outbox"}
        self.path = tmp_path / "clickrelay.toml"
        self.outbox = tmp_path / "outbox" / "new"
        self.log = tmp_path / "serve.log"
        self.write()
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self) -> None:
        self.path.write_text(tomlkit.dumps(self.settings))

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.program, "serve", "--config", str(self.path)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
            )
        wait_for(self.healthy)

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def send(self) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            client.login("u", PROJECT_TOKEN)
            client.sendmail("a@acme.test", ["r@example.org"], simple_message())

    def delivered(self, count: int) -> list[bytes]:
        wait_for(lambda: self.outbox.is_dir() and len(list(self.outbox.iterdir())) >= count)
        files = sorted(self.outbox.iterdir(), key=lambda p: p.name)
        return [f.read_bytes() for f in files]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    if s.proc and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def test_serve_relays_reloads_and_stops_cleanly(server: Server) -> None:
    server.start()
    assert server.proc is not None
    server.send()
    assert b"/c/" in server.delivered(1)[0]

    server.settings["projects"][0]["routes"][0]["track_clicks"] = False
    server.write()
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b"configuration reloaded" in server.log.read_bytes())
    server.send()
    assert b"/c/" not in server.delivered(2)[1]

    server.path.write_text(server.path.read_text() + "\n[nonsense]\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b"configuration not reloaded" in server.log.read_bytes())
    assert b"nonsense: unknown key" in server.log.read_bytes()
    server.send()  # still running on the last good configuration
    assert b"/c/" not in server.delivered(3)[2]

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert b"stopped" in server.log.read_bytes()


def test_serve_that_cannot_start_says_why_in_one_line_and_leaves_nothing_running(
    server: Server,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.http_port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "relay.cli", "serve", "--config", str(server.path)],
            cwd=ROOT, capture_output=True, timeout=60,
        )
    assert done.returncode == 1
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("clickrelay: cannot serve: ")
    assert f"('127.0.0.1', {server.http_port})" in last and "address already in use" in last
    assert b"Traceback" not in done.stderr
    database = server.settings["store"]["url"].removeprefix("sqlite:///")
    assert not [pid for pid in Path("/proc").iterdir() if pid.name.isdigit()
                and database.encode() in _cmdline(pid)]  # no observation writer left


def _cmdline(process: Path) -> bytes:
    try:
        return (process / "cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""
