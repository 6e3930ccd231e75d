-- clickrelay schema, version 9: the dashboard's sessions, and the indexes its pages read
-- through (docs/dashboard.md, docs/performance.md). Times are integer microseconds (UTC).

-- A signed-in browser. The cookie holds a random id; the table holds only its SHA-256, so
-- that a copy of the database gives no usable cookie. Deleting the row ends the session
-- at once, for every node sharing the store.
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,                 -- the admin's name; '' for the team token
    csrf_token TEXT NOT NULL,                 -- what every form of the session must carry
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- A project's messages, newest first, paged by (created_at, id).
CREATE INDEX messages_project_created_id ON messages (project_id, created_at, id);
-- A project's clicks over time: everything the activity chart counts, without reading
-- the events' rows.
CREATE INDEX events_project_activity
    ON events (project_id, clicked_at, counts_for_metrics, machine, classification, message_id);
