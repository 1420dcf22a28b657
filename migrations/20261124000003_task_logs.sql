-- Task logs, one row per line, per try. Not event-sourced: logs are bulky and append-only on
-- their own; the event log stays small (DESIGN §3). `seq` numbers the lines of a try as the
-- agent sent them, so a batch retried after a lost answer is stored once.
CREATE TABLE task_log (
    dag_id      text        NOT NULL,
    run_id      text        NOT NULL,
    task_id     text        NOT NULL,
    map_index   integer     NOT NULL,
    try_number  integer     NOT NULL,
    seq         bigint      NOT NULL,
    line        text        NOT NULL,
    logged_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number, seq)
);
