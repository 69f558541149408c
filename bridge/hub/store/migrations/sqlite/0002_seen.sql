-- Keys (event, transaction and request ids) a transport has acted on, for at-most-once
-- handling across restarts; pruned by age (Store.prune_seen), unlike cursors.
CREATE TABLE seen (
    scope   TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE INDEX seen_by_age ON seen (seen_at);

-- Before this table the keys were cursors named "<prefix>.seen:...", never removed.
-- They only guard the moments between acting on an event and saving the sync or
-- transaction position, which a graceful stop (an upgrade) closes: drop them.
DELETE FROM cursors WHERE name LIKE 'im.mlsbridge.seen:%';
