"""The relay's failures, and the one place where they become SMTP replies and HTTP errors.

Bad input is the sender's to fix (5xx); anything else that stops a mail from being
spooled is temporary (451), so that the client keeps the mail and tries again. The HTTP
API maps the same failures to status codes and the JSON error bodies that the Lettermint
SDKs parse (docs/api.md): bad input 422 naming the field, anything unexpected 500."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any


class RelayError(Exception):
    """Base of the relay's own failures."""


class BadInput(RelayError):
    """The submission itself is wrong; ``field`` names what (a header or an API field)."""

    def __init__(self, field: str, message: str, smtp_code: int = 550) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.smtp_code = smtp_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a worker process (relay/submission/pool.py) and unpickled in the server's.
        return (type(self), (self.field, self.message, self.smtp_code))


class LimitExceeded(BadInput):
    """The submission is over one of the relay's limits (relay/message/limits.py): 552 5.3.4,
    naming the header or the limit, so that the sender does not try again."""

    def __init__(self, field: str, message: str, smtp_code: int = 552) -> None:
        super().__init__(field, message, smtp_code)


class TemporaryRefusal(RelayError):
    """The submission cannot be taken now but may be later (451 / 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeyConflict(RelayError):
    """An idempotency key is still being processed (``in_flight``: try again later) or was
    used for another mail (relay/submission/idempotency.py): 451 or 550 over SMTP, 409
    over the API."""

    def __init__(self, key: str, message: str, *, in_flight: bool) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.in_flight = in_flight


class UpstreamError(RelayError):
    """Delivery to the upstream failed; ``code`` is the SMTP code if it answered one,
    ``status`` the enhanced status code (RFC 3463) when the relay itself knows it."""

    def __init__(self, message: str, code: int | None = None, status: str | None = None
                 ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class UpstreamTemporary(UpstreamError):
    """4xx, refused or broken connection, timeout: try again later."""


class UpstreamPermanent(UpstreamError):
    """5xx: the upstream will never take this copy."""


# Replies of the submission server, by name (RFC 5321 §4.2, RFC 3463 enhanced codes).
REPLY_QUEUED = "250 2.0.0 Ok: queued as {ids}"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients (at most {limit} per message)"
REPLY_TEMPORARY = "451 4.3.0 Temporary failure, message not accepted: please try again later"
REPLY_NO_RECIPIENTS = "554 5.5.1 No valid recipients"
# RFC 4954 §6: a temporary failure; the password was not checked (relay/throttle.py).
REPLY_AUTH_THROTTLED = ("454 4.7.0 Temporary authentication failure: too many failed attempts"
                        " from your network, try again in {seconds} s")


def smtp_reply(exc: BaseException) -> str:
    """The SMTP reply for a failure while taking a mail; never a 250."""
    if isinstance(exc, BadInput):
        status = _SMTP_STATUS.get(exc.smtp_code, "5.5.4")
        return f"{exc.smtp_code} {status} {_one_line(exc.message)}"
    if isinstance(exc, TemporaryRefusal) or (isinstance(exc, KeyConflict) and exc.in_flight):
        return f"451 4.3.0 {_one_line(exc.message)}"
    if isinstance(exc, KeyConflict):
        return f"550 5.6.0 {_one_line(exc.message)}"
    return REPLY_TEMPORARY


# Enhanced status codes of the refusals (RFC 3463): bad content, over a limit.
_SMTP_STATUS = MappingProxyType({550: "5.6.0", 552: "5.3.4"})


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]


class ApiRefusal(RelayError):
    """An API request refused for a reason other than its data: credentials, a missing
    resource, a conflict with the current state, a body that is not JSON."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class MalformedRequest(ApiRefusal):
    status, code = 400, "MALFORMED_REQUEST"


class Unauthenticated(ApiRefusal):
    status, code = 401, "UNAUTHENTICATED"


class NotFound(ApiRefusal):
    status, code = 404, "RESOURCE_NOT_FOUND"


class Gone(ApiRefusal):
    """The thing asked for existed and is kept no more (a message's content)."""

    status, code = 410, "RESOURCE_GONE"


class TooManyAttempts(ApiRefusal):
    """The token was not checked: too many wrong ones came from the client's network
    (relay/throttle.py). ``retry_after``: whole seconds until the next check is due."""

    status, code = 429, "TOO_MANY_ATTEMPTS"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many invalid tokens from your network: try again in "
                         f"{retry_after} s.")
        self.retry_after = retry_after


class Conflict(ApiRefusal):
    status, code = 409, "CONFLICT"


HTTP_INTERNAL_MESSAGE = "Internal error: the request was not completed; please try again later."


def http_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for a failed API request. The SDKs read ``error`` as the
    code, ``message`` as the text and ``errors`` as the field errors of a 422."""
    if isinstance(exc, BadInput):
        return 422, {
            "error": "VALIDATION_ERROR",
            "message": exc.message,
            "errors": {exc.field: [exc.message]},
        }
    if isinstance(exc, ApiRefusal):
        body: dict[str, Any] = {"error": exc.code, "message": exc.message}
        if exc.details is not None:
            body["details"] = exc.details
        return exc.status, body
    if isinstance(exc, KeyConflict):
        return 409, {"error": "CONFLICT", "message": exc.message,
                     "details": {"idempotency_key": exc.key}}
    if isinstance(exc, TemporaryRefusal):
        return 409, {"error": "CONFLICT", "message": exc.message}
    return 500, {"error": "INTERNAL_ERROR", "message": HTTP_INTERNAL_MESSAGE}
