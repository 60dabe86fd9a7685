-- Which agent a snapshot was taken of, not only its name: `agent_created_at` is that agent's
-- `created_at` (the gateway's clock), copied when the snapshot is recorded. A snapshot is seen
-- through the agent of its name only while that agent is this very one, so a later agent of
-- the same name (someone else's) never sees it, whatever the host's clock said.
ALTER TABLE snapshots ADD COLUMN agent_created_at TEXT;
-- Rows recorded before this column: the agent they were seen through until now, if it is
-- still there.
UPDATE snapshots SET agent_created_at = (
    SELECT a.created_at FROM agents a
    WHERE a.name = snapshots.agent AND a.created_at <= snapshots.created_at
);
