-- clickrelay schema, version 7: what the recipient copies of one submission share.
-- The copies of a mail differ only in their links' tokens (relay/copies.py): the message is
-- kept once, cut into pieces at the tokens, and each copy keeps only its fills for the
-- holes between the pieces. A large body is kept in a file beside the database
-- (store/bodies.py), the copies' fills after it, so that writing it never holds the
-- database that clicks are committed to; its links are kept once, not once per copy.
CREATE TABLE bodies (
    id          TEXT PRIMARY KEY,           -- the submission id
    pieces      BLOB NOT NULL,              -- the pieces' lengths, 4-byte little-endian each
    data        BLOB                        -- the pieces one after the other; NULL: in a file
);

CREATE TABLE submission_links (
    submission_id TEXT NOT NULL,
    link_index  INTEGER NOT NULL,
    destination TEXT NOT NULL,
    anchor_text TEXT NOT NULL DEFAULT '',
    honeypot    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (submission_id, link_index)
) WITHOUT ROWID;

-- A copy with a shared body has body NULL and the body's id; its fills (each a 4-byte
-- little-endian length and the bytes) are in ``fills``, or at fills_at (fills_size bytes)
-- in the body's file. Its links are those of its submission in submission_links.
ALTER TABLE messages ADD COLUMN body_id TEXT;
ALTER TABLE messages ADD COLUMN fills BLOB;
ALTER TABLE messages ADD COLUMN fills_at INTEGER;
ALTER TABLE messages ADD COLUMN fills_size INTEGER;
CREATE INDEX messages_body ON messages (body_id) WHERE body_id IS NOT NULL;
