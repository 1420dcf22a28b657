-- Attempt tokens are secrets that live only with the executor and the agent: the log records
-- their digest (TaskDispatched v2), and the read models keep neither.
ALTER TABLE task_instance DROP COLUMN attempt_token;
ALTER TABLE task_instance_try DROP COLUMN attempt_token;
