-- clickrelay schema, version 1. Times are integer microseconds since the Unix epoch (UTC).

-- One row per recipient copy of an accepted mail: the spool entry and, after delivery,
-- the message data a click needs (docs/architecture.md, docs/mail.md).
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,           -- UUID, the message id
    submission_id   TEXT NOT NULL,              -- one SMTP transaction / API send
    project_id      TEXT NOT NULL,
    route_id        TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,
    subject         TEXT,
    tag             TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}', -- JSON object of strings
    track_clicks    INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,           -- accepted (= "sent" for token expiry)
    status          TEXT NOT NULL,              -- queued | delivered | failed
    body            BLOB,                       -- the rewritten message; NULL once delivered
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claimed_until   INTEGER,
    last_error      TEXT,
    finished_at     INTEGER                     -- delivered or failed for good
);
CREATE INDEX messages_due ON messages (status, next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_project_created ON messages (project_id, created_at);
CREATE INDEX messages_submission ON messages (submission_id);

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,                  -- delivered | temporary | permanent
    code        INTEGER,
    detail      TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_message ON delivery_attempts (message_id);

-- The tracked links of a message, by their index in document order.
CREATE TABLE links (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    link_index  INTEGER NOT NULL,
    destination TEXT NOT NULL,
    anchor_text TEXT NOT NULL DEFAULT '',
    honeypot    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, link_index)
) WITHOUT ROWID;
