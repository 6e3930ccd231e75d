-- clickrelay schema, version 11: what the API shows of a message and of the configuration.
-- A copy's names as its message gives them (the From display name, the recipient's name in
-- To or Cc, the Reply-To addresses as a JSON list), read when the mail is accepted.
ALTER TABLE messages ADD COLUMN from_name TEXT;
ALTER TABLE messages ADD COLUMN rcpt_name TEXT;
ALTER TABLE messages ADD COLUMN reply_to TEXT;

-- Routes and webhooks live in the configuration file. When clickrelay first saw each one
-- and when it first saw its current settings (a hash of them): their created_at and
-- updated_at, which a reload of an unchanged item leaves as they were.
CREATE TABLE config_items (
    kind        TEXT NOT NULL,              -- route | webhook
    id          TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

-- messages.list, newest first.
CREATE INDEX messages_created ON messages (created_at);
