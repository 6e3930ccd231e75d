-- clickrelay schema, version 4: idempotency keys of the send API (docs/api.md).
-- Times are integer microseconds since the Unix epoch (UTC).

-- A retried send with the same key and the same body gets the first answer back instead
-- of sending again; the same key with another body, or while the first request is still
-- being processed, is a conflict. Rows are purged 24 hours after they were written.
CREATE TABLE idempotency_keys (
    project_id  TEXT NOT NULL,
    scope       TEXT NOT NULL,              -- send | batch | batch-item
    key         TEXT NOT NULL,
    body_hash   TEXT NOT NULL,              -- SHA-256 of the canonical JSON of the request
    status      TEXT NOT NULL,              -- in_flight | done
    response    TEXT,                       -- JSON of the answer, once done
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (project_id, scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
