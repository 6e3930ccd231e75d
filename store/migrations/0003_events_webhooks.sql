-- clickrelay schema, version 3: click events and the webhook outbox (docs/classification.md, docs/webhooks.md).
-- Times are integer microseconds since the Unix epoch (UTC).

-- Promotion claims pending observations in click order (store/events.py): this index
-- lets the claim walk them in that order and stop at its limit.
CREATE INDEX observations_pending ON observations (at, promote_after) WHERE state = 'pending';
-- Classification context: a message's hits on one link (its honeypot).
CREATE INDEX observations_message_link ON observations (message_id, link_index, at);

-- One row per promoted observation: the classified click. A hit on a honeypot link is
-- context for its neighbours, not a click on a link of the message, and has no event.
CREATE TABLE events (
    id                 TEXT PRIMARY KEY,          -- UUID
    observation_id     INTEGER NOT NULL UNIQUE,   -- promoted once, never twice
    message_id         TEXT NOT NULL,
    project_id         TEXT NOT NULL,
    link_index         INTEGER NOT NULL,
    destination        TEXT NOT NULL,
    clicked_at         INTEGER NOT NULL,          -- when the request reached us
    classification     TEXT NOT NULL,             -- genuine | privacy_proxy | security_scanner
                                                  -- | link_preview | generic_bot
    probability        INTEGER NOT NULL,          -- 0..100, higher = more likely automated
    machine            INTEGER NOT NULL,
    counts_for_metrics INTEGER NOT NULL,
    first_click        INTEGER NOT NULL,
    proxy_type         TEXT,
    reason_codes       TEXT NOT NULL DEFAULT '[]', -- JSON array: Lettermint's broad categories
    rules              TEXT NOT NULL DEFAULT '[]', -- JSON array: the finer rule names that fired
    rules_version      TEXT NOT NULL,
    device_type        TEXT,
    client_type        TEXT,
    client_name        TEXT,
    user_agent         TEXT,
    created_at         INTEGER NOT NULL           -- promoted
);
CREATE INDEX events_message ON events (message_id, clicked_at, observation_id);
CREATE INDEX events_project_clicked ON events (project_id, clicked_at);

-- The outbox: one row per (event, webhook). ``id`` is the envelope id the receiver sees
-- on every attempt; ``body`` is fixed when the row is written so that every attempt sends
-- the same bytes.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,             -- UUID, the envelope id
    event_id        TEXT REFERENCES events (id) ON DELETE SET NULL,  -- NULL for test events
    project_id      TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    event_type      TEXT NOT NULL,                -- message.clicked, ...
    body            TEXT NOT NULL,                -- the exact JSON body
    status          TEXT NOT NULL,                -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claimed_until   INTEGER,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (project_id, webhook_id, created_at);
-- The claim takes each webhook's due deliveries from its own range of this index.
CREATE INDEX webhook_deliveries_hook_due
    ON webhook_deliveries (project_id, webhook_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,                 -- 1-based, the X-Lettermint-Attempt sent
    at          INTEGER NOT NULL,
    status_code INTEGER,                          -- NULL when no HTTP answer came
    duration_ms INTEGER NOT NULL,
    error       TEXT                              -- NULL on success
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);
