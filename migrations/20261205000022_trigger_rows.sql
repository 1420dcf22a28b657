-- The trigger a deferred try waits for, as Airflow's API shows it (`TaskInstanceResponse.trigger`):
-- its id (the position of the `TaskDeferred` event that set it) and when it was set.
ALTER TABLE task_instance ADD COLUMN trigger_id bigint;
ALTER TABLE task_instance ADD COLUMN trigger_created_at timestamptz;
