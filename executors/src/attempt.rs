//! The contract between the scheduler and an executor.

use leoflow_events::{AttemptDigest, TaskInstanceKey};
use uuid::Uuid;

/// A try handed to an executor: which task instance, which try, and the token its agent must
/// present with every request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// The fencing token (its digest is recorded in `TaskDispatched`).
    pub attempt_token: Uuid,
    /// The W3C trace context of its dispatch, when traces are exported: the agent's spans
    /// join the trace of the decision that started the try.
    pub trace_parent: Option<String>,
}

impl Attempt {
    /// The attempt as the log knows it.
    pub fn key(&self) -> AttemptKey {
        AttemptKey {
            ti: self.ti.clone(),
            try_number: self.try_number,
            digest: AttemptDigest::of(&self.attempt_token),
        }
    }
}

/// A dispatched attempt as the log knows it: by its token's digest, never the token (a
/// scheduler that restarts knows no more, and needs no more to stop or judge it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// The digest of its fencing token.
    pub digest: AttemptDigest,
}

/// An attempt's agent process ended. The scheduler fails the try if the agent did not report
/// an outcome first (a crash, a kill, a missing interpreter).
#[derive(Debug, Clone)]
pub struct AttemptExit {
    /// The attempt.
    pub attempt: AttemptKey,
    /// Why it ended, for the try's failure reason (exit status and the end of its output).
    pub detail: String,
}

/// Where tries run: the subprocess adapter in Lite, Kubernetes in Pro, a fake in tests.
pub trait Executor: Send + Sync {
    /// The executor's name, recorded in `TaskDispatched`.
    fn name(&self) -> &str;
    /// Starts a try. Must not block: outcomes come back through the agent protocol.
    fn dispatch(&self, attempt: Attempt);
    /// Stops a try (cancelled, timed out, or its run ended). Best effort: an agent this
    /// executor does not know (started before a restart) learns it from its next heartbeat.
    fn terminate(&self, attempt: &AttemptKey, reason: &str);
}
