-- Per-user quotas (docs/SECURITY.md, "Limits"): who created each group, so the groups
-- one identity created can be counted. Groups created before this migration have no
-- recorded creator ('') and count for nobody.
ALTER TABLE groups ADD COLUMN creator TEXT NOT NULL DEFAULT '';
CREATE INDEX groups_by_creator ON groups (creator);
