-- Room pairs bridged at run time (docs/SECURITY.md A5, A22): an XMPP room and a Matrix
-- room carrying one group, and whether the pair is relayed; who made the last change
-- and when (seconds since the epoch). Pairs in the configuration file are not stored
-- here; on a conflict the configuration's pair wins.
CREATE TABLE room_pairs (
    xmpp_room   TEXT    NOT NULL PRIMARY KEY,
    matrix_room TEXT    NOT NULL UNIQUE,
    relay       INTEGER NOT NULL DEFAULT 0,
    changed_by  TEXT    NOT NULL,
    changed_at  INTEGER NOT NULL
);
