-- Read models the API needs beyond the first ones: who triggered a run (Airflow's
-- `triggering_user_name`, from the event's actor) and each user's favorite DAGs.

ALTER TABLE dag_run ADD COLUMN triggering_user_name text;

CREATE TABLE dag_favorite (
    dag_id    text NOT NULL,
    username  text NOT NULL,
    PRIMARY KEY (dag_id, username)
);
