-- Members' reports of commits they could not process (an unverifiable fault: membership
-- tag, confirmation MAC, path secrets), one per (commit, reporter); the per-group list of
-- identities the hub refuses commits and external joins from once a quorum reported them.
CREATE TABLE fault_reports (
    group_id    BYTEA   NOT NULL,
    commit_seq  BIGINT  NOT NULL,
    reporter    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    reported_at BIGINT  NOT NULL,
    PRIMARY KEY (group_id, commit_seq, reporter),
    FOREIGN KEY (group_id, commit_seq) REFERENCES log (group_id, seq) ON DELETE CASCADE
);

CREATE TABLE bans (
    group_id  BYTEA   NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    identity  TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    banned_at BIGINT  NOT NULL,
    PRIMARY KEY (group_id, identity)
);

-- The hub rebuilds an epoch's pending proposals from the log (Store.epoch_proposals).
CREATE INDEX log_proposals_by_epoch ON log (group_id, epoch, seq) WHERE kind = 'proposal';
