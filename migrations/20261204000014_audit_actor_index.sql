-- The audit trail by who did it: `leoflow audit --actor` / `--tenant` and the audit log's
-- `owner` filter ask for one actor's (or one tenant's) latest events. People and machines
-- cause few of the log's events (the scheduler and the agents cause most), so these indexes
-- find them without scanning the log, newest first by position. The expressions are
-- projector/src/read/audit_log.rs's `owner!` and `tenant!`, byte for byte: change both together.

CREATE INDEX events_audit_actor ON events ((metadata->>'actor'), position);

CREATE INDEX events_audit_tenant ON events ((metadata->>'tenant'), position);
