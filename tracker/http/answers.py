"""The click front's answers as bytes (``tracker.http.front``): the ``302`` to a click's
destination, the open pixel's image, the ``404`` page, the ``408`` for a head that came too
slowly, each with the headers aiohttp's view sends and a ``Date`` made once a second; and
the answer a connection owes a click until its observation is committed."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from aiohttp.http import SERVER_SOFTWARE

from tracker.http.redirect import NO_STORE_HEADERS, NOT_FOUND_PAGE, PIXEL_GIF, PIXEL_HEADERS

if TYPE_CHECKING:
    from tracker.http.front import ClickProtocol

_SERVER = SERVER_SOFTWARE.encode()
_NO_STORE = "".join(f"{name}: {value}\r\n" for name, value in NO_STORE_HEADERS.items()).encode()
_FOUND = b"HTTP/1.1 302 Found\r\n" + _NO_STORE + b"Location: "
_FOUND_END = b"\r\nContent-Length: 0\r\nDate: "
_FOUND_HEAD_END = b"\r\nDate: "  # aiohttp answers a HEAD's empty 302 without a length
_NOT_FOUND_BODY = NOT_FOUND_PAGE.encode()
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\n" + _NO_STORE
    + b"Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\nDate: "
    % len(_NOT_FOUND_BODY)
)
_PIXEL = (
    b"HTTP/1.1 200 OK\r\n"
    + "".join(f"{name}: {value}\r\n" for name, value in PIXEL_HEADERS.items()).encode()
    + b"Content-Type: image/gif\r\nContent-Length: %d\r\nDate: " % len(PIXEL_GIF)
)
_END = b"\r\nServer: " + _SERVER + b"\r\n\r\n"
_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                    b"Content-Length: 0\r\nDate: ")


class Answers:
    """The bytes of each answer; one per front, for its ``Date``."""

    def __init__(self) -> None:
        self._date = (0, b"")

    def found(self, location: str, head_only: bool) -> bytes:
        end = _FOUND_HEAD_END if head_only else _FOUND_END
        return b"".join((_FOUND, location.encode("ascii"), end, self.date(), _END))

    def not_found(self, head_only: bool) -> bytes:
        head = _NOT_FOUND + self.date() + _END
        return head if head_only else head + _NOT_FOUND_BODY

    def pixel(self, head_only: bool) -> bytes:
        head = _PIXEL + self.date() + _END
        return head if head_only else head + PIXEL_GIF

    def request_timeout(self) -> bytes:
        return _REQUEST_TIMEOUT + self.date() + _END

    def date(self) -> bytes:
        """The ``Date`` header's value, made once a second."""
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, formatdate(now, usegmt=True).encode("ascii"))
        return self._date[1]


class OwedAnswer:
    """An answer owed to a click: its bytes, and whether it may go (its observation is
    committed, or given up). It is the click's waiter in the recorder (``Waiter``): no
    future, and one turn of the loop per connection, not per click, to write it out."""

    __slots__ = ("connection", "data", "opened", "ready")

    def __init__(self, data: bytes, ready: bool, connection: ClickProtocol,
                 opened: bool = False) -> None:
        self.data = data
        self.ready = ready
        self.connection = connection
        self.opened = opened  # an open pixel's answer, not a click's

    def done(self) -> bool:
        return self.ready

    def cancelled(self) -> bool:
        return False

    def set_result(self, committed: bool, /) -> None:
        # Inside the recorder's commit: only marks the answer ready (see ``committed``).
        self.ready = True
        self.connection.committed(self.opened)
