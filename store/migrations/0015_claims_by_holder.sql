-- clickrelay schema, version 15: each work queue's claimed items, by the worker holding them.
-- A worker renews its claims every third of its lease, and gives them back when it stops
-- (store/queues.py, store/mail.py, store/webhooks.py, store/events.py). Without these
-- indexes those statements walked every pending item of the queue (every queued message,
-- pending observation or webhook delivery) to find the few a worker holds, holding the
-- write lock all the while: about 7 ms at 20 000 pending observations, in proportion
-- beyond, so a backlog after an outage made every renewal longer. Only claimed items are
-- in them, a batch at a time.
CREATE INDEX messages_claimed ON messages (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX observations_claimed ON observations (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (claimed_by)
    WHERE claimed_by IS NOT NULL;
