-- clickrelay schema, version 12 (as SQLite's migrations/0012_route_settings.sql): route
-- switches shared by the nodes of one database (relay/config/shared.py).
CREATE TABLE route_settings (
    route_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       INTEGER NOT NULL,
    changed_at  BIGINT NOT NULL,
    PRIMARY KEY (route_id, key)
);
