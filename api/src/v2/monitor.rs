//! `GET /api/v2/monitor/health`: the metadata database answers, and the active scheduler's
//! last heartbeat (written by the leader on its lock connection, see the reactor's
//! `Leadership`) is recent. Leoflow has no triggerer and no separate DAG processor: their
//! status is null.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::state::ApiState;

/// A scheduler whose last heartbeat is older than this is not alive (Airflow's
/// `scheduler_health_check_threshold`).
const HEALTH_THRESHOLD: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// The health report.
pub async fn health(State(state): State<ApiState>) -> Json<Value> {
    let pool = state.store.pool();
    // One query answers both: no row means the database did not answer.
    let heartbeat = sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
        "SELECT max(last_heartbeat) FROM scheduler_heartbeat",
    )
    .fetch_one(pool)
    .await;
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    let (database, scheduler) = match heartbeat {
        Ok(latest) => {
            let alive = latest.is_some_and(|at| Utc::now() - at < HEALTH_THRESHOLD);
            (
                true,
                json!({"status": status(alive), "latest_scheduler_heartbeat": latest}),
            )
        }
        Err(_) => (
            false,
            json!({"status": null, "latest_scheduler_heartbeat": null}),
        ),
    };
    Json(json!({
        "metadatabase": {"status": status(database)},
        "scheduler": scheduler,
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": null,
    }))
}
