-- When each in-flight attempt last showed a sign of life, shared by the control plane's
-- processes, so a new leader in another process does not fail tries whose agents are alive.
-- Unlogged: after a database crash every process restarts, and a new leader gives every try
-- a full heartbeat timeout from its own start anyway.
CREATE UNLOGGED TABLE attempt_liveness (
    attempt_digest  text        PRIMARY KEY,
    last_seen       timestamptz NOT NULL
);
