-- Delivery hub schema, version 1 (SQLite). Opaque MLS bytes and public metadata only.

CREATE TABLE groups (
    group_id     BLOB    PRIMARY KEY,
    cipher_suite INTEGER NOT NULL,
    epoch        INTEGER NOT NULL CHECK (epoch >= 0),
    next_seq     INTEGER NOT NULL CHECK (next_seq >= 1),
    group_info   BLOB,
    ratchet_tree BLOB,
    hub_state    BLOB    NOT NULL
) WITHOUT ROWID;

-- One ordered log per group: commits, proposals and application messages share seq.
CREATE TABLE log (
    group_id BLOB    NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    epoch    INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    sender   TEXT    NOT NULL,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;

-- Belt and braces for RFC 9750 §5.2: the database itself refuses a second commit per epoch.
CREATE UNIQUE INDEX log_one_commit_per_epoch ON log (group_id, epoch) WHERE kind = 'commit';

CREATE TABLE queued_proposals (
    group_id     BLOB    NOT NULL,
    epoch        INTEGER NOT NULL,
    proposal_ref BLOB    NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (group_id, epoch, proposal_ref),
    FOREIGN KEY (group_id, seq) REFERENCES log (group_id, seq) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX queued_proposals_by_seq ON queued_proposals (group_id, seq);

CREATE TABLE members (
    group_id   BLOB    NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    leaf_index INTEGER NOT NULL,
    identity   TEXT    NOT NULL,
    PRIMARY KEY (group_id, leaf_index)
) WITHOUT ROWID;
CREATE INDEX members_by_identity ON members (identity);

CREATE TABLE key_packages (
    ref          BLOB    PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    device       TEXT    NOT NULL,
    cipher_suite INTEGER NOT NULL,
    key_package  BLOB    NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_resort  INTEGER NOT NULL CHECK (last_resort IN (0, 1))
);
CREATE INDEX key_packages_claim ON key_packages (user_id, cipher_suite, last_resort, expires_at);
CREATE INDEX key_packages_expiry ON key_packages (expires_at);
CREATE UNIQUE INDEX key_packages_one_last_resort
    ON key_packages (user_id, device, cipher_suite) WHERE last_resort = 1;

CREATE TABLE rooms (
    transport TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    group_id  BLOB NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    PRIMARY KEY (transport, room_id)
) WITHOUT ROWID;
CREATE INDEX rooms_by_group ON rooms (group_id);

CREATE TABLE welcomes (
    welcome_id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id   BLOB    NOT NULL,
    epoch      INTEGER NOT NULL,
    commit_seq INTEGER NOT NULL,
    welcome    BLOB    NOT NULL,
    FOREIGN KEY (group_id, commit_seq) REFERENCES log (group_id, seq) ON DELETE CASCADE
);

CREATE TABLE welcome_deliveries (
    welcome_id INTEGER NOT NULL REFERENCES welcomes (welcome_id) ON DELETE CASCADE,
    recipient  TEXT    NOT NULL,
    PRIMARY KEY (recipient, welcome_id)
) WITHOUT ROWID;
CREATE INDEX welcome_deliveries_by_welcome ON welcome_deliveries (welcome_id);
CREATE INDEX welcomes_by_commit ON welcomes (group_id, commit_seq);

CREATE TABLE cursors (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
