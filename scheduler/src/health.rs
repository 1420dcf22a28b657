//! The scheduler's health as others read it: the heartbeat the active scheduler writes on its
//! lock connection (see the reactor's `Leadership`), and whether that scheduler runs the
//! triggerer, which it supervises (started when a trigger needs it, started again when it
//! ends): the triggerer's sign of life is its supervisor's.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The newest heartbeats: of any scheduler, and of a scheduler that runs the triggerer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heartbeats {
    /// The newest heartbeat of any scheduler (`None` when none has beaten).
    pub scheduler: Option<DateTime<Utc>>,
    /// The newest heartbeat of a scheduler running the triggerer (`None` when none has).
    pub triggerer: Option<DateTime<Utc>>,
}

/// The newest heartbeats. An error means the database did not answer.
pub async fn latest_heartbeats(pool: &PgPool) -> sqlx::Result<Heartbeats> {
    let (scheduler, triggerer) = sqlx::query_as(
        "SELECT max(last_heartbeat), max(last_heartbeat) FILTER (WHERE runs_triggerer) \
         FROM scheduler_heartbeat",
    )
    .fetch_one(pool)
    .await?;
    Ok(Heartbeats {
        scheduler,
        triggerer,
    })
}
