-- What each agent runs in on its host (`hostctl::api::Sandbox`): 'bwrap' or 'none'. NULL only
-- while an agent is being created and its host has not said yet. Every agent made before
-- sandboxes existed runs without one.
ALTER TABLE agents ADD COLUMN sandbox TEXT CHECK (sandbox IN ('bwrap', 'none'));
UPDATE agents SET sandbox = 'none';
