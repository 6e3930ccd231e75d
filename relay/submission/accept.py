"""Taking a submitted mail: the steps between the end of DATA (or an API send) and the
reply. Reads as a table of contents: read the mail in a worker (parse → choose route →
decide tracking → rewrite once → tokens per recipient, relay/submission/intake.py) → claim its
Idempotency-Key → spool (docs/mail.md). The caller replies only after ``accept`` returns."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from relay.config.load import Config
from relay.delivery.upstream import carried_params
from relay.rewrite.minting import SECONDS_PER_DAY, LinkSettings
from relay.submission.idempotency import TakenKey, claim_keys
from relay.submission.intake import Prepared, Submission, prepare
from relay.submission.pool import MailWorkers
from store.bodies import write_body
from store.idempotency import DONE, KeyClaim, KeyState
from store.ids import new_id
from store.records import AnsweredKey, NewMessage
from tracker.config import ProjectConfig, link_base, tracking_hosts
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.submission")

SMTP_KEY_SCOPE = "smtp"
# A mail larger than this goes to its worker, and its shared body comes back, in files.
IN_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Accepted:
    submission_id: str
    message_ids: tuple[str, ...]


class Spool(Protocol):
    """What the submission needs of the store."""

    def body_file(self, body_id: str) -> Path | None: ...

    async def discard_bodies(self, body_ids: Sequence[str]) -> None: ...

    async def spool_messages(
        self, messages: Sequence[NewMessage], answered_key: AnsweredKey | None = None
    ) -> None: ...

    async def claim_idempotency_keys(
        self, project_id: str, claims: Sequence[KeyClaim], now: int, ttl_us: int
    ) -> list[KeyState]: ...

    async def release_idempotency_keys(
        self, project_id: str, keys: Sequence[tuple[str, str]]
    ) -> None: ...


class Submitter:
    def __init__(
        self,
        config: Callable[[], Config],
        store: Spool,
        metrics: Metrics,
        on_spooled: Callable[[], None] = lambda: None,
        workers: MailWorkers | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._on_spooled = on_spooled
        self._workers = workers or MailWorkers(config().smtp.parse_workers)

    async def accept(
        self, project: ProjectConfig, mail_from: str, rcpt_tos: Sequence[str], raw: bytes,
        taken: TakenKey | None = None, mail_params: Sequence[str] = (),
    ) -> Accepted:
        """Spool one copy per recipient; on return every copy is on disk. ``taken``: an
        idempotency key the caller has claimed (the send API), completed in the spool's
        transaction; without it, the mail's own ``Idempotency-Key`` header is claimed.
        ``mail_params``: the parameters of SMTP's MAIL, those the upstream gets again."""
        config = self._config()
        project = config.project_by_id(project.id) or project  # routes as reloaded
        submission = replace(submission_of(config, project, mail_from, rcpt_tos, raw),
                             mail_params=carried_params(mail_params))
        prepared = await self._read(submission)
        try:
            if taken is not None:
                return await self._spool(submission, prepared, taken)
            return await self._claim_and_spool(submission, prepared)
        except BaseException:
            if prepared.body.in_file:
                await self._store.discard_bodies([prepared.body.id])
            raise

    async def _read(self, submission: Submission) -> Prepared:
        """The mail read in a worker; a large one goes there and back in files."""
        if len(submission.raw) <= IN_FILE_BYTES:
            return await self._workers.run(prepare, submission)
        name = f"{submission.submission_id}.in"
        # A store that keeps every body in its database has no directory of body files:
        # the mail goes to the worker through the system's temporary directory.
        raw_file = self._store.body_file(name) or Path(tempfile.gettempdir(), f"clickrelay-{name}")
        await asyncio.to_thread(write_body, raw_file, [submission.raw], sync=False)
        try:
            return await self._workers.run(prepare, replace(
                submission, raw=b"", raw_file=raw_file,
                body_file=self._store.body_file(submission.submission_id)))
        finally:
            await asyncio.to_thread(raw_file.unlink, missing_ok=True)

    async def _claim_and_spool(self, submission: Submission, prepared: Prepared) -> Accepted:
        taken = None
        key = prepared.controls.idempotency_key
        if key is not None and prepared.body_hash is not None:
            taken = TakenKey(KeyClaim(SMTP_KEY_SCOPE, key, prepared.body_hash), smtp_answer)
            replayed = await self._claim(submission.project.id, taken.claim)
            if replayed is not None:
                if prepared.body.in_file:
                    await self._store.discard_bodies([prepared.body.id])
                return replayed
        try:
            return await self._spool(submission, prepared, taken)
        except BaseException:
            if taken is not None:
                await self._store.release_idempotency_keys(
                    submission.project.id, [(taken.claim.scope, taken.claim.key)])
            raise

    async def close(self) -> None:
        await self._workers.close()

    @property
    def workers(self) -> MailWorkers:
        return self._workers

    async def _spool(
        self, submission: Submission, prepared: Prepared, taken: TakenKey | None
    ) -> Accepted:
        copies = new_messages(submission, prepared)
        accepted = Accepted(prepared.submission_id, tuple(c.id for c in copies))
        answered = None
        if taken is not None:
            answered = AnsweredKey(submission.project.id, taken.claim.scope, taken.claim.key,
                                   taken.response(accepted))
        await self._store.spool_messages(copies, answered)
        self._on_spooled()
        self._count(prepared, copies)
        return accepted

    async def _claim(self, project_id: str, claim: KeyClaim) -> Accepted | None:
        """Take an Idempotency-Key for this mail: the earlier answer when the same mail
        was accepted under it before, None when it is new (docs/mail.md)."""
        [state] = await claim_keys(self._store, self._config(), project_id, [claim])
        if state.state == DONE and state.response:
            answer = json.loads(state.response)
            self._metrics.mail_replayed.inc()
            return Accepted(answer["submission_id"], tuple(answer["message_ids"]))
        return None

    def _count(self, prepared: Prepared, copies: Sequence[NewMessage]) -> None:
        failed = [part for part in prepared.parts if part.error]
        for part in failed:
            log.warning("html part left untracked submission=%s part=%s reason=%s",
                        prepared.submission_id, part.path, part.error)
        self._metrics.mail_accepted.inc(len(copies))
        self._metrics.rewrite_failures.inc(len(failed) * len(copies))
        self._metrics.links_tracked.inc(
            sum(1 for link in prepared.links if not link.honeypot) * len(copies)
        )


def smtp_answer(accepted: Accepted) -> dict[str, object]:
    """What an SMTP resubmission under the same key is answered with."""
    return {"submission_id": accepted.submission_id, "message_ids": list(accepted.message_ids)}


def submission_of(
    config: Config, project: ProjectConfig, mail_from: str, rcpt_tos: Sequence[str], raw: bytes
) -> Submission:
    """The mail and what reading it needs of the configuration, for a worker process."""
    created_at = time.time_ns() // 1000
    tracking = config.tracking
    links = LinkSettings(
        key=tracking.signing_keys[0],
        base=link_base(tracking, project),
        sid=project.sid,
        expires=created_at // 1_000_000 + tracking.token_ttl_days * SECONDS_PER_DAY,
        hosts=tuple(sorted(tracking_hosts(config))),
        honeypot=False,
        limits=config.smtp.limits,
    )
    return Submission(new_id(), project, mail_from, tuple(rcpt_tos), raw, created_at,
                      links)


def new_messages(submission: Submission, prepared: Prepared) -> list[NewMessage]:
    """One copy per envelope recipient, each with its own id and its own tokens."""
    shared = prepared.body
    controls = prepared.controls
    return [
        NewMessage(
            id=copy.id, submission_id=prepared.submission_id,
            project_id=submission.project.id, route_id=prepared.route.id,
            mail_from=submission.mail_from, rcpt_to=copy.rcpt_to, subject=prepared.subject,
            tag=controls.tag, metadata=controls.metadata, track_clicks=prepared.tracking,
            created_at=submission.created_at, body=b"", links=prepared.links,
            shared=shared, fills=copy.fills, fills_span=copy.fills_span, names=copy.names,
            mail_params=submission.mail_params, track_opens=prepared.opens,
        )
        for copy in prepared.copies
    ]
