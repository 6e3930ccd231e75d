-- clickrelay schema, version 5: one index fewer to keep up on every click.
-- observations_message (message_id, at) already leads to a message's rows; the few rows of
-- one message are filtered by link_index as they are read (the honeypot hits in
-- store/events.py), so a second index in random message order is not worth its upkeep on
-- every insert.
DROP INDEX observations_message_link;
