-- Snapshots of agents' workspaces. The archive is on `host` (hostctl's snapshots/ID.tar.gz);
-- this row lets `snapshot list` answer without asking every host, and keeps the checksum a
-- restore must match. `owner` is the agent's owner when it was taken (who may remove it);
-- `spec` the agent's settings then (JSON CreateRequest). A row outlives its agent and its host.
CREATE TABLE snapshots (
    id         TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    host       TEXT NOT NULL,
    label      TEXT,
    created_at TEXT NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    owner      TEXT,
    taken_by   TEXT,
    spec       TEXT NOT NULL,
    idle_stop  TEXT
);
CREATE INDEX snapshots_by_agent ON snapshots (agent);
