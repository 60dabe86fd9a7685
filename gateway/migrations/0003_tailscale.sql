-- Hosts added by tailnet name: the peer's stable node ID (its address follows the tailnet)
-- and the name it was added by.
ALTER TABLE hosts ADD COLUMN tailscale_id TEXT;
ALTER TABLE hosts ADD COLUMN tailscale_name TEXT;
