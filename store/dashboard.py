"""What the dashboard reads and writes (docs/dashboard.md): its sessions, a project's
messages newest first with their human clicks (searched and paged by a keyset cursor), the
clicks of a period as the activity chart draws them, and the spool's copies. The indexes
these queries use are in migrations/0009_dashboard.sql; their times on a large store are in
docs/performance.md."""

from __future__ import annotations

from store.db import Database
from store.mail import INFO_COLUMNS, message_info
from store.records import ActivityBucket, DashboardSession, MessageInfo, MessageListRow

SPOOL_STATES = ("queued", "failed")
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


class DashboardStore:
    db: Database

    async def create_session(self, session: DashboardSession) -> None:
        await self.db.write_statement(
            "INSERT INTO dashboard_sessions (id_hash, user_name, csrf_token, created_at,"
            " expires_at) VALUES (?,?,?,?,?)",
            (session.id_hash, session.user_name, session.csrf_token, session.created_at,
             session.expires_at),
        )

    async def get_session(self, id_hash: str, now: int) -> DashboardSession | None:
        """The session, while it has not expired."""
        row = await self.db.fetchone(
            "SELECT id_hash, user_name, csrf_token, created_at, expires_at"
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
               " WHERE e.message_id = messages.id AND e.counts_for_metrics = 1)"
               " FROM messages WHERE project_id = ?")
        params: list[object] = [project_id]
        if before is not None:
            sql += " AND (created_at, id) < (?, ?)"
            params += before
        if search:
            like = f"%{search.translate(_LIKE_ESCAPE)}%"
            sql += (" AND (rcpt_to LIKE ? ESCAPE '\\' OR subject LIKE ? ESCAPE '\\'"
                    " OR tag = ?)")
            params += [like, like, search]
        rows = await self.db.fetchall(
            sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit])
        return [MessageListRow(message_info(r), r[-1]) for r in rows]

    async def click_activity(
        self, project_id: str, since: int, until: int, bucket_us: int, *,
        route_id: str | None = None, tag: str | None = None,
    ) -> list[ActivityBucket]:
        """The project's clicks with ``since <= clicked_at < until`` in periods of
        ``bucket_us`` from ``since``; a route or a tag narrows them to its messages."""
        params: list[object] = [bucket_us, project_id, since, until]
        cond = ""
        for column, value in (("route_id", route_id), ("tag", tag)):
            if value is not None:
                params.append(value)
                cond += (" AND e.message_id IN (SELECT id FROM messages WHERE project_id = ?2"
                         f" AND {column} = ?{len(params)})")
        bucket = "(e.clicked_at - ?3) / ?1"
        human = await self.db.fetchall(
            f"SELECT {bucket}, COUNT(*), COUNT(DISTINCT e.message_id) FROM events e"
            " INDEXED BY events_project_activity"
            f" WHERE e.project_id = ?2 AND e.clicked_at >= ?3 AND e.clicked_at < ?4"
            f" AND e.counts_for_metrics = 1{cond} GROUP BY 1", params)
        machine = await self.db.fetchall(
            f"SELECT {bucket}, e.classification, COUNT(*) FROM events e"
            " INDEXED BY events_project_activity"
            f" WHERE e.project_id = ?2 AND e.clicked_at >= ?3 AND e.clicked_at < ?4"
            f" AND e.machine = 1{cond} GROUP BY 1, 2", params)
        buckets: dict[int, ActivityBucket] = {}
        for index, clicks, unique in human:
            buckets[index] = ActivityBucket(since + index * bucket_us, clicks, unique, {})
        for index, classification, clicks in machine:
            found = buckets.setdefault(index,
                                       ActivityBucket(since + index * bucket_us, 0, 0, {}))
            found.machine[classification] = clicks
        return [buckets[i] for i in sorted(buckets)]

    async def spool_copies(self, status: str, limit: int) -> list[MessageInfo]:
        """Queued copies, oldest first, or failed ones, newest first."""
        if status not in SPOOL_STATES:
            raise ValueError(f"status must be one of {SPOOL_STATES}")
        order = "created_at" if status == "queued" else "finished_at DESC"
        rows = await self.db.fetchall(
            f"SELECT {INFO_COLUMNS} FROM messages WHERE status = ? ORDER BY {order} LIMIT ?",
            (status, limit))
        return [message_info(r) for r in rows]

