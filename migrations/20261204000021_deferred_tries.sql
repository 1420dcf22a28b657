-- A try that deferred itself (Airflow's `next_method`, `next_kwargs`, `trigger_timeout`), what it
-- waits for (the trigger as `TaskDeferred` recorded it: a moment, or a Python trigger's class
-- with its sealed arguments) and, once resumed, the trigger's event. `next_kwargs` stays sealed.
ALTER TABLE task_instance ADD COLUMN next_method text;
ALTER TABLE task_instance ADD COLUMN next_kwargs jsonb;
ALTER TABLE task_instance ADD COLUMN trigger jsonb;
ALTER TABLE task_instance ADD COLUMN trigger_timeout timestamptz;
ALTER TABLE task_instance ADD COLUMN trigger_event jsonb;
