//! `GET /api/v2/monitor/health`: the metadata database answers, and the active scheduler's
//! last heartbeat (written by the leader on its lock connection, see the reactor's
//! `Leadership`) is recent. Leoflow's triggerer is a process (or, with the Kubernetes
//! executor, pods) the leading scheduler supervises, starting it when a trigger needs it and
//! again when it ends: its status is its supervisor's, when the leader runs one. Leoflow has no
//! separate DAG processor: its status is null.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::state::ApiState;

/// A scheduler whose last heartbeat is older than this is not alive (Airflow's
/// `scheduler_health_check_threshold`).
const HEALTH_THRESHOLD: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// A component's status (`healthy`, `unhealthy`, or `null` for one Leoflow does not have).
#[derive(Debug, Serialize)]
pub struct Status {
    /// The status.
    pub status: Option<&'static str>,
}

/// The scheduler's status and last heartbeat.
#[derive(Debug, Serialize)]
pub struct SchedulerStatus {
    /// The status (`null` when the database did not answer).
    pub status: Option<&'static str>,
    /// The active scheduler's last heartbeat.
    pub latest_scheduler_heartbeat: Option<DateTime<Utc>>,
}

/// The triggerer's status: its supervisor's, the leading scheduler that runs it.
#[derive(Debug, Serialize)]
pub struct TriggererStatus {
    /// `healthy` or `unhealthy` as its supervisor's heartbeat is; `null` when no leader runs
    /// one.
    pub status: Option<&'static str>,
    /// The supervising leader's last heartbeat.
    pub latest_triggerer_heartbeat: Option<DateTime<Utc>>,
}

/// Airflow's `HealthInfoResponse`.
#[derive(Debug, Serialize)]
pub struct HealthInfo {
    /// The metadata database.
    pub metadatabase: Status,
    /// The scheduler.
    pub scheduler: SchedulerStatus,
    /// The triggerer.
    pub triggerer: TriggererStatus,
    /// The DAG processor (Leoflow has none).
    pub dag_processor: Option<Status>,
}

/// The health report.
pub async fn health(State(state): State<ApiState>) -> Json<HealthInfo> {
    // One query answers all: an error means the database did not answer.
    let heartbeats = leoflow_scheduler::health::latest_heartbeats(state.store.pool()).await;
    let database = heartbeats.is_ok();
    let beats = heartbeats.ok();
    Json(HealthInfo {
        metadatabase: Status {
            status: Some(status(database)),
        },
        scheduler: SchedulerStatus {
            status: beats.map(|b| status(alive(b.scheduler))),
            latest_scheduler_heartbeat: beats.and_then(|b| b.scheduler),
        },
        triggerer: TriggererStatus {
            // No leader running one (or no database): none, as Airflow without a triggerer.
            status: beats
                .and_then(|b| b.triggerer)
                .map(|beat| status(alive(Some(beat)))),
            latest_triggerer_heartbeat: beats.and_then(|b| b.triggerer),
        },
        dag_processor: None,
    })
}

fn status(ok: bool) -> &'static str {
    if ok { "healthy" } else { "unhealthy" }
}

/// Whether a component whose last heartbeat is `latest` is alive.
fn alive(latest: Option<DateTime<Utc>>) -> bool {
    latest.is_some_and(|at| Utc::now() - at < HEALTH_THRESHOLD)
}
