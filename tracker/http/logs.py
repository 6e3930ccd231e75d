"""The HTTP listener's log: what aiohttp's request handler logs, said without the client's
address or the request's bytes (docs/hostile-input.md).

aiohttp logs a request it cannot parse as ``Error handling request from <address>``, at
ERROR, with the parser's exception, whose message quotes the request line or header, a
tracking token included. No raw client address is kept, on disk or in the log (README,
docs/redirect.md). So aiohttp's server is given ``ServerLog`` in place of its
``aiohttp.server`` logger (and no access log): an address among a message's arguments
is logged as a click keeps it, its network label and keyed hash (tracker/clicks/network.py); an
exception by its class, never its message, with its traceback when it is a failure of
ours. A request aiohttp refused as malformed is the client's doing, not an error of the
server: it is logged at INFO at most."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from tracker.clicks.network import parse_address
from tracker.http.redirect import Redirector

log = logging.getLogger("clickrelay.http")

# An address → its network label (None: in no listed network) and keyed hash.
Reducer = Callable[[str], tuple[str | None, str]]


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """A logger for aiohttp's ``RequestHandler`` (its ``logger`` argument) that writes
    to ``clickrelay.http`` what may be kept: ``reduce`` is the address reduction of the
    configuration in force."""

    def __init__(self, reduce: Reducer) -> None:
        super().__init__(log, {})
        self._reduce = reduce

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = _exception(kwargs.get("exc_info"))
        if isinstance(exc, HttpProcessingError):
            level = min(level, logging.INFO)
        if not self.logger.isEnabledFor(level):
            return
        try:
            text = str(msg) % tuple(self._said(arg) for arg in args) if args else str(msg)
        except (TypeError, ValueError):  # a message and arguments that do not match
            text = str(msg)
        if isinstance(exc, HttpProcessingError):
            text += f": {type(exc).__name__} ({exc.code})"
        elif exc is not None:
            text += f": {type(exc).__qualname__}\n" + "".join(traceback.format_tb(
                exc.__traceback__)).rstrip()
        self.logger.log(level, "%s", text)

    def _said(self, arg: object) -> object:
        """An argument as it may be logged: an address reduced, anything else as is."""
        if isinstance(arg, str) and parse_address(arg) is not None:
            label, addr_hash = self._reduce(arg)
            return f"client {addr_hash}" + (f" ({label})" if label else "")
        return arg


def _exception(exc_info: object) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    return sys.exc_info()[1] if exc_info else None


def server_log(redirector: Redirector) -> ServerLog:
    """The ``logger`` to give aiohttp's runner: addresses reduced as the redirect reduces
    a click's, with the configuration in force."""
    return ServerLog(lambda address: redirector.context().reduce_address(address, ()))
