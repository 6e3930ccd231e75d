"""What the dashboard reads and writes (docs/dashboard.md): its sessions, a project's
messages newest first with their human clicks (searched and paged by a keyset cursor), the
clicks of a period as the activity chart draws them, and the spool's copies. The indexes
these queries use are in migrations/0009_dashboard.sql; their times on a large store are in
docs/performance.md."""

from __future__ import annotations

import dataclasses
import json

from store.backend import Database
from store.dialect import containing, contains
from store.events import OPEN_LINK_INDEX
from store.message_info import INFO_COLUMNS, message_info
from store.records import ActivityBucket, DashboardSession, MessageInfo, MessageListRow

SPOOL_STATES = ("queued", "failed")
SHORT_RANGE_US = 2 * 86_400 * 1_000_000


class DashboardStore:
    db: Database

    async def create_session(self, session: DashboardSession) -> None:
        await self.db.write_statement(
            "INSERT INTO dashboard_sessions (id_hash, user_name, credential, csrf_token,"
            " created_at, expires_at) VALUES (?,?,?,?,?,?)",
            (session.id_hash, session.user_name, session.credential, session.csrf_token,
             session.created_at, session.expires_at),
        )

    async def get_session(self, id_hash: str, now: int) -> DashboardSession | None:
        """The session, while it has not expired."""
        row = await self.db.fetchone(
            "SELECT id_hash, user_name, credential, csrf_token, created_at, expires_at"
            " FROM dashboard_sessions WHERE id_hash = ? AND expires_at > ?",
            (id_hash, now),
        )
        return DashboardSession(*tuple(row)) if row else None

    async def end_session(self, id_hash: str) -> None:
        await self.db.write_statement("DELETE FROM dashboard_sessions WHERE id_hash = ?",
                                      (id_hash,))

    async def purge_sessions(self, now: int) -> None:
        await self.db.write_statement("DELETE FROM dashboard_sessions WHERE expires_at <= ?",
                                      (now,))

    async def message_page(
        self, project_id: str, *, search: str, before: tuple[int, str] | None, limit: int
    ) -> list[MessageListRow]:
        """A project's copies, newest first, older than ``before`` (created_at, id); with
        ``search``, those whose recipient or subject contains it or whose tag is it."""
        sql = (f"SELECT {INFO_COLUMNS}, (SELECT COUNT(*) FROM events e"
               " WHERE e.message_id = messages.id AND e.counts_for_metrics = 1"
               " AND e.link_index >= 0)"
               " FROM messages WHERE project_id = ?")
        params: list[object] = [project_id]
        if before is not None:
            sql += " AND (created_at, id) < (?, ?)"
            params += before
        if search:
            like = containing(search)
            sql += (f" AND ({contains('rcpt_to')} OR {contains('subject')}"
                    " OR tag = ?)")
            params += [like, like, search]
        rows = await self.db.fetchall(
            sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit])
        return [MessageListRow(message_info(r), r[-1]) for r in rows]

    async def click_activity(
        self, project_id: str, since: int, until: int, bucket_us: int, *,
        route_id: str | None = None, tag: str | None = None, settled_before: int,
        kept_since: int,
    ) -> list[ActivityBucket]:
        """The project's clicks with ``since <= clicked_at < until`` in periods of
        ``bucket_us`` from ``since`` (only those with clicks); a route or a tag narrows them
        to its messages. A period that ended before ``settled_before`` (nothing can be added
        to it any more) is counted once and kept; one that starts before ``kept_since``
        (retention may be purging it) is always counted afresh."""
        key = (project_id, route_id or "", tag or "", bucket_us)
        rows = await self.db.fetchall(
            "SELECT start, human, unique_human, machine, human_opens, unique_human_opens"
            " FROM dashboard_activity"
            " WHERE project_id = ? AND route_id = ? AND tag = ? AND bucket_us = ?"
            " AND start >= ? AND start < ? AND start >= ?", (*key, since, until, kept_since))
        kept = {r[0]: ActivityBucket(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5])
                for r in rows}
        starts = range(since, until, bucket_us)
        missing = [s for s in starts if s not in kept]
        if not missing:
            return [kept[s] for s in starts if _counted(kept[s])]
        counted = await self._count_activity(project_id, missing[0], until, bucket_us,
                                             route_id, tag)
        settled = [counted.get(s, ActivityBucket(s, 0, 0, {})) for s in missing
                   if kept_since <= s and s + bucket_us <= settled_before]
        if settled:
            await self._keep_activity(key, settled, kept_since)
        found = {**counted, **kept}
        return [found[s] for s in starts if s in found and _counted(found[s])]

    async def _count_activity(
        self, project_id: str, since: int, until: int, bucket_us: int,
        route_id: str | None, tag: str | None,
    ) -> dict[int, ActivityBucket]:
        params: list[object] = [bucket_us, project_id, since, until]
        cond = ""
        # A long range: the route's or tag's messages listed once, each click looked up in
        # the list; a short one (the periods not counted yet, usually today's): each click's
        # message looked up, rather than listing a route's every message for a few clicks.
        short = until - since <= SHORT_RANGE_US
        for column, value in (("route_id", route_id), ("tag", tag)):
            if value is not None:
                params.append(value)
                if short:
                    cond += (" AND EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id"
                             f" AND m.{column} = ?{len(params)})")
                else:
                    cond += (" AND e.message_id IN (SELECT id FROM messages"
                             f" WHERE project_id = ?2 AND {column} = ?{len(params)})")
        bucket = "?3 + (e.clicked_at - ?3) / ?1 * ?1"
        where = (f"FROM events e{self.db.dialect.indexed_by('events_project_activity')}"
                 " WHERE e.project_id = ?2"
                 f" AND e.clicked_at >= ?3 AND e.clicked_at < ?4{cond}")
        human = await self.db.fetchall(
            f"SELECT {bucket}, COUNT(*), COUNT(DISTINCT e.message_id) {where}"
            f" AND e.counts_for_metrics = 1 AND e.link_index != {OPEN_LINK_INDEX} GROUP BY 1",
            params)
        machine = await self.db.fetchall(
            f"SELECT {bucket}, e.classification, COUNT(*) {where} AND e.machine = 1"
            f" AND e.link_index != {OPEN_LINK_INDEX} GROUP BY 1, 2", params)
        opens = await self.db.fetchall(
            f"SELECT {bucket}, COUNT(*), COUNT(DISTINCT e.message_id) {where}"
            f" AND e.counts_for_metrics = 1 AND e.link_index = {OPEN_LINK_INDEX} GROUP BY 1",
            params)
        buckets = {start: ActivityBucket(start, clicks, unique, {})
                   for start, clicks, unique in human}
        for start, classification, clicks in machine:
            found = buckets.setdefault(start, ActivityBucket(start, 0, 0, {}))
            found.machine[classification] = clicks
        for start, count, unique in opens:
            found = buckets.setdefault(start, ActivityBucket(start, 0, 0, {}))
            buckets[start] = dataclasses.replace(found, human_opens=count,
                                                 unique_human_opens=unique)
        return buckets

    async def _keep_activity(self, key: tuple[str, str, str, int],
                             settled: list[ActivityBucket], kept_since: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM dashboard_activity WHERE start < ?", (kept_since,))
            await tx.executemany(
                "INSERT INTO dashboard_activity (project_id, route_id, tag,"
                " bucket_us, start, human, unique_human, machine, human_opens,"
                " unique_human_opens) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (project_id, route_id, tag, bucket_us, start) DO UPDATE SET"
                " human = excluded.human, unique_human = excluded.unique_human,"
                " machine = excluded.machine, human_opens = excluded.human_opens,"
                " unique_human_opens = excluded.unique_human_opens",
                [(*key, b.start, b.human, b.unique_human, json.dumps(b.machine),
                  b.human_opens, b.unique_human_opens) for b in settled])

    async def earliest_pending_click(self) -> int | None:
        """When the oldest observation not yet promoted to an event was made."""
        row = await self.db.fetchone("SELECT MIN(at) FROM observations WHERE state = 'pending'")
        return row[0] if row else None

    async def spool_copies(self, status: str, limit: int) -> list[MessageInfo]:
        """Queued copies, oldest first, or failed ones, newest first."""
        if status not in SPOOL_STATES:
            raise ValueError(f"status must be one of {SPOOL_STATES}")
        order = "created_at" if status == "queued" else "finished_at DESC"
        rows = await self.db.fetchall(
            f"SELECT {INFO_COLUMNS} FROM messages WHERE status = ? ORDER BY {order} LIMIT ?",
            (status, limit))
        return [message_info(r) for r in rows]



def _counted(bucket: ActivityBucket) -> bool:
    return bool(bucket.human or bucket.unique_human or bucket.machine or bucket.human_opens)
