//! The `BufferedDispatcher`: how recorded dispatches reach the executor.
//!
//! Buffer 0 (Lite) hands each attempt to the executor right on the scheduler loop. Buffer `N`
//! with workers (Pro) puts attempts on a bounded queue that the workers drain; when the queue
//! is full the reactor stops queueing task instances (they stay scheduled) until a worker makes
//! room — backpressure instead of an unbounded backlog. An attempt still in the buffer when the
//! process dies was recorded as dispatched but never started: the heartbeat rule fails it and
//! its retries apply.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify, mpsc};

use super::{Attempt, Executor};

/// Hands recorded dispatches to an executor, serially or through a bounded queue.
pub struct BufferedDispatcher {
    executor: Arc<dyn Executor>,
    queue: Option<mpsc::Sender<Attempt>>,
    room: Arc<Notify>,
}

impl BufferedDispatcher {
    /// Buffer 0: every dispatch runs on the caller's loop.
    pub fn serial(executor: Arc<dyn Executor>) -> Self {
        Self {
            executor,
            queue: None,
            room: Arc::new(Notify::new()),
        }
    }

    /// A queue of `buffer` attempts drained by `workers` tasks (each at least 1). Must be
    /// called inside a Tokio runtime.
    pub fn buffered(executor: Arc<dyn Executor>, buffer: usize, workers: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Attempt>(buffer.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let room = Arc::new(Notify::new());
        for _ in 0..workers.max(1) {
            let (executor, receiver, room) = (executor.clone(), receiver.clone(), room.clone());
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some(attempt) = next else { return };
                    room.notify_one();
                    executor.dispatch(attempt);
                }
            });
        }
        Self {
            executor,
            queue: Some(sender),
            room,
        }
    }

    /// The executor behind the buffer.
    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.executor
    }

    /// Whether one more dispatch fits now.
    pub fn has_room(&self) -> bool {
        self.queue.as_ref().is_none_or(|q| q.capacity() > 0)
    }

    /// Signalled whenever a worker takes an attempt off a full-or-not queue.
    pub fn room(&self) -> Arc<Notify> {
        self.room.clone()
    }

    /// Hands over a recorded dispatch. Callers check [`BufferedDispatcher::has_room`] first;
    /// if the queue filled in between, the attempt is started on the caller's loop rather
    /// than lost.
    pub fn dispatch(&self, attempt: Attempt) {
        match &self.queue {
            None => self.executor.dispatch(attempt),
            Some(queue) => {
                if let Err(error) = queue.try_send(attempt) {
                    let attempt = match error {
                        mpsc::error::TrySendError::Full(a)
                        | mpsc::error::TrySendError::Closed(a) => a,
                    };
                    self.executor.dispatch(attempt);
                }
            }
        }
    }
}
