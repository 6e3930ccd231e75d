-- clickrelay schema, version 8: delivery status notifications (docs/mail.md, "Delivery").
-- A copy that fails for good gets a notification (RFC 3464) to its envelope sender: a copy
-- of its own, from the null sender, spooled in the transaction that records the failure.
-- notice_of names the copy it reports on (NULL for every mail that was submitted), so that
-- a notification never has delivery events of its own.
ALTER TABLE messages ADD COLUMN notice_of TEXT;
-- The MAIL parameters the submission used that the upstream transaction carries on
-- (SMTPUTF8, BODY=8BITMIME; space-separated, '' for none): relay/delivery/upstream.py.
ALTER TABLE messages ADD COLUMN mail_params TEXT NOT NULL DEFAULT '';
