-- Remote hosts: where hostctl is on the host, what went wrong last, and what the host is.
ALTER TABLE hosts ADD COLUMN hostctl_path TEXT;
ALTER TABLE hosts ADD COLUMN last_error TEXT;
ALTER TABLE hosts ADD COLUMN platform TEXT;
