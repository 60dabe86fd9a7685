-- What a running agent is doing, told from its screen (working, waiting, idle), and since when
-- its status (this or its lifecycle status) is what it is.

ALTER TABLE agents ADD COLUMN activity TEXT;
ALTER TABLE agents ADD COLUMN activity_reason TEXT;
ALTER TABLE agents ADD COLUMN status_since TEXT;
ALTER TABLE agents ADD COLUMN last_output_at TEXT;
ALTER TABLE agents ADD COLUMN last_input_at TEXT;
-- `COLSxROWS HASH` of the screen last seen, to tell output from a screen seen again.
ALTER TABLE agents ADD COLUMN screen TEXT;
ALTER TABLE agents ADD COLUMN last_line TEXT;

UPDATE agents SET status_since = updated_at;

-- Idle stop: how long an agent may be idle before it is stopped (a duration such as `30m`,
-- from `create --idle-stop` or its template), and why it was last stopped (`idle`).
ALTER TABLE agents ADD COLUMN idle_stop TEXT;
ALTER TABLE agents ADD COLUMN stop_reason TEXT;
