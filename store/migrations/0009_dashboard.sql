-- clickrelay schema, version 9: the dashboard's sessions, and the indexes its pages read
-- through (docs/dashboard.md, docs/performance.md). Times are integer microseconds (UTC).

-- A signed-in browser. The cookie holds a random id; the table holds only its SHA-256, so
-- that a copy of the database gives no usable cookie. Deleting the row ends the session
-- at once, for every node sharing the store.
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,                 -- the admin's name; '' for the team token
    credential TEXT NOT NULL,                 -- a digest of the password hash or token signed
                                              -- in with: a changed one ends the session
    csrf_token TEXT NOT NULL,                 -- what every form of the session must carry
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- A project's messages, newest first, paged by (created_at, id).
CREATE INDEX messages_project_created_id ON messages (project_id, created_at, id);
-- A project's clicks and opens (link_index -1) over time: everything the activity chart
-- counts, without reading the events' rows.
CREATE INDEX events_project_activity
    ON events (project_id, clicked_at, counts_for_metrics, machine, classification, message_id,
               link_index);

-- The activity chart's periods that can no longer change (ended, nothing pending before their
-- end), counted once: a 90-day chart then reads 90 rows instead of every click of 90 days.
-- route_id and tag are '' when the chart is not narrowed to one.
CREATE TABLE dashboard_activity (
    project_id   TEXT NOT NULL,
    route_id     TEXT NOT NULL,
    tag          TEXT NOT NULL,
    bucket_us    INTEGER NOT NULL,              -- the period's length
    start        INTEGER NOT NULL,              -- its start
    human        INTEGER NOT NULL,
    unique_human INTEGER NOT NULL,
    machine      TEXT NOT NULL,                 -- JSON object: classification -> clicks
    human_opens        INTEGER NOT NULL,
    unique_human_opens INTEGER NOT NULL,
    PRIMARY KEY (project_id, route_id, tag, bucket_us, start)
) WITHOUT ROWID;
