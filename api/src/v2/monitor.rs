//! `GET /api/v2/monitor/health`: the metadata database answers, and a scheduler holds the
//! leader lock. Leoflow has no triggerer and no separate DAG processor: their status is null.

use axum::Json;
use axum::extract::State;
use leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY;
use serde_json::{Value, json};

use crate::state::ApiState;

/// The health report.
pub async fn health(State(state): State<ApiState>) -> Json<Value> {
    let pool = state.store.pool();
    let database = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok();
    // The active scheduler holds a session advisory lock on SCHEDULER_LOCK_KEY.
    let scheduler: Option<bool> = if database {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1)",
        )
        .bind(SCHEDULER_LOCK_KEY)
        .fetch_one(pool)
        .await
        .ok()
    } else {
        None
    };
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    Json(json!({
        "metadatabase": {"status": status(database)},
        "scheduler": {
            "status": scheduler.map(status),
            "latest_scheduler_heartbeat": scheduler.filter(|s| *s).map(|_| chrono::Utc::now()),
        },
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": null,
    }))
}
