-- What a try waiting for a person's answer asks (Airflow's human-in-the-loop detail) and the
-- answer it got, per try, as Airflow keeps `hitl_detail` per task instance and its history.
ALTER TABLE task_instance_try ADD COLUMN hitl_request jsonb;
ALTER TABLE task_instance_try ADD COLUMN hitl_created_at timestamptz;
ALTER TABLE task_instance_try ADD COLUMN hitl_response jsonb;
