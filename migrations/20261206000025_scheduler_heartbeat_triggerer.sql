-- Whether the leader whose heartbeat this is runs the triggerer (every control plane that
-- runs triggers does, supervising it): `GET /api/v2/monitor/health` reports the triggerer's
-- status from it, as Airflow reports its triggerer job's heartbeat.
ALTER TABLE scheduler_heartbeat ADD COLUMN runs_triggerer boolean NOT NULL DEFAULT false;
