//! Following the log: `LISTEN` wakes the reader, a short poll backs it up.
//!
//! Correctness never depends on a notification: the subscription always reads the log by
//! position, and positions are gap-free in commit order, so reading "everything after the
//! last position seen" delivers every event exactly once, in order.

use std::collections::VecDeque;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::NOTIFY_CHANNEL;
use crate::envelope::RecordedEvent;
use crate::store::{StoreError, read_from};

/// How long a subscriber waits for a notification before reading the log anyway.
pub const POLL_FALLBACK: Duration = Duration::from_millis(500);

/// Events read per round trip while catching up.
const PAGE: i64 = 1000;

/// A reader that follows the log from a position.
pub struct Subscription {
    pool: PgPool,
    // `None` after the listener's connection failed; polling carries on until it is back.
    listener: Option<PgListener>,
    next_position: i64,
    buffer: VecDeque<RecordedEvent>,
}

impl Subscription {
    /// Starts listening, then reads from `from` (inclusive). Listening first means an append
    /// that commits between the first read and the first wait still wakes the reader.
    pub(crate) async fn start(pool: PgPool, from: i64) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(Self {
            pool,
            listener: Some(listener),
            next_position: from.max(1),
            buffer: VecDeque::new(),
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
        Ok(Some(event))
    }

    // Sleeps until a notification arrives or the poll interval passes.
    async fn wait(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(POLL_FALLBACK).await;
            self.listener = self.reconnect().await;
            return;
        };
        match tokio::time::timeout(POLL_FALLBACK, listener.recv()).await {
            Ok(Ok(_)) => {
                // One read answers every notification already queued.
                while listener.next_buffered().is_some() {}
            }
            Err(_) => {}
            // The listener's connection broke: fall back to polling and reconnect later.
            Ok(Err(_)) => self.listener = None,
        }
    }

    async fn reconnect(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(NOTIFY_CHANNEL).await.ok()?;
        Some(listener)
    }
}
