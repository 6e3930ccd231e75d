"""The HTTP listener's front (docs/redirect.md): plain clicks are answered here, everything
else by aiohttp.

A click is the request clickrelay answers most often and must answer fast, and aiohttp's
per-request machinery (a request object, a handler task, the router and its middleware
chain, a response object and its writer) costs more than the click itself. So the listener's
protocol looks at the start of each request. A ``GET`` or ``HEAD`` of ``/c/{token}`` (or of
an open pixel, ``/o/{token}``, docs/opens.md) in HTTP/1.1, keep-alive, with a Host and no
body, is parsed with aiohttp's own parser, decided by the same ``Redirector.decide`` as the
aiohttp view and answered once the recorder has committed its observation: no task, no
request or response object (the answers' bytes are made in ``tracker.http.answers``).

Anything else (another path or method, HTTP/1.0, a body or ``Expect``, ``Connection:
close``, an upgrade, a query string or escapes in the path, a head that does not parse or is
too long) and the connection is handed, from that request on, to aiohttp's own protocol,
which answers it exactly as if it had had the connection from the start.

Answers go out in request order (pipelined requests), the connection is read no further
while too many answers are owed, while the client does not read, or while a hand-over waits
for the owed answers.

The recorder's commit only marks a click's answer ready: writing it, handing the connection
over or closing it runs in a turn of the loop of its own, so that one client's broken socket
never reaches the task that commits everyone's clicks (docs/hostile-input.md). A connection
that is lost, or closing, is never written to or handed over.

Timers, as aiohttp's: a connection is closed when no request came for the keep-alive time
since it was opened or last answered (bytes of an unfinished head do not count), and a
request head that is not whole within ``[http] request_head_timeout_seconds`` gets ``408``
and the connection is closed (docs/hostile-input.md)."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable

from aiohttp.http import HttpRequestParser, HttpVersion11

from tracker.http.answers import Answers, OwedAnswer
from tracker.http.redirect import Redirector

CLICK_STARTS = (b"GET /c/", b"HEAD /c/", b"GET /o/", b"HEAD /o/")
# aiohttp's limits are 8190 bytes for the request line and for each header: a head
# longer than this is handed over for aiohttp to refuse or accept by its own rules.
MAX_HEAD = 16 * 1024
MAX_OWED = 32  # answers owed on one connection before it is read no further
KEEPALIVE_TIMEOUT = 75.0  # seconds; aiohttp's, for connections handed over, is set to this
# A path aiohttp's router would give the view as exactly ``path[3:]`` (nothing to
# unescape, no query or fragment): anything else goes the long way.
_CLICK_PATH = re.compile(r"/[co]/[A-Za-z0-9_.\-]*")
_NOT_CLICKS = ("Content-Length", "Transfer-Encoding", "Expect")


class Front:
    """The listener's protocol factory and what its connections share: the redirector,
    aiohttp's protocol factory for the hand-over, and the open connections (for the
    shutdown)."""

    def __init__(self, redirector: Redirector, fallback: Callable[[], asyncio.Protocol]) -> None:
        self.redirector = redirector
        self.fallback = fallback
        self.connections: set[ClickProtocol] = set()
        self.closing = False
        self._all_closed = asyncio.Event()
        self.answers = Answers()

    def __call__(self) -> ClickProtocol:
        return ClickProtocol(self)

    def head_timeout(self) -> float:
        return self.redirector.config().http.request_head_timeout_seconds

    def forget(self, connection: ClickProtocol) -> None:
        self.connections.discard(connection)
        if self.closing and not self.connections:
            self._all_closed.set()

    async def close(self, timeout: float) -> None:
        """Close idle connections now and the others as soon as their owed answers are
        out (the recorder is still committing); what is left after ``timeout`` is cut."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_when_answered()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                for connection in list(self.connections):
                    connection.abort()


class ClickProtocol(asyncio.Protocol):
    """One connection, as long as it carries plain clicks."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        # Request bytes received but not yet answered or handed over (a partial head).
        self.buffer = b""
        self.owed: deque[OwedAnswer] = deque()
        self.handover: bytes | None = None  # bytes for aiohttp, once the owed are out
        self.writable = True  # False while the client does not read what we write
        self.closing = False
        self.answering = False  # the owed answers' turn is scheduled
        # The keep-alive clock runs from connect or the last answer; the head clock from
        # the first byte of a head not yet whole. One timer serves both.
        self.idle_since = 0.0
        self.head_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        # Sized as aiohttp's RequestHandler sizes its own; it never reads a body here.
        self.parser = HttpRequestParser(None, self.loop, 2**16, max_line_size=8190,
                                        max_field_size=8190, max_headers=128)

    # -- asyncio's side --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        # As aiohttp's ``request.remote``.
        self.peer = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer)
        if self.front.closing:  # accepted just before the listener closed
            transport.close()
            return
        self.front.connections.add(self)
        self.idle_since = self.loop.time()
        self._arm(self.idle_since + KEEPALIVE_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        # Clicks owed an answer are still committed by the recorder: only the answers go,
        # and from now on nothing is done on this connection.
        self.transport = None
        self.owed.clear()
        self.handover = None
        self.buffer = b""
        self._stop_timer()
        self.front.forget(self)

    def pause_writing(self) -> None:
        self.writable = False
        self._update_reading()

    def resume_writing(self) -> None:
        self.writable = True
        self._answered()

    def data_received(self, data: bytes) -> None:
        if self.handover is not None:  # read before reading paused: it goes along
            self.handover += data
            return
        buffer = self.buffer + data if self.buffer else data
        while buffer and len(self.owed) < MAX_OWED:
            if not buffer.startswith(CLICK_STARTS):
                if len(buffer) < 8 and any(s.startswith(buffer) for s in CLICK_STARTS):
                    break  # maybe a click: wait for more
                self._hand_over(buffer)
                return
            end = buffer.find(b"\r\n\r\n")
            if end < 0:  # a partial head, or one aiohttp should judge
                if len(buffer) > MAX_HEAD or b"\n\n" in buffer or b"\n\r\n" in buffer:
                    self._hand_over(buffer)
                    return
                break
            end += 4
            if not self._click(buffer[:end]):
                self._hand_over(buffer)
                return
            self.head_since = None
            buffer = buffer[end:]
        self.buffer = buffer
        if not buffer or len(self.owed) >= MAX_OWED:
            self.head_since = None  # no head is being received (or not read: not timed)
        elif self.head_since is None:
            self._head_started()
        self._update_reading()

    # -- clicks ----------------------------------------------------------------------

    def _click(self, head: bytes) -> bool:
        """Answer the click in ``head`` (a whole request head); False if it is not a
        plain click, for aiohttp to answer."""
        try:
            messages, _, _ = self.parser.feed_data(head)
        except Exception:  # whatever the parser refuses, aiohttp refuses the same way
            return False
        if len(messages) != 1:
            return False
        message = messages[0][0]
        headers = message.headers
        host = headers.get("Host")
        if (host is None or message.version != HttpVersion11 or message.should_close
                or message.upgrade or not _CLICK_PATH.fullmatch(message.path)
                or any(name in headers for name in _NOT_CLICKS)):
            return False
        front = self.front
        redirector = front.redirector
        head_only = message.method == "HEAD"
        opened = message.path[1] == "o"
        if opened:
            observation = redirector.decide_open(message.path[3:], host, self.peer,
                                                 message.method, headers)
            answer = front.answers.pixel(head_only)
        else:
            location, observation = redirector.decide(message.path[3:], host, self.peer,
                                                      message.method, headers)
            answer = (front.answers.not_found(head_only) if location is None
                      else front.answers.found(location, head_only))
        owed = OwedAnswer(answer, observation is None, self, opened)
        if observation is not None and not redirector.recorder.queue(observation, owed):
            owed.ready = True  # not queued (counted as lost): answered all the same
            redirector.count_recorded(opened)
        if self.owed or not owed.ready:
            self.owed.append(owed)
        else:
            self._write(answer)
        return True

    def committed(self, opened: bool) -> None:
        """An owed click's (or open's) observation is committed (or given up). Called
        inside the recorder's commit: the connection's work is left to a turn of its own,
        one per connection however many of its clicks the batch held."""
        self.front.redirector.count_recorded(opened)
        if not self.answering:
            self.answering = True
            self.loop.call_soon(self._answer_owed)

    def _answer_owed(self) -> None:
        self.answering = False
        self._answered()

    def _answered(self) -> None:
        """Write the owed answers that are ready, in order; then, with nothing owed, go
        on: hand the connection over, close it, or read on."""
        if self.transport is None:  # lost, or handed over: nothing more to do here
            return
        owed = self.owed
        if owed and owed[0].ready:
            ready = []
            while owed and owed[0].ready:
                ready.append(owed.popleft().data)
            self._write(ready[0] if len(ready) == 1 else b"".join(ready))
        if owed or not self.writable:
            self._update_reading()
        elif self.handover is not None:
            self._complete_hand_over()
        elif self.closing:
            self._close()
        else:
            self._update_reading()
            if self.buffer:  # requests read while the connection was paused
                self.data_received(b"")

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.idle_since = self.loop.time()

    # -- the hand-over to aiohttp ----------------------------------------------------

    def _hand_over(self, data: bytes) -> None:
        """From the request at the start of ``data`` on, the connection is aiohttp's; it
        changes hands once the answers owed to earlier requests are out."""
        self.buffer = b""
        self.head_since = None  # aiohttp's from here: its own timers apply
        self.handover = data
        self._update_reading()
        if not self.owed and self.writable:
            self._complete_hand_over()

    def _complete_hand_over(self) -> None:
        data, self.handover = self.handover or b"", None
        transport, self.transport = self.transport, None  # no longer ours, whatever comes
        self._stop_timer()
        self.front.forget(self)
        if transport is None or transport.is_closing():
            return  # lost or being lost: aiohttp must never get a dead socket
        if self.front.closing:
            transport.close()
            return
        handler = self.front.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()
        if data:
            handler.data_received(data)

    # -- flow and closing ------------------------------------------------------------

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.handover is None and self.writable and len(self.owed) < MAX_OWED:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _head_started(self) -> None:
        now = self.loop.time()
        self.head_since = now
        due = now + self.front.head_timeout()
        if self.timer is None or self.timer.when() > due:
            self._arm(due)

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        """As aiohttp's keep-alive: close the connection once no request came for the
        keep-alive time since it was opened or last answered, whatever bytes of a head
        came meanwhile; a head not whole within its own time limit is answered ``408``
        first. While answers are owed the connection is busy: the clocks wait for them."""
        self.timer = None
        if self.transport is None:
            return
        now = self.loop.time()
        if self.owed:  # answered within the recorder's deadline; then the clocks run on
            self._arm(now + 1.0)
            return
        due = self.idle_since + KEEPALIVE_TIMEOUT
        if self.head_since is not None:
            due = min(due, self.head_since + self.front.head_timeout())
        if now < due:
            self._arm(due)
        elif self.head_since is not None:
            self._request_timeout()
        else:
            self._close()

    def _request_timeout(self) -> None:
        """The head being received took too long: ``408`` and close (RFC 9110, 15.5.9)."""
        self.buffer = b""
        self.head_since = None
        self._write(self.front.answers.request_timeout())
        self._close()

    def close_when_answered(self) -> None:
        self.closing = True
        if not self.owed:
            self._close()

    def _close(self) -> None:
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
