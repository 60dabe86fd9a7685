-- The gateway's state. Reality is tmux on the hosts; these tables hold who may do what,
-- what was asked (desired state), the last status seen, and the audit trail.

CREATE TABLE operators (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator')),
    created_at  TEXT NOT NULL
);

CREATE TABLE keys (
    id           INTEGER PRIMARY KEY,
    operator_id  INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    fingerprint  TEXT NOT NULL UNIQUE,
    algorithm    TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL
);

CREATE TABLE hosts (
    name             TEXT PRIMARY KEY,
    address          TEXT,
    port             INTEGER,
    user             TEXT,
    host_key         TEXT,
    status           TEXT NOT NULL DEFAULT 'reachable',
    hostctl_version  TEXT,
    last_contact     TEXT,
    created_at       TEXT NOT NULL
);

INSERT INTO hosts (name, status, created_at)
VALUES ('local', 'reachable', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE agents (
    name           TEXT PRIMARY KEY,
    host           TEXT NOT NULL REFERENCES hosts (name),
    template       TEXT NOT NULL,
    command        TEXT NOT NULL,
    workspace      TEXT NOT NULL DEFAULT '',
    spec           TEXT NOT NULL,
    tags           TEXT NOT NULL DEFAULT '{}',
    status         TEXT NOT NULL,
    exit_code      INTEGER,
    pid            INTEGER,
    last_activity  TEXT,
    created_at     TEXT NOT NULL,
    created_by     TEXT,
    updated_at     TEXT NOT NULL
);

CREATE INDEX agents_host ON agents (host);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    operator  TEXT,
    source    TEXT,
    kind      TEXT NOT NULL,
    agent     TEXT,
    detail    TEXT NOT NULL DEFAULT '',
    result    TEXT NOT NULL,
    message   TEXT NOT NULL DEFAULT ''
);

CREATE INDEX events_at ON events (at);
CREATE INDEX events_agent ON events (agent);
