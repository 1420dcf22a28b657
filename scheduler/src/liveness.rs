//! When each in-flight attempt last showed a sign of life, shared by the processes of one
//! control plane: the agent service that hears an agent records it in memory at once and, when
//! the record is shared, in Postgres (`attempt_liveness`) in batches; the leader consults the
//! shared record before failing a try its own memory thinks silent. So a change of leader — to
//! another process, whose memory never heard those agents — does not fail tries whose agents
//! are alive and heartbeating to the process they know.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leoflow_events::AttemptDigest;
use sqlx::PgPool;
use tokio::sync::watch;

/// Signs of life of in-flight attempts, by their token's digest (all a restarted scheduler
/// knows of an attempt).
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    seen: Arc<Mutex<HashMap<AttemptDigest, Instant>>>,
    shared: Option<Shared>,
}

/// The Postgres side: what changed since the last flush.
#[derive(Debug, Clone)]
struct Shared {
    pool: PgPool,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Debug, Default)]
struct Pending {
    touched: HashMap<AttemptDigest, DateTime<Utc>>,
    forgotten: Vec<AttemptDigest>,
}

impl Liveness {
    /// A record kept in this process only.
    pub fn local() -> Self {
        Self::default()
    }

    /// A record shared through `pool`'s `attempt_liveness` table (flushed by
    /// [`Liveness::flush_every`]).
    pub fn shared(pool: PgPool) -> Self {
        Self {
            seen: Arc::default(),
            shared: Some(Shared {
                pool,
                pending: Arc::default(),
            }),
        }
    }

    /// Records a sign of life of the attempt.
    pub fn touch(&self, attempt: AttemptDigest) {
        if let Some(shared) = &self.shared {
            let mut pending = shared.pending.lock().expect("not poisoned");
            pending.touched.insert(attempt.clone(), Utc::now());
        }
        self.seen
            .lock()
            .expect("not poisoned")
            .insert(attempt, Instant::now());
    }

    /// When this process last heard of the attempt, if it did.
    pub fn last_seen(&self, attempt: &AttemptDigest) -> Option<Instant> {
        self.seen
            .lock()
            .expect("not poisoned")
            .get(attempt)
            .copied()
    }

    /// Forgets an attempt that is over.
    pub fn forget(&self, attempt: &AttemptDigest) {
        self.seen.lock().expect("not poisoned").remove(attempt);
        if let Some(shared) = &self.shared {
            let mut pending = shared.pending.lock().expect("not poisoned");
            pending.touched.remove(attempt);
            pending.forgotten.push(attempt.clone());
        }
    }

    /// When any process last heard of each of `attempts`, as the shared record says (empty
    /// when the record is not shared).
    pub async fn seen_anywhere(
        &self,
        attempts: &[&AttemptDigest],
    ) -> Result<HashMap<AttemptDigest, DateTime<Utc>>, sqlx::Error> {
        let Some(shared) = &self.shared else {
            return Ok(HashMap::new());
        };
        let digests: Vec<&str> = attempts.iter().map(|a| a.as_str()).collect();
        let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT attempt_digest, last_seen FROM attempt_liveness WHERE attempt_digest = ANY($1)",
        )
        .bind(&digests)
        .fetch_all(&shared.pool)
        .await?;
        let by_text: HashMap<String, DateTime<Utc>> = rows.into_iter().collect();
        Ok(attempts
            .iter()
            .filter_map(|a| by_text.get(a.as_str()).map(|at| ((*a).clone(), *at)))
            .collect())
    }

    /// Writes what changed since the last flush: one statement for the signs of life, one
    /// for the attempts that ended. Kept for the next flush when Postgres fails.
    pub async fn flush(&self) -> Result<(), sqlx::Error> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let pending = std::mem::take(&mut *shared.pending.lock().expect("not poisoned"));
        let (digests, times): (Vec<String>, Vec<DateTime<Utc>>) = pending
            .touched
            .iter()
            .map(|(a, at)| (a.to_string(), *at))
            .unzip();
        let forgotten: Vec<String> = pending.forgotten.iter().map(|a| a.to_string()).collect();
        let written = write(&shared.pool, &digests, &times, &forgotten).await;
        if written.is_err() {
            let mut again = shared.pending.lock().expect("not poisoned");
            for (attempt, at) in pending.touched {
                again.touched.entry(attempt).or_insert(at);
            }
            again.forgotten.extend(pending.forgotten);
        }
        written
    }

    /// Flushes every `period` until `stop` turns true (and once more then).
    pub fn flush_every(&self, period: Duration, mut stop: watch::Receiver<bool>) {
        if self.shared.is_none() {
            return;
        }
        let liveness = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
                // A failed flush is kept for the next one; the leader then only sees this
                // process's memory, as before sharing.
                let _ = liveness.flush().await;
            }
            let _ = liveness.flush().await;
        });
    }
}

async fn write(
    pool: &PgPool,
    digests: &[String],
    times: &[DateTime<Utc>],
    forgotten: &[String],
) -> Result<(), sqlx::Error> {
    if !digests.is_empty() {
        sqlx::query(
            "INSERT INTO attempt_liveness (attempt_digest, last_seen) \
             SELECT * FROM unnest($1::text[], $2::timestamptz[]) \
             ON CONFLICT (attempt_digest) DO UPDATE \
             SET last_seen = GREATEST(attempt_liveness.last_seen, EXCLUDED.last_seen)",
        )
        .bind(digests)
        .bind(times)
        .execute(pool)
        .await?;
    }
    if !forgotten.is_empty() {
        sqlx::query("DELETE FROM attempt_liveness WHERE attempt_digest = ANY($1)")
            .bind(forgotten)
            .execute(pool)
            .await?;
    }
    Ok(())
}
