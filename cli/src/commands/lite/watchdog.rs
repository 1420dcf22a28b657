//! Keeping Lite's managed Postgres up while Lite runs.
//!
//! The control plane already rides out a database that goes away (the reactor steps down and
//! leads again, the follower and the agents retry), but a managed server that died — killed,
//! out of memory — has nobody else to bring it back. The watchdog starts it again. A server
//! stopped cleanly (`leoflow postgres stop`, or the stop half of `pg_ctl restart`) is left
//! alone: someone meant it, and starting it under their feet would race a restart.

use std::time::Duration;

use leoflow_postgres::ManagedCluster;
use tokio::task::JoinHandle;

/// How often the watchdog looks.
const CHECK: Duration = Duration::from_secs(1);
/// The longest wait between two failed starts (a killed server's backends may still hold its
/// shared memory for a moment, and then Postgres refuses to start).
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Watches `cluster` until the returned task is aborted.
pub fn spawn(cluster: ManagedCluster) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut check = tokio::time::interval(CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            check.tick().await;
            let probe = cluster.clone();
            if !tokio::task::spawn_blocking(move || probe.crashed())
                .await
                .unwrap_or(false)
            {
                continue;
            }
            println!(
                "postgres  the managed Postgres stopped without shutting down; starting it again"
            );
            let mut backoff = Duration::from_millis(250);
            loop {
                let starter = cluster.clone();
                match tokio::task::spawn_blocking(move || starter.start()).await {
                    Ok(Ok(_)) => {
                        println!("postgres  restarted the managed Postgres");
                        break;
                    }
                    Ok(Err(error)) => tracing::warn!(
                        "starting the managed Postgres again failed ({error}); \
                         trying again in {} ms",
                        backoff.as_millis()
                    ),
                    Err(error) => tracing::warn!("the Postgres watchdog: {error}"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    })
}
