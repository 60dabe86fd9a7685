-- Whether an operator's SSH agent may be forwarded into the agents they reach (`ssh -A`).
-- Off for every operator until an admin allows it: an agent could use the key while the
-- operator's connection is open.
ALTER TABLE operators ADD COLUMN agent_forwarding INTEGER NOT NULL DEFAULT 0;
