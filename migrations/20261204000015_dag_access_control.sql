-- Per-DAG access (issue 15): a DAG's `access_control` as DagParsed records it — dag.py's merged
-- with leoflow.yaml's, role → {"DAGs": [actions], "DAG Runs": [actions]} — and the roles it lets
-- read the DAG, which DAG lists filter by (`readable_by && $roles`, through the GIN index).
-- Rows parsed before this column existed grant nobody anything, as their events said.

ALTER TABLE dag
    ADD COLUMN access_control jsonb  NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN readable_by    text[] NOT NULL DEFAULT '{}';

CREATE INDEX dag_readable_by ON dag USING gin (readable_by);
