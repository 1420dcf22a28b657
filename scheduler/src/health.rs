//! The scheduler's health as others read it: the heartbeat the active scheduler writes on its
//! lock connection (see the reactor's `Leadership`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The newest heartbeat of any scheduler (`None` when none has beaten). An error means the
/// database did not answer.
pub async fn latest_heartbeat(pool: &PgPool) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT max(last_heartbeat) FROM scheduler_heartbeat")
        .fetch_one(pool)
        .await
}
