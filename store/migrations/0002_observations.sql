-- clickrelay schema, version 2: observations, the raw material of click events (docs/redirect.md).
-- Times are integer microseconds since the Unix epoch (UTC).

-- One row per request to a valid tracking link, committed before the 302 goes out. The
-- client address is never stored: only the label of a known network it belongs to and a
-- keyed hash of it. No foreign key to messages: a click is kept even when the message
-- row is gone (retention, a restored backup).
CREATE TABLE observations (
    id            INTEGER PRIMARY KEY,
    message_id    TEXT NOT NULL,                 -- from the token's claims
    link_index    INTEGER NOT NULL,
    destination   TEXT NOT NULL,
    project_sid   TEXT NOT NULL,
    at            INTEGER NOT NULL,              -- when the request arrived
    method        TEXT NOT NULL,                 -- GET | HEAD
    user_agent    TEXT NOT NULL DEFAULT '',
    headers       TEXT NOT NULL DEFAULT '{}',    -- JSON object, lower-case names: accept,
                                                 -- accept-language, sec-fetch-*, purpose, …
    network       TEXT,                          -- network label, NULL when none matched
    addr_hash     TEXT NOT NULL,                 -- truncated HMAC-SHA256 of the address
    state         TEXT NOT NULL DEFAULT 'pending', -- pending | done (promoted)
    promote_after INTEGER NOT NULL,              -- at + settle_seconds
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX observations_message ON observations (message_id, at);
CREATE INDEX observations_address ON observations (addr_hash, at);
CREATE INDEX observations_due ON observations (state, promote_after);
