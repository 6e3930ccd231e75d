-- clickrelay schema, version 7: the bytes the recipient copies of one submission share.
-- The copies of a mail differ only in their links' tokens (relay/copies.py): the message is
-- kept once, cut into pieces at the tokens, and each copy keeps its own fills for the
-- holes between the pieces. A large body is kept in a file beside the database
-- (store/bodies.py) rather than in it, so that writing it never holds the database.
CREATE TABLE bodies (
    id          TEXT PRIMARY KEY,           -- the submission id
    pieces      BLOB NOT NULL,              -- the pieces' lengths, 4-byte little-endian each
    data        BLOB                        -- the pieces one after the other; NULL: in a file
);

-- A copy with a shared body has body NULL, the body's id and its fills (each a 4-byte
-- little-endian length and the bytes). While a large submission is being written its
-- copies have status 'spooling', and become 'queued' together (store/mail.py).
ALTER TABLE messages ADD COLUMN body_id TEXT;
ALTER TABLE messages ADD COLUMN fills BLOB;
CREATE INDEX messages_body ON messages (body_id) WHERE body_id IS NOT NULL;
