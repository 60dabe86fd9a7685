-- Why the screen last seen would make the agent `waiting` (the matching rule's reason), so that
-- a screen not read again (no output since) still tells it.
ALTER TABLE agents ADD COLUMN screen_waits TEXT;
