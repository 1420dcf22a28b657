-- The audit log (/api/v2/eventLogs) is the event log itself. Airflow's UI lists it newest
-- first, filtered by DAG on a DAG's page and by DAG and run on a run's or task's page; these
-- indexes answer those pages (and their counts) without scanning the log. The expressions are
-- the API's (api/src/v2/audit.rs), byte for byte: change both together.

CREATE INDEX events_audit_dag
    ON events ((coalesce(payload->>'dag_id', payload->'ti'->>'dag_id')), position);

CREATE INDEX events_audit_run
    ON events ((coalesce(payload->>'dag_id', payload->'ti'->>'dag_id')),
               (coalesce(payload->>'run_id', payload->'ti'->>'run_id')), position);

-- `before` / `after`: recorded_at grows with position (both are taken under the log lock), so
-- a BRIN index is small, cheap to keep on append, and narrows a time window to its pages.
-- Block ranges filled since the last vacuum would match everything: autosummarize has
-- autovacuum summarize each range as it fills.
CREATE INDEX events_recorded_at ON events USING brin (recorded_at) WITH (autosummarize = on);
