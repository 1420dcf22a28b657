-- Assets (Airflow's data-aware scheduling). A DAG's asset condition and every asset it names;
-- the assets themselves, by the id derived from their name and URI; their events (id: the
-- position of the `AssetEventRecorded` event); the events queued for each DAG's next
-- asset-triggered run (Airflow's asset_dag_run_queue); and which runs consumed which events.
ALTER TABLE dag ADD COLUMN asset_expression jsonb;
ALTER TABLE dag ADD COLUMN asset_references jsonb NOT NULL DEFAULT '[]';
ALTER TABLE dag ADD COLUMN alias_references jsonb NOT NULL DEFAULT '[]';

CREATE TABLE asset (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    uri text NOT NULL,
    asset_group text NOT NULL,
    extra jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE asset_event (
    id bigint PRIMARY KEY,
    asset_id bigint NOT NULL,
    tenant text NOT NULL,
    extra jsonb NOT NULL,
    source_dag_id text,
    source_run_id text,
    source_task_id text,
    source_map_index integer,
    source_aliases jsonb NOT NULL,
    timestamp timestamptz NOT NULL
);
CREATE INDEX asset_event_asset ON asset_event (asset_id, id);
CREATE INDEX asset_event_source ON asset_event (source_dag_id, source_run_id);

CREATE TABLE asset_dag_run_queue (
    asset_id bigint NOT NULL,
    target_dag_id text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (asset_id, target_dag_id)
);
CREATE INDEX asset_dag_run_queue_dag ON asset_dag_run_queue (target_dag_id);
-- Which DAGs name an asset (the API's visibility checks, by containment).
CREATE INDEX dag_asset_references ON dag USING gin (asset_references jsonb_path_ops);

-- Asset aliases (id derived from the name), and the assets each stands for in a tenant: those
-- a task added an event of through it.
CREATE TABLE asset_alias (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    alias_group text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE asset_alias_asset (
    tenant text NOT NULL,
    alias_name text NOT NULL,
    asset_id bigint NOT NULL,
    PRIMARY KEY (tenant, alias_name, asset_id)
);
CREATE INDEX asset_alias_asset_asset ON asset_alias_asset (tenant, asset_id);

CREATE TABLE asset_event_dag_run (
    event_id bigint NOT NULL,
    dag_id text NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (event_id, dag_id, run_id)
);
CREATE INDEX asset_event_dag_run_run ON asset_event_dag_run (dag_id, run_id);
