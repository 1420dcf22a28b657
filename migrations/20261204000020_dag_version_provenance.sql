-- Where a pushed DAG version came from (`leoflow push`): the git commit (Airflow's
-- `bundle_version`) and the task image. Versions parsed from files have neither.
ALTER TABLE dag_version ADD COLUMN bundle_version text;
ALTER TABLE dag_version ADD COLUMN image text;
