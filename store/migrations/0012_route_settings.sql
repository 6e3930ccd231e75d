-- clickrelay schema, version 12: route switches shared by the nodes of one database.
-- On a store shared by several nodes (PostgreSQL), a route's track_clicks or track_opens
-- changed through the API, the dashboard or one node's configuration file is kept here and
-- put in force on every node over its file (relay/config/shared.py, docs/deployment.md).
-- One SQLite file has one node, whose configuration file stays the only record.
CREATE TABLE route_settings (
    route_id    TEXT NOT NULL,
    key         TEXT NOT NULL,              -- track_clicks | track_opens
    value       INTEGER NOT NULL,           -- 0 | 1
    changed_at  INTEGER NOT NULL,
    PRIMARY KEY (route_id, key)
) WITHOUT ROWID;
