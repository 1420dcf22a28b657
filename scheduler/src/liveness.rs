//! When each in-flight attempt last showed a sign of life, shared by the processes of one
//! control plane: the agent service that hears an agent records it in memory at once and, when
//! the record is shared, in a [`SharedLiveness`] store in batches; the leader consults the
//! shared record before failing a try its own memory thinks silent. So a change of leader — to
//! another process, whose memory never heard those agents — does not fail tries whose agents
//! are alive and heartbeating to the process they know.
//!
//! Lite shares through Postgres (`attempt_liveness`). `leoflow server` shares through Redis,
//! with Postgres as the fallback while Redis is away ([`Fallback`]): slower, never blind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use leoflow_events::AttemptDigest;
use sqlx::PgPool;
use tokio::sync::watch;

/// The shared store failed (unreachable, timed out, an error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LivenessError(pub String);

/// Signs of life as a time per attempt.
pub type SeenAt = HashMap<AttemptDigest, DateTime<Utc>>;

/// Where the processes of a control plane share signs of life.
pub trait SharedLiveness: Send + Sync + std::fmt::Debug + 'static {
    /// Records `touched` (the later time wins) and forgets `forgotten`.
    fn write<'a>(
        &'a self,
        touched: &'a SeenAt,
        forgotten: &'a [AttemptDigest],
    ) -> BoxFuture<'a, Result<(), LivenessError>>;

    /// When each of `attempts` was last heard of, for those the store knows.
    fn read<'a>(
        &'a self,
        attempts: &'a [&'a AttemptDigest],
    ) -> BoxFuture<'a, Result<SeenAt, LivenessError>>;
}

/// Signs of life of in-flight attempts, by their token's digest (all a restarted scheduler
/// knows of an attempt).
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    seen: Arc<Mutex<HashMap<AttemptDigest, Instant>>>,
    shared: Option<Shared>,
}

/// The shared side: the store, and what changed since the last flush.
#[derive(Debug, Clone)]
struct Shared {
    store: Arc<dyn SharedLiveness>,
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
        Self::shared_through(Arc::new(PostgresLiveness { pool }))
    }

    /// A record shared through `store` (flushed by [`Liveness::flush_every`]).
    pub fn shared_through(store: Arc<dyn SharedLiveness>) -> Self {
        Self {
            seen: Arc::default(),
            shared: Some(Shared {
                store,
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

    /// How many attempts this process heard from within `window`: the agents connected to it.
    pub fn heard_within(&self, window: Duration) -> usize {
        self.seen
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|at| at.elapsed() <= window)
            .count()
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
    ) -> Result<SeenAt, LivenessError> {
        match &self.shared {
            Some(shared) => shared.store.read(attempts).await,
            None => Ok(HashMap::new()),
        }
    }

    /// Writes what changed since the last flush. Kept for the next flush when the store
    /// fails.
    pub async fn flush(&self) -> Result<(), LivenessError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let pending = std::mem::take(&mut *shared.pending.lock().expect("not poisoned"));
        if pending.touched.is_empty() && pending.forgotten.is_empty() {
            return Ok(());
        }
        let written = shared
            .store
            .write(&pending.touched, &pending.forgotten)
            .await;
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

/// Signs of life in Postgres (`attempt_liveness`): one statement for the signs of life, one for
/// the attempts that ended.
#[derive(Debug, Clone)]
pub struct PostgresLiveness {
    /// The control plane's database.
    pub pool: PgPool,
}

impl SharedLiveness for PostgresLiveness {
    fn write<'a>(
        &'a self,
        touched: &'a SeenAt,
        forgotten: &'a [AttemptDigest],
    ) -> BoxFuture<'a, Result<(), LivenessError>> {
        Box::pin(async move {
            let (digests, times): (Vec<String>, Vec<DateTime<Utc>>) =
                touched.iter().map(|(a, at)| (a.to_string(), *at)).unzip();
            let forgotten: Vec<String> = forgotten.iter().map(|a| a.to_string()).collect();
            write(&self.pool, &digests, &times, &forgotten)
                .await
                .map_err(|e| LivenessError(format!("Postgres: {e}")))
        })
    }

    fn read<'a>(
        &'a self,
        attempts: &'a [&'a AttemptDigest],
    ) -> BoxFuture<'a, Result<SeenAt, LivenessError>> {
        Box::pin(async move {
            let digests: Vec<&str> = attempts.iter().map(|a| a.as_str()).collect();
            let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT attempt_digest, last_seen FROM attempt_liveness \
                 WHERE attempt_digest = ANY($1)",
            )
            .bind(&digests)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| LivenessError(format!("Postgres: {e}")))?;
            let by_text: HashMap<String, DateTime<Utc>> = rows.into_iter().collect();
            Ok(attempts
                .iter()
                .filter_map(|a| by_text.get(a.as_str()).map(|at| ((*a).clone(), *at)))
                .collect())
        })
    }
}

/// A primary store (Redis) with a fallback (Postgres) while it is away: writes go to the
/// primary, or to the fallback when the primary fails; reads ask both and keep the later time,
/// so signs of life written during an outage still count after it.
#[derive(Debug)]
pub struct Fallback {
    /// Where signs of life go.
    pub primary: Arc<dyn SharedLiveness>,
    /// Where they go while the primary fails.
    pub fallback: Arc<dyn SharedLiveness>,
}

impl SharedLiveness for Fallback {
    fn write<'a>(
        &'a self,
        touched: &'a SeenAt,
        forgotten: &'a [AttemptDigest],
    ) -> BoxFuture<'a, Result<(), LivenessError>> {
        Box::pin(async move {
            match self.primary.write(touched, forgotten).await {
                Ok(()) => {
                    // Forgotten attempts may have been written to the fallback in an outage.
                    if !forgotten.is_empty() {
                        self.fallback.write(&SeenAt::new(), forgotten).await?;
                    }
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!("{error}; signs of life go to the fallback store");
                    self.fallback.write(touched, forgotten).await
                }
            }
        })
    }

    fn read<'a>(
        &'a self,
        attempts: &'a [&'a AttemptDigest],
    ) -> BoxFuture<'a, Result<SeenAt, LivenessError>> {
        Box::pin(async move {
            let (primary, fallback) =
                tokio::join!(self.primary.read(attempts), self.fallback.read(attempts));
            let mut seen = match (primary, fallback) {
                (Err(error), Err(_)) => return Err(error),
                (Ok(seen), Err(_)) | (Err(_), Ok(seen)) => return Ok(seen),
                (Ok(primary), Ok(fallback)) => (primary, fallback),
            };
            for (attempt, at) in seen.1 {
                let entry = seen.0.entry(attempt).or_insert(at);
                *entry = (*entry).max(at);
            }
            Ok(seen.0)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in memory that can be taken away.
    #[derive(Debug, Default)]
    struct Memory {
        seen: Mutex<SeenAt>,
        away: std::sync::atomic::AtomicBool,
    }

    impl Memory {
        fn check(&self) -> Result<(), LivenessError> {
            if self.away.load(std::sync::atomic::Ordering::Relaxed) {
                Err(LivenessError("away".into()))
            } else {
                Ok(())
            }
        }
    }

    impl SharedLiveness for Memory {
        fn write<'a>(
            &'a self,
            touched: &'a SeenAt,
            forgotten: &'a [AttemptDigest],
        ) -> BoxFuture<'a, Result<(), LivenessError>> {
            Box::pin(async move {
                self.check()?;
                let mut seen = self.seen.lock().unwrap();
                seen.extend(touched.iter().map(|(a, at)| (a.clone(), *at)));
                for attempt in forgotten {
                    seen.remove(attempt);
                }
                Ok(())
            })
        }

        fn read<'a>(
            &'a self,
            attempts: &'a [&'a AttemptDigest],
        ) -> BoxFuture<'a, Result<SeenAt, LivenessError>> {
            Box::pin(async move {
                self.check()?;
                let seen = self.seen.lock().unwrap();
                Ok(attempts
                    .iter()
                    .filter_map(|a| seen.get(*a).map(|at| ((*a).clone(), *at)))
                    .collect())
            })
        }
    }

    fn attempt() -> AttemptDigest {
        AttemptDigest::of(&uuid::Uuid::new_v4())
    }

    #[tokio::test]
    async fn signs_of_life_go_to_the_fallback_while_the_primary_is_away_and_still_count() {
        let (primary, fallback) = (Arc::new(Memory::default()), Arc::new(Memory::default()));
        let shared = Liveness::shared_through(Arc::new(Fallback {
            primary: primary.clone(),
            fallback: fallback.clone(),
        }));
        // Another process's view of the same stores: what a new leader reads.
        let leader = Liveness::shared_through(Arc::new(Fallback {
            primary: primary.clone(),
            fallback: fallback.clone(),
        }));
        let (before, during) = (attempt(), attempt());
        shared.touch(before.clone());
        shared.flush().await.unwrap();
        assert!(primary.seen.lock().unwrap().contains_key(&before));

        primary
            .away
            .store(true, std::sync::atomic::Ordering::Relaxed);
        shared.touch(during.clone());
        shared.flush().await.unwrap();
        assert!(fallback.seen.lock().unwrap().contains_key(&during));
        let seen = leader.seen_anywhere(&[&before, &during]).await.unwrap();
        assert!(seen.contains_key(&during), "the fallback answers alone");

        primary
            .away
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let seen = leader.seen_anywhere(&[&before, &during]).await.unwrap();
        assert_eq!(
            seen.len(),
            2,
            "both stores are read once the primary is back"
        );
        shared.forget(&during);
        shared.flush().await.unwrap();
        assert!(
            !fallback.seen.lock().unwrap().contains_key(&during),
            "an attempt that ended is forgotten in the fallback too"
        );
    }

    #[tokio::test]
    async fn a_flush_both_stores_refuse_is_kept_for_the_next() {
        let (primary, fallback) = (Arc::new(Memory::default()), Arc::new(Memory::default()));
        primary
            .away
            .store(true, std::sync::atomic::Ordering::Relaxed);
        fallback
            .away
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let shared = Liveness::shared_through(Arc::new(Fallback {
            primary: primary.clone(),
            fallback: fallback.clone(),
        }));
        let seen = attempt();
        shared.touch(seen.clone());
        assert!(shared.flush().await.is_err());
        primary
            .away
            .store(false, std::sync::atomic::Ordering::Relaxed);
        fallback
            .away
            .store(false, std::sync::atomic::Ordering::Relaxed);
        shared.flush().await.unwrap();
        assert!(primary.seen.lock().unwrap().contains_key(&seen));
    }
}
