-- The active scheduler's sign of life, written by the leader on its lock connection every few
-- seconds (so a leader whose lock connection is gone cannot write it). Operational state, not a
-- read model: nothing in it comes from the log, and replay leaves it alone.
CREATE TABLE scheduler_heartbeat (
    scheduler_id uuid PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    leading_since timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL
);
