-- clickrelay schema, version 14 (as SQLite's migrations/0014_address_messages.sql): an
-- address's clicks with the message each was on.
-- Promotion counts, for every click, the distinct messages its address clicked within the
-- fan-out window (store/context.py). With observations_address on (addr_hash, at) alone,
-- each of those clicks was read from the table for its message_id; with message_id in the
-- index the count can be read from the index alone. Building it reads every observation
-- once.
DROP INDEX observations_address;
CREATE INDEX observations_address ON observations (addr_hash, at, message_id);
