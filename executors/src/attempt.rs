//! The contract between the scheduler and an executor.

use std::sync::Arc;

use leoflow_events::{AttemptDigest, TaskInstanceKey};
use serde_json::Value;
use uuid::Uuid;

/// A try handed to an executor: which task instance, which try, and the token its agent must
/// present with every request.
#[derive(Debug, Clone, PartialEq)]
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
    /// What the try's DAG and task say about where it runs.
    pub placement: Arc<Placement>,
}

/// Where a try runs, as its DAG's artifact and leoflow.yaml say: the scheduler knows it from
/// the log, and each executor uses what concerns it (Lite's subprocesses none of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// The tenant owning the DAG: Pro runs its pods in the tenant's namespace.
    pub tenant: String,
    /// The image of the DAG's pushed artifact (`leoflow push --image`), when it names one.
    pub image: Option<String>,
    /// The task's `resources` (dag.json's task key, from leoflow.yaml), as compiled.
    pub resources: Option<Value>,
    /// The task's `pod` settings (dag.json's task key, from leoflow.yaml), as compiled.
    pub pod: Option<Value>,
    /// The task's `execution_timeout` in seconds: a pod's deadline backs up the scheduler's.
    pub execution_timeout: Option<f64>,
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
    /// The executor's own cap a try placed so counts against (Pro's pods per namespace), and
    /// how many more tries it takes now; `None`: no cap. The scheduler admits no more than
    /// that per group in a pass; a try that does not fit stays scheduled, as one over its
    /// pool's slots does, and the executor's next [`AttemptExit`] wakes the scheduler to look
    /// again.
    fn room(&self, _placement: &Placement) -> Option<Room> {
        None
    }
}

/// Room under one of an executor's caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// What the cap is of (a namespace).
    pub group: String,
    /// How many more tries fit now.
    pub free: usize,
}
