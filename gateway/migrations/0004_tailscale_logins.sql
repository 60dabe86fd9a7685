-- Operators who may log in by their tailnet identity (auth.tailscale.enabled): the login name
-- tailscaled's whois reports for the connecting node's user.
CREATE TABLE tailscale_logins (
    login        TEXT PRIMARY KEY,
    operator_id  INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL
);
