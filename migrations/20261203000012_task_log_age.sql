-- The log retention janitor of `leoflow server` deletes task log lines older than an age. Lines
-- are stored in time order, so a BRIN index finds the old ones for a fraction of a B-tree's
-- size and insert cost.
CREATE INDEX task_log_logged_at ON task_log USING brin (logged_at);
