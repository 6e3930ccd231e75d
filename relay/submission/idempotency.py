"""The one idempotency check of SMTP and the send API (docs/mail.md, docs/api.md).

A mail carries a key (the ``Idempotency-Key`` header, or a batch item's
``idempotency_key``): the same key with the same mail within the window gets the first
answer back and nothing is sent again; the same key with another mail, or while the first
is still being taken, is refused. A key is claimed before the mail is spooled and
completed in the spool's own transaction (``Submitter.accept``), so that a crash can never
leave the mail spooled with its key open. A claim the process did not finish (it died
between the claim and the spool) is given back when the server starts again
(``release_unfinished_keys``): on SQLite one process alone uses the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relay.config.load import Config
from relay.errors import KeyConflict
from relay.message.headers import HeaderField
from relay.submission.controls import IDEMPOTENCY_HEADER
from store.clock import now_us
from store.idempotency import IN_FLIGHT, MISMATCH, KeyClaim, KeyState

US_PER_HOUR = 3_600_000_000

# Fields an MTA adds or changes on its way, on each attempt (a retry by Postfix has a new
# Received on top): not the mail's, so left out of what a key is bound to (RFC 5321 §4.4,
# RFC 8601, RFC 8617).
TRACE_FIELDS = frozenset({"received", "x-received", "return-path", "delivered-to",
                          "authentication-results"})
TRACE_PREFIXES = ("arc-",)


@dataclass(frozen=True)
class TakenKey:
    """A key its request has claimed, and the answer to keep under it once the mail is
    spooled (made from the mail's ids)."""

    claim: KeyClaim
    answer: Callable[[Any], Any]

    def response(self, accepted: Any) -> str:
        return json.dumps(self.answer(accepted))


class KeyStore(Protocol):
    async def claim_idempotency_keys(
        self, project_id: str, claims: Sequence[KeyClaim], now: int, ttl_us: int
    ) -> list[KeyState]: ...


def is_trace_field(f: HeaderField) -> bool:
    return f.lname in TRACE_FIELDS or f.lname.startswith(TRACE_PREFIXES)


def fingerprint(
    mail_from: str, rcpt_tos: Sequence[str], fields: Iterable[HeaderField],
    body: bytes | memoryview,
) -> str:
    """What an SMTP mail's Idempotency-Key is bound to: the envelope, every header field
    but the trace ones (each field's exact bytes), and the body, byte for byte."""
    digest = hashlib.sha256()
    kept = b"".join(f.raw for f in fields if not is_trace_field(f))
    for part in (mail_from.encode(), "\0".join(rcpt_tos).encode(), kept, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def window_us(config: Config) -> int:
    """How long a key is remembered: ``[retention] idempotency_hours``."""
    return int(config.retention.idempotency_hours * US_PER_HOUR)


def window_text(config: Config) -> str:
    return f"{config.retention.idempotency_hours:g} hours"


async def claim_keys(
    store: KeyStore, config: Config, project_id: str, claims: Sequence[KeyClaim],
    name_of: Mapping[str, str] | None = None, used_for: str = "message",
) -> list[KeyState]:
    """Claim every key of one request, all or none. A key in flight or used with another
    mail raises ``KeyConflict`` naming it (``name_of``: how the request calls a key of a
    scope, the header's name unless said otherwise; ``used_for``: what the key stands
    for, the message or the API's request body)."""
    states = await store.claim_idempotency_keys(project_id, claims, now_us(), window_us(config))
    for claim, state in zip(claims, states, strict=True):
        what = (name_of or {}).get(claim.scope, IDEMPOTENCY_HEADER)
        if state.state == IN_FLIGHT:
            raise KeyConflict(claim.key, f"{what} {claim.key!r} is still being processed; "
                              "try again later", in_flight=True)
        if state.state == MISMATCH:
            raise KeyConflict(claim.key, f"{what} {claim.key!r} was used for a different "
                              f"{used_for} in the last {window_text(config)}", in_flight=False)
    return states
