-- The operations journal: every change of an agent's life that takes more than one step
-- (create, clone, migrate, restore from a snapshot, destroy) is written here before its first
-- step, its step after each one, and its end after the last. An operation with no end was cut
-- short (the gateway died): the next gateway finishes or undoes it against what the hosts say.
CREATE TABLE operations (
    -- Random-ish, lowercase: hostctl writes it into the mark of a copy made for it.
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    agent       TEXT NOT NULL,
    -- The host it takes the agent from (migrate, clone) and the host it works on.
    from_host   TEXT,
    host        TEXT NOT NULL,
    -- The source agent of a clone, the snapshot of a restore.
    source      TEXT,
    was_running INTEGER NOT NULL DEFAULT 0,
    step        TEXT NOT NULL,
    operator    TEXT,
    -- The gateway run that began it: a run finishes or undoes only the operations of others.
    run         TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    outcome     TEXT,
    message     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX operations_open ON operations (ended_at) WHERE ended_at IS NULL;
