-- The task-instance lists across runs (the UI's "Task Instances" page) sort by start or end
-- date, newest first; without these a page of 50 sorts every task instance. (A plain index
-- serves both directions: read backwards it is Postgres' DESC NULLS FIRST.)
CREATE INDEX task_instance_start_date ON task_instance (start_date);
CREATE INDEX task_instance_end_date ON task_instance (end_date);
