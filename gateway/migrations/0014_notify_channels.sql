-- Notification channels: where each operator wants to hear about their agents' status
-- changes (`ssh gw notify add`). A channel's URL may hold a token (an ntfy access token, a
-- webhook's secret path): it is kept like the secrets, never printed whole. A channel goes
-- with its operator.

CREATE TABLE notify_channels (
    operator_id  INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('webhook', 'ntfy')),
    url          TEXT NOT NULL,
    -- JSON array of the events it is for: waiting, exited, idle-stopped, host-unreachable.
    events       TEXT NOT NULL,
    -- JSON object: only agents with all these tags.
    tags         TEXT NOT NULL DEFAULT '{}',
    -- ntfy's Title, Priority, Tags and Click headers (none for a webhook).
    title        TEXT,
    priority     TEXT,
    ntfy_tags    TEXT,
    click        TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (operator_id, name)
);
