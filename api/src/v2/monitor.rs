//! `GET /api/v2/monitor/health`: the metadata database answers, and the active scheduler's
//! last heartbeat (written by the leader on its lock connection, see the reactor's
//! `Leadership`) is recent. Leoflow has no separate DAG processor, and its triggerer is a
//! process the leading control plane supervises (restarting it when it dies), not a job with a
//! heartbeat row: their status is null.

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

/// The triggerer's status (Leoflow's is supervised by the leading control plane: no heartbeat
/// row).
#[derive(Debug, Serialize)]
pub struct TriggererStatus {
    /// Always `null`.
    pub status: Option<&'static str>,
    /// Always `null`.
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
    // One query answers both: an error means the database did not answer.
    let heartbeat = leoflow_scheduler::health::latest_heartbeat(state.store.pool()).await;
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    let (database, scheduler) = match heartbeat {
        Ok(latest) => {
            let alive = latest.is_some_and(|at| Utc::now() - at < HEALTH_THRESHOLD);
            (
                true,
                SchedulerStatus {
                    status: Some(status(alive)),
                    latest_scheduler_heartbeat: latest,
                },
            )
        }
        Err(_) => (
            false,
            SchedulerStatus {
                status: None,
                latest_scheduler_heartbeat: None,
            },
        ),
    };
    Json(HealthInfo {
        metadatabase: Status {
            status: Some(status(database)),
        },
        scheduler,
        triggerer: TriggererStatus {
            status: None,
            latest_triggerer_heartbeat: None,
        },
        dag_processor: None,
    })
}
