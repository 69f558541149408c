-- The replay check of append_message (issue 19): each log entry's SHA-256, indexed per
-- group, so a repeated payload is found by one index search instead of comparing the
-- payloads of the whole replay window. Entries logged before are given theirs here
-- (sha256() is the store's own function on its connection: base.payload_digest).
ALTER TABLE log ADD COLUMN digest BLOB;
UPDATE log SET digest = sha256(payload);
CREATE INDEX log_digest ON log (group_id, digest, seq);
