-- Airflow-shaped read models, written only by the projector (inline, in the append
-- transaction) and rebuilt from the log by `leoflow events replay`. Column names follow
-- Airflow 3.2's metadata database so /api/v2 can map them one to one.
--
-- Every key is derived from events (positions, names, UUIDv5 of natural keys): replaying
-- the log yields byte-identical tables, which `replay --verify` checks.

CREATE TABLE projection_checkpoints (
    projection text   PRIMARY KEY,
    position   bigint NOT NULL
);

CREATE TABLE dag (
    dag_id                 text        PRIMARY KEY,
    is_paused              boolean     NOT NULL,
    is_stale               boolean     NOT NULL DEFAULT false,
    fileloc                text        NOT NULL,
    bundle_name            text        NOT NULL,
    description            text,
    owners                 text        NOT NULL,
    tags                   jsonb       NOT NULL DEFAULT '[]'::jsonb,
    timetable_summary      text,
    max_active_runs        integer     NOT NULL,
    max_active_tasks       integer     NOT NULL,
    catchup                boolean     NOT NULL,
    last_parsed_time       timestamptz NOT NULL,
    latest_version_id      uuid        NOT NULL,
    latest_version_number  integer     NOT NULL,
    latest_version_hash    text        NOT NULL
);

CREATE TABLE dag_version (
    id              uuid        PRIMARY KEY,
    dag_id          text        NOT NULL,
    version_number  integer     NOT NULL,
    version_hash    text        NOT NULL,
    source_hash     text,
    document_hash   text,
    fileloc         text        NOT NULL,
    bundle_name     text        NOT NULL,
    created_at      timestamptz NOT NULL,
    CONSTRAINT dag_version_number_unique UNIQUE (dag_id, version_number)
);

CREATE TABLE import_error (
    filename     text        PRIMARY KEY,
    id           bigint      NOT NULL,
    bundle_name  text        NOT NULL,
    stacktrace   text        NOT NULL,
    timestamp    timestamptz NOT NULL
);

CREATE TABLE dag_run (
    dag_id               text        NOT NULL,
    run_id               text        NOT NULL,
    id                   bigint      NOT NULL UNIQUE,
    state                text        NOT NULL,
    run_type             text        NOT NULL,
    logical_date         timestamptz,
    data_interval_start  timestamptz,
    data_interval_end    timestamptz,
    run_after            timestamptz NOT NULL,
    queued_at            timestamptz,
    start_date           timestamptz,
    end_date             timestamptz,
    conf                 jsonb       NOT NULL DEFAULT '{}'::jsonb,
    triggered_by         text        NOT NULL,
    dag_version_hash     text,
    clear_number         integer     NOT NULL DEFAULT 0,
    note                 text,
    PRIMARY KEY (dag_id, run_id)
);
CREATE INDEX dag_run_dag_id_run_after ON dag_run (dag_id, run_after DESC);
CREATE INDEX dag_run_state ON dag_run (state);

CREATE TABLE task_instance (
    dag_id           text        NOT NULL,
    run_id           text        NOT NULL,
    task_id          text        NOT NULL,
    map_index        integer     NOT NULL DEFAULT -1,
    id               uuid        NOT NULL UNIQUE,
    try_number       integer     NOT NULL DEFAULT 0,
    state            text,
    scheduled_dttm   timestamptz,
    queued_dttm      timestamptz,
    start_date       timestamptz,
    end_date         timestamptz,
    duration         double precision,
    hostname         text,
    pid              integer,
    executor         text,
    attempt_token    uuid,
    pool             text,
    pool_slots       integer,
    priority_weight  integer,
    queue            text,
    failure_reason   text,
    PRIMARY KEY (dag_id, run_id, task_id, map_index)
);
CREATE INDEX task_instance_state ON task_instance (state);

-- One row per try of a task instance (Airflow's task_instance_history plus the live try).
CREATE TABLE task_instance_try (
    dag_id          text        NOT NULL,
    run_id          text        NOT NULL,
    task_id         text        NOT NULL,
    map_index       integer     NOT NULL,
    try_number      integer     NOT NULL,
    task_instance_id uuid       NOT NULL,
    state           text,
    queued_dttm     timestamptz,
    start_date      timestamptz,
    end_date        timestamptz,
    duration        double precision,
    hostname        text,
    pid             integer,
    executor        text,
    attempt_token   uuid,
    failure_reason  text,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number)
);

CREATE TABLE xcom (
    dag_id      text        NOT NULL,
    run_id      text        NOT NULL,
    task_id     text        NOT NULL,
    map_index   integer     NOT NULL,
    key         text        NOT NULL,
    value_hash  text        NOT NULL,
    size_bytes  bigint      NOT NULL,
    timestamp   timestamptz NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, key)
);

CREATE TABLE variable (
    key          text        PRIMARY KEY,
    val          text        NOT NULL,
    description  text,
    updated_at   timestamptz NOT NULL
);

-- `password` holds ciphertext only: commands encrypt before the event is appended.
CREATE TABLE connection (
    conn_id      text        PRIMARY KEY,
    conn_type    text        NOT NULL,
    description  text,
    host         text,
    schema       text,
    login        text,
    password     text,
    port         integer,
    extra        text,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE slot_pool (
    pool              text    PRIMARY KEY,
    slots             integer NOT NULL,
    description       text,
    include_deferred  boolean NOT NULL DEFAULT false
);
