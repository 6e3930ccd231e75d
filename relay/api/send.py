"""``POST /v1/send`` and ``POST /v1/send/batch``: the Lettermint send API in front of the
same pipeline as SMTP (docs/api.md). Each email: read and check the request → build the
message → the limits of SMTP (recipients, size) → ``Submitter.accept`` (route, override,
per-recipient copies, spool) → ``202 {"message_id", "status": "pending"}``.

``Idempotency-Key`` (and a batch item's ``idempotency_key``): the same key with the same
body within the window (``[retention] idempotency_hours``) gets the first answer back and
sends nothing; the same key with another body, or while the first request is still in
flight, is a 409 (relay/submission/idempotency.py). A key's answer is written in the
transaction that spools its mail."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, TypeAdapter

from relay.api.common import api_of, json_response, read_json, sending_project
from relay.api.model import read
from relay.api.send_mime import build_message, check_control_clash
from relay.api.send_request import IdempotencyKey, SendBatchMailItem, SendMailRequest
from relay.api.shapes import PendingSendMailResponse
from relay.api.store import IdempotencyStore
from relay.config.load import Config
from relay.errors import BadInput, http_error
from relay.submission.accept import Accepted
from relay.submission.controls import IDEMPOTENCY_HEADER
from relay.submission.idempotency import TakenKey, claim_keys
from relay.submission.intake import choose_route
from store.idempotency import DONE, KeyClaim
from tracker.config import ProjectConfig

log = logging.getLogger("clickrelay.api")

MAX_BATCH = 500
REPLAYED_HEADER = "Idempotent-Replayed"
# How a request names its keys, by scope.
NAMES = MappingProxyType({"batch-item": "idempotency_key"})
BODY = "request body"  # what a key stands for
# The body of POST /v1/send/batch, and the Idempotency-Key header.
BATCH = TypeAdapter(Annotated[list[SendBatchMailItem], Field(min_length=1, max_length=MAX_BATCH)])
KEY = TypeAdapter(IdempotencyKey)


@dataclass(frozen=True)
class Prepared:
    """One email ready for the pipeline, with its batch item key if it has one."""

    request: SendMailRequest
    raw: bytes
    key: KeyClaim | None = None


async def send(request: web.Request) -> web.Response:
    project = sending_project(request)
    data = await read_json(request)
    key = idempotency_key(request)
    prepared = await asyncio.to_thread(prepare, api_of(request).live(), project, data)
    if key is None:
        return json_response(await submit(request, project, prepared), 202)
    store: IdempotencyStore = api_of(request).store
    claim = KeyClaim("send", key, body_hash(data))
    (state,) = await claim_keys(store, api_of(request).live(), project.id, [claim], NAMES,
                                 BODY)
    if state.state == DONE and state.response is not None:
        return json_response(json.loads(state.response), 202, {REPLAYED_HEADER: "true"})
    try:
        body = await submit(request, project, prepared, TakenKey(claim, answer_of))
    except BaseException:
        await store.release_idempotency_keys(project.id, [(claim.scope, claim.key)])
        raise
    return json_response(body, 202)


async def send_batch(request: web.Request) -> web.Response:
    project = sending_project(request)
    data = await read_json(request)
    key = idempotency_key(request)
    items = await asyncio.to_thread(prepare_batch, api_of(request).live(), project, data)
    store: IdempotencyStore = api_of(request).store
    whole = KeyClaim("batch", key, body_hash(data)) if key else None
    claims = ([whole] if whole else []) + [p.key for p in items if p.key]
    states = (await claim_keys(store, api_of(request).live(), project.id, claims, NAMES,
                                   BODY)
              if claims else [])
    if whole and states[0].state == DONE and states[0].response is not None:
        return json_response(json.loads(states[0].response), 202, {REPLAYED_HEADER: "true"})
    done = {c.key: s.response for c, s in zip(claims, states, strict=True)
            if c.scope == "batch-item" and s.state == DONE}
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if item.key and item.key.key in done:
            results.append(json.loads(done[item.key.key] or "{}"))
            continue
        taken = TakenKey(item.key, answer_of) if item.key else None
        try:
            body = await submit(request, project, item, taken, prefix=f"messages[{index}].")
        except BaseException as exc:
            unsent = [p.key for p in items[index:] if p.key and p.key.key not in done]
            release = ([whole] if whole else []) + unsent
            await store.release_idempotency_keys(project.id, [(c.scope, c.key) for c in release])
            if not isinstance(exc, Exception):
                raise
            return batch_failure(exc, project, index, results)
        results.append(body)
    if whole:
        await complete_key(store, project, whole, results)
    return json_response(results, 202)


async def complete_key(store: IdempotencyStore, project: ProjectConfig, claim: KeyClaim,
                       answer: Any) -> None:
    """Record the answer of a whole batch under its key, once every email of it is
    spooled (each email's own key was completed with its spool). The mail is spooled
    whatever happens here: a failure is logged, not answered with an error (the key stays
    taken until the next start, so a retry gets a 409 rather than a second copy)."""
    try:
        await store.complete_idempotency_key(project.id, claim.scope, claim.key,
                                             json.dumps(answer))
    except Exception:
        log.exception("recording the answer of idempotency key failed project=%s", project.id)


def batch_failure(exc: Exception, project: ProjectConfig, index: int,
                  results: list[dict[str, Any]]) -> web.Response:
    """Emails before the failed one are accepted: the error lists them (``details``)."""
    status, body = http_error(exc)
    if status >= 500:
        log.error("batch send failed project=%s index=%d", project.id, index, exc_info=exc)
    body["details"] = {
        "failed_index": index,
        "accepted": [{"index": i, "message_id": r["message_id"]} for i, r in enumerate(results)],
    }
    return json_response(body, status)


async def submit(request: web.Request, project: ProjectConfig, item: Prepared,
                 taken: TakenKey | None = None, prefix: str = "") -> dict[str, Any]:
    req = item.request
    try:
        accepted = await api_of(request).submitter.accept(project, req.mail_from, req.rcpt_tos,
                                                          item.raw, taken)
    except BadInput as exc:
        raise BadInput(f"{prefix}{_field_of(exc)}", exc.message) from exc
    log.info("queued via api project=%s submission=%s copies=%d", project.id,
             accepted.submission_id, len(accepted.message_ids))
    return answer_of(accepted)


def answer_of(accepted: Accepted) -> dict[str, Any]:
    """One id for the send, as the SDK's PendingSendMailResponse has it: the first copy's.
    Plain data, since it is also kept as the key's answer."""
    answer = PendingSendMailResponse(message_id=accepted.message_ids[0], status="pending")
    return answer.model_dump()


def _field_of(exc: BadInput) -> str:
    """The request field behind a pipeline error about a control header."""
    return {"x-lettermint-route": "route", "x-lm-tag": "tag"}.get(exc.field.lower(), exc.field)


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    return None if key is None else read(KEY.validate_python, key, IDEMPOTENCY_HEADER)


def body_hash(data: Any) -> str:
    """The same request, however its JSON was spaced or its keys ordered."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def prepare(config: Config, project: ProjectConfig, data: Any) -> Prepared:
    """Check one email and build its message. CPU-bound: runs in a worker thread."""
    return build(config, project, read(SendMailRequest.model_validate, data))


def prepare_batch(config: Config, project: ProjectConfig, data: Any) -> list[Prepared]:
    """Every email of a batch checked before any is sent: one bad email sends nothing."""
    emails = read(BATCH.validate_python, data, "messages")
    items, keys = [], set()
    for index, (email, item) in enumerate(zip(emails, data, strict=True)):
        prefix = f"messages[{index}]."
        prepared = build(config, project, email, prefix)
        key = email.idempotency_key
        if key is not None:
            if key in keys:
                raise BadInput(f"{prefix}idempotency_key",
                               f"{prefix}idempotency_key: {key!r} is used twice in this batch")
            keys.add(key)
            rest = {k: v for k, v in item.items() if k != "idempotency_key"}
            prepared = Prepared(email, prepared.raw, KeyClaim("batch-item", key, body_hash(rest)))
        items.append(prepared)
    return items


def build(config: Config, project: ProjectConfig, req: SendMailRequest, prefix: str = ""
          ) -> Prepared:
    """What the request's shape cannot say: its route, the limits of SMTP, no header given
    twice; then the message."""
    check_control_clash(req, prefix)
    choose_route(project, req.route, f"{prefix}route")
    limit = config.smtp.max_recipients
    if len(req.rcpt_tos) > limit:
        raise BadInput(f"{prefix}to", f"{prefix}to: at most {limit} recipients in to, cc and bcc "
                       f"together, not {len(req.rcpt_tos)}")
    raw = build_message(req)
    if len(raw) > config.smtp.max_message_size:
        where = f"{prefix}{'attachments' if req.attachments else 'html'}"
        raise BadInput(where, f"{where}: the message is {len(raw)} bytes, more than the limit "
                       f"of {config.smtp.max_message_size}")
    return Prepared(req, raw)
