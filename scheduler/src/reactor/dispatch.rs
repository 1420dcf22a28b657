//! The `BufferedDispatcher`: how recorded dispatches reach the executor.
//!
//! Buffer 0 (Lite) hands each attempt to the executor right on the scheduler loop. Buffer `N`
//! with workers (Pro) puts attempts on a bounded queue that the workers drain; when the queue
//! is full the reactor stops queueing task instances (they stay scheduled) until a worker makes
//! room — backpressure instead of an unbounded backlog. An attempt still in the buffer when the
//! process dies was recorded as dispatched but never started: the next scheduler hands it out
//! again under a new token once no agent came forward within the heartbeat timeout.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify, mpsc};
use tracing::Span;

use super::{Attempt, Executor};

/// Hands recorded dispatches to an executor, serially or through a bounded queue.
pub struct BufferedDispatcher {
    executor: Arc<dyn Executor>,
    queue: Option<mpsc::Sender<(Attempt, Span)>>,
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
        let (sender, receiver) = mpsc::channel::<(Attempt, Span)>(buffer.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let room = Arc::new(Notify::new());
        for _ in 0..workers.max(1) {
            let (executor, receiver, room) = (executor.clone(), receiver.clone(), room.clone());
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some((attempt, span)) = next else { return };
                    room.notify_one();
                    // An executor's dispatch may block (a fork and exec, a call to an API
                    // server): on the blocking pool the workers overlap, where on the
                    // runtime's few threads they would queue behind one another.
                    let executor = executor.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        span.in_scope(|| executor.dispatch(attempt))
                    })
                    .await;
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
    ///
    /// The dispatch is a span of the decision that recorded it, and the attempt carries that
    /// span's trace context to its agent.
    pub fn dispatch(&self, mut attempt: Attempt) {
        let span = tracing::info_span!(
            "dispatch",
            dag_id = %attempt.ti.dag_id,
            task_id = %attempt.ti.task_id,
            map_index = attempt.ti.map_index,
            try_number = attempt.try_number,
        );
        attempt.trace_parent = leoflow_telemetry::traceparent_of(&span);
        match &self.queue {
            None => span.in_scope(|| self.executor.dispatch(attempt)),
            Some(queue) => {
                if let Err(error) = queue.try_send((attempt, span)) {
                    let (attempt, span) = match error {
                        mpsc::error::TrySendError::Full(a)
                        | mpsc::error::TrySendError::Closed(a) => a,
                    };
                    span.in_scope(|| self.executor.dispatch(attempt));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use leoflow_events::TaskInstanceKey;
    use uuid::Uuid;

    use super::*;

    /// Records dispatches; the first one blocks its worker until the gate opens.
    struct GatedExecutor {
        gate: StdMutex<Option<std_mpsc::Receiver<()>>>,
        started: StdMutex<Vec<String>>,
    }

    impl Executor for GatedExecutor {
        fn name(&self) -> &str {
            "gated"
        }

        fn dispatch(&self, attempt: Attempt) {
            self.started
                .lock()
                .unwrap()
                .push(attempt.ti.task_id.clone());
            if let Some(gate) = self.gate.lock().unwrap().take() {
                gate.recv().unwrap();
            }
        }

        fn terminate(&self, _attempt: &leoflow_executors::AttemptKey, _reason: &str) {}
    }

    fn attempt(task_id: &str) -> Attempt {
        Attempt {
            trace_parent: None,
            ti: TaskInstanceKey::new("d", "r", task_id),
            try_number: 1,
            attempt_token: Uuid::new_v4(),
            placement: Default::default(),
        }
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_buffer_says_so_until_a_worker_takes_the_next_attempt() {
        let (open, gate) = std_mpsc::channel();
        let executor = Arc::new(GatedExecutor {
            gate: StdMutex::new(Some(gate)),
            started: StdMutex::new(Vec::new()),
        });
        let dispatcher = BufferedDispatcher::buffered(executor.clone(), 1, 1);
        let room = dispatcher.room();
        assert!(dispatcher.has_room());
        dispatcher.dispatch(attempt("a"));
        // The one worker is busy with `a`; `b` waits in the buffer, which is then full.
        until("a started", || executor.started.lock().unwrap().len() == 1).await;
        dispatcher.dispatch(attempt("b"));
        assert!(!dispatcher.has_room(), "backpressure: no room for a third");
        let notified = room.notified();
        open.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .expect("the worker signals room");
        until("b started", || executor.started.lock().unwrap().len() == 2).await;
        assert!(dispatcher.has_room());
        assert_eq!(*executor.started.lock().unwrap(), ["a", "b"]);
    }

    /// Each dispatch blocks until two dispatches have started (or gives up after two
    /// seconds and records that it ran alone).
    #[derive(Default)]
    struct PairingExecutor {
        arrived: StdMutex<u32>,
        both: std::sync::Condvar,
        alone: StdMutex<u32>,
        done: StdMutex<u32>,
    }

    impl Executor for PairingExecutor {
        fn name(&self) -> &str {
            "pairing"
        }

        fn dispatch(&self, _attempt: Attempt) {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            self.both.notify_all();
            let (arrived, waited) = self
                .both
                .wait_timeout_while(arrived, Duration::from_secs(2), |n| *n < 2)
                .unwrap();
            drop(arrived);
            if waited.timed_out() {
                *self.alone.lock().unwrap() += 1;
            }
            *self.done.lock().unwrap() += 1;
        }

        fn terminate(&self, _attempt: &leoflow_executors::AttemptKey, _reason: &str) {}
    }

    #[tokio::test]
    async fn workers_overlap_dispatches_that_block_even_on_one_runtime_thread() {
        let executor = Arc::new(PairingExecutor::default());
        let dispatcher = BufferedDispatcher::buffered(executor.clone(), 4, 2);
        dispatcher.dispatch(attempt("a"));
        dispatcher.dispatch(attempt("b"));
        until("both dispatched", || *executor.done.lock().unwrap() == 2).await;
        assert_eq!(
            *executor.alone.lock().unwrap(),
            0,
            "the two workers' blocking dispatches ran at the same time"
        );
    }

    #[tokio::test]
    async fn buffer_zero_dispatches_on_the_callers_loop() {
        let executor = Arc::new(GatedExecutor {
            gate: StdMutex::new(None),
            started: StdMutex::new(Vec::new()),
        });
        let dispatcher = BufferedDispatcher::serial(executor.clone());
        dispatcher.dispatch(attempt("a"));
        // No worker in between: the executor has it before `dispatch` returns.
        assert_eq!(*executor.started.lock().unwrap(), ["a"]);
        assert!(dispatcher.has_room());
    }
}
