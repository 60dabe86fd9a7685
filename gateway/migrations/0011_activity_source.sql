-- Where the activity was told from: `hook` (the agent CLI's own hook events) or `screen` (the
-- rules matched against its screen); and whether the screen's wait is a question (a dialog that
-- needs the operator) rather than the CLI's prompt.
ALTER TABLE agents ADD COLUMN activity_source TEXT;
ALTER TABLE agents ADD COLUMN screen_asks INTEGER;
