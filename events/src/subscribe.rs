//! Following the log: `LISTEN` wakes the readers, a short poll backs it up.
//!
//! Correctness never depends on a notification: a subscription always reads the log by
//! position, and positions are gap-free in commit order, so reading "everything after the
//! last position seen" delivers every event exactly once, in order.
//!
//! A store has one head watch: a task that owns the store's only `LISTEN` connection and
//! publishes the log's head. Its subscriptions wait on that head and read the log only when it
//! has moved past them, so an idle process queries nothing but the head, on that one
//! connection, and the pool's idle connections can close.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, watch};

use crate::NOTIFY_CHANNEL;
use crate::envelope::RecordedEvent;
use crate::store::{StoreError, head, read_from};

/// How long the head watcher waits for a notification before reading the head anyway.
pub const POLL_FALLBACK: Duration = Duration::from_millis(500);

/// Events read per round trip while catching up.
const PAGE: i64 = 1000;

/// The log's head as a store's subscriptions see it, kept by one watcher task per store.
/// Clones share the watcher; it stops once every clone is gone.
#[derive(Clone, Default)]
pub(crate) struct HeadWatch {
    head: Arc<OnceCell<watch::Sender<i64>>>,
}

impl HeadWatch {
    /// A receiver of the head, starting the watcher on first use.
    async fn receiver(&self, pool: &PgPool) -> Result<watch::Receiver<i64>, StoreError> {
        let sender = self
            .head
            .get_or_try_init(|| async {
                // Listening before reading the head: an append committed in between still
                // notifies.
                let listener = listen(pool).await?;
                let (sender, _) = watch::channel(head(pool).await?);
                let watch = Arc::downgrade(&self.head);
                tokio::spawn(follow_head(pool.clone(), watch, Some(listener)));
                Ok::<_, StoreError>(sender)
            })
            .await?;
        Ok(sender.subscribe())
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

/// The watcher: publishes every head it learns of, from a notification (whose payload is the
/// new head) or from reading the head on its own connection when none came for a while.
/// Without a listener (its connection broke) it reads the head through the pool and tries to
/// listen again.
async fn follow_head(
    pool: PgPool,
    watch: Weak<OnceCell<watch::Sender<i64>>>,
    mut listener: Option<PgListener>,
) {
    loop {
        let seen = match listener.as_mut() {
            Some(connection) => {
                match tokio::time::timeout(POLL_FALLBACK, connection.recv()).await {
                    Ok(Ok(first)) => {
                        // The newest of the notifications already queued is the head.
                        let mut newest = first.payload().parse::<i64>().ok();
                        while let Some(next) = connection.next_buffered() {
                            newest = newest.max(next.payload().parse().ok());
                        }
                        newest
                    }
                    Err(_) => head(&mut *connection).await.ok(),
                    Ok(Err(_)) => {
                        listener = None;
                        None
                    }
                }
            }
            None => {
                tokio::time::sleep(POLL_FALLBACK).await;
                listener = listen(&pool).await.ok();
                head(&pool).await.ok()
            }
        };
        let Some(watch) = watch.upgrade() else {
            return; // the store and its subscriptions are gone
        };
        if let (Some(seen), Some(sender)) = (seen, watch.get()) {
            sender.send_if_modified(|known| {
                let moved = *known != seen;
                *known = seen;
                moved
            });
        }
    }
}

/// A reader that follows the log from a position.
pub struct Subscription {
    pool: PgPool,
    head: watch::Receiver<i64>,
    // Keeps the watcher running while this subscription lives.
    _watch: HeadWatch,
    next_position: i64,
    buffer: VecDeque<RecordedEvent>,
    // Wake-ups in a row whose read found nothing although the head said there was more.
    empty_wakes: u32,
}

impl Subscription {
    /// Follows the log from `from` (inclusive).
    pub(crate) async fn start(
        pool: PgPool,
        watch: HeadWatch,
        from: i64,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            head: watch.receiver(&pool).await?,
            pool,
            _watch: watch,
            next_position: from.max(1),
            buffer: VecDeque::new(),
            empty_wakes: 0,
        })
    }

    /// The position the next delivered event will have.
    pub fn next_position(&self) -> i64 {
        self.next_position
    }

    /// The next event, waiting for it to be appended if need be.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.try_next().await? {
                return Ok(event);
            }
            self.wait().await;
        }
    }

    /// The next event if one is already in the log, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            let page = read_from(&self.pool, self.next_position, PAGE).await?;
            self.buffer.extend(page);
        }
        let Some(event) = self.buffer.pop_front() else {
            return Ok(None);
        };
        if event.position != self.next_position {
            // Would mean the gap-free invariant is broken: refuse rather than skip.
            return Err(StoreError::Corrupt {
                position: event.position,
                reason: format!(
                    "expected position {} next; the log has a gap",
                    self.next_position
                ),
            });
        }
        self.next_position += 1;
        self.empty_wakes = 0;
        Ok(Some(event))
    }

    // Sleeps until the head passes what was read.
    async fn wait(&mut self) {
        let next = self.next_position;
        if *self.head.borrow() >= next {
            // Once is an append that landed between the read and this wait; again would be a
            // head ahead of the log (a log reset under a running process): no busy loop.
            if self.empty_wakes > 0 {
                tokio::time::sleep(POLL_FALLBACK).await;
            }
            self.empty_wakes += 1;
            return;
        }
        // No timer here: the watcher reads the head itself every POLL_FALLBACK when no
        // notification comes, and a read from each subscription on a timer would keep pooled
        // connections from ever being idle.
        if self.head.wait_for(|head| *head >= next).await.is_err() {
            // Cannot happen while this subscription keeps the watcher (`_watch`); polling is
            // the safe answer if it ever does.
            tokio::time::sleep(POLL_FALLBACK).await;
        }
    }
}
