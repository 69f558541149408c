-- Authorization state (docs/SECURITY.md): when each member identity joined, the
-- outstanding KeyPackage claims, and the affiliations of the XMPP component's rooms.

-- The epoch from which an identity is a member (it may read the log from there on).
-- Members present before this migration keep 0.
ALTER TABLE members ADD COLUMN since_epoch BIGINT NOT NULL DEFAULT 0;

-- KeyPackage claims made for a group and not yet followed by the commit that adds
-- the target (bounded per (group, target) and per (claimer, target)).
CREATE TABLE key_package_claims (
    claim_id   BIGSERIAL PRIMARY KEY,
    group_id   BYTEA  NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    target     TEXT   NOT NULL,
    claimer    TEXT   NOT NULL,
    claimed_at BIGINT NOT NULL
);
CREATE INDEX key_package_claims_by_group ON key_package_claims (group_id, target);
CREATE INDEX key_package_claims_by_claimer ON key_package_claims (claimer, target);
CREATE INDEX key_package_claims_by_age ON key_package_claims (claimed_at);

-- XEP-0045 affiliations of the rooms the XMPP component hosts (owner, admin, member,
-- outcast); "none" is the absence of a row.
CREATE TABLE room_affiliations (
    room        TEXT NOT NULL,
    identity    TEXT NOT NULL,
    affiliation TEXT NOT NULL CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
    PRIMARY KEY (room, identity)
);
