-- clickrelay schema, version 14: an address's clicks with the message each was on.
-- Promotion counts, for every click, the distinct messages its address clicked within the
-- fan-out window (store/context.py). With observations_address on (addr_hash, at) alone,
-- each of those clicks was read from the table for its message_id; with message_id in the
-- index the count is read from the index alone (a campaign's clicks: 30 -> 8 us a click).
-- Building it reads every observation once.
DROP INDEX observations_address;
CREATE INDEX observations_address ON observations (addr_hash, at, message_id);
