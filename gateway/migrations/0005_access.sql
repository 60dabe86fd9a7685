-- Who may see and touch an agent: its creator (agents.created_by), the operators it is shared
-- with, and admins.

CREATE TABLE agent_shares (
    agent       TEXT NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
    operator    TEXT NOT NULL,
    shared_by   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (agent, operator)
);

CREATE INDEX agent_shares_operator ON agent_shares (operator);

-- Values handed to agents' environments by name; never printed.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
