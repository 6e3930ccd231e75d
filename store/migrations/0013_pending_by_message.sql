-- clickrelay schema, version 13: the pending observations of each message, in click order.
-- A promotion claim takes an observation only when no earlier observation of its message
-- is still pending and held or settling (store/events.py). Asked through
-- observations_message, that walked every earlier observation of the message, promoted or
-- not, for each candidate: hundreds on a message clicked all day, and the claim holds the
-- write lock the clicks' commits wait for. This index holds only the pending ones.
CREATE INDEX observations_pending_message ON observations (message_id, at, id)
    WHERE state = 'pending';
