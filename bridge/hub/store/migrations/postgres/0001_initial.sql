-- Delivery hub schema, version 1 (PostgreSQL). Opaque MLS bytes and public metadata only.

CREATE TABLE groups (
    group_id     BYTEA   PRIMARY KEY,
    cipher_suite INTEGER NOT NULL,
    epoch        BIGINT  NOT NULL CHECK (epoch >= 0),
    next_seq     BIGINT  NOT NULL CHECK (next_seq >= 1),
    group_info   BYTEA,
    ratchet_tree BYTEA,
    hub_state    BYTEA   NOT NULL
);

-- One ordered log per group: commits, proposals and application messages share seq.
CREATE TABLE log (
    group_id BYTEA  NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL,
    epoch    BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    payload  BYTEA  NOT NULL,
    sender   TEXT   NOT NULL,
    PRIMARY KEY (group_id, seq)
);

-- Belt and braces for RFC 9750 §5.2: the database itself refuses a second commit per epoch.
CREATE UNIQUE INDEX log_one_commit_per_epoch ON log (group_id, epoch) WHERE kind = 'commit';

CREATE TABLE queued_proposals (
    group_id     BYTEA  NOT NULL,
    epoch        BIGINT NOT NULL,
    proposal_ref BYTEA  NOT NULL,
    seq          BIGINT NOT NULL,
    PRIMARY KEY (group_id, epoch, proposal_ref),
    FOREIGN KEY (group_id, seq) REFERENCES log (group_id, seq) ON DELETE CASCADE
);
CREATE INDEX queued_proposals_by_seq ON queued_proposals (group_id, seq);

CREATE TABLE members (
    group_id   BYTEA   NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    leaf_index INTEGER NOT NULL,
    identity   TEXT    NOT NULL,
    PRIMARY KEY (group_id, leaf_index)
);
CREATE INDEX members_by_identity ON members (identity);

CREATE TABLE key_packages (
    ref          BYTEA   PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    device       TEXT    NOT NULL,
    cipher_suite INTEGER NOT NULL,
    key_package  BYTEA   NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_resort  BOOLEAN NOT NULL
);
CREATE INDEX key_packages_claim ON key_packages (user_id, cipher_suite, last_resort, expires_at);
CREATE INDEX key_packages_expiry ON key_packages (expires_at);
CREATE UNIQUE INDEX key_packages_one_last_resort
    ON key_packages (user_id, device, cipher_suite) WHERE last_resort;

CREATE TABLE rooms (
    transport TEXT  NOT NULL,
    room_id   TEXT  NOT NULL,
    group_id  BYTEA NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    PRIMARY KEY (transport, room_id)
);
CREATE INDEX rooms_by_group ON rooms (group_id);

CREATE TABLE welcomes (
    welcome_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id   BYTEA  NOT NULL,
    epoch      BIGINT NOT NULL,
    commit_seq BIGINT NOT NULL,
    welcome    BYTEA  NOT NULL,
    FOREIGN KEY (group_id, commit_seq) REFERENCES log (group_id, seq) ON DELETE CASCADE
);

CREATE TABLE welcome_deliveries (
    welcome_id BIGINT NOT NULL REFERENCES welcomes (welcome_id) ON DELETE CASCADE,
    recipient  TEXT   NOT NULL,
    PRIMARY KEY (recipient, welcome_id)
);
CREATE INDEX welcome_deliveries_by_welcome ON welcome_deliveries (welcome_id);
CREATE INDEX welcomes_by_commit ON welcomes (group_id, commit_seq);

CREATE TABLE cursors (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
