-- clickrelay schema, version 10: open tracking (docs/opens.md).
-- An open is an observation and an event whose link_index is -1 (no link: the copy's open
-- pixel) and whose destination is ''; its event's first_click says first_open.

-- Whether the copy went out with an open pixel: the denominator of human_open_rate.
ALTER TABLE messages ADD COLUMN track_opens INTEGER NOT NULL DEFAULT 0;
