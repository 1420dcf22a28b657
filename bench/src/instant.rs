//! An executor that reports every try started and succeeded as soon as it is dispatched: no
//! process is started, so a benchmark measures the control plane alone.

use chrono::Utc;
use leoflow_core::run::{Command, Outcome};
use leoflow_events::{Actor, EventStore};
use leoflow_scheduler::control::submit;
use leoflow_scheduler::reactor::{Attempt, AttemptKey, Executor, Specs, SubmitError};

/// Reports each try started and succeeded as soon as it is dispatched.
pub struct InstantExecutor {
    /// Where its reports go.
    pub store: EventStore,
    /// The DAG versions its reports are decided against.
    pub specs: Specs,
}

impl Executor for InstantExecutor {
    fn name(&self) -> &str {
        "instant"
    }

    fn dispatch(&self, attempt: Attempt) {
        let (store, specs) = (self.store.clone(), self.specs.clone());
        tokio::spawn(async move {
            let (dag, run) = (attempt.ti.dag_id.clone(), attempt.ti.run_id.clone());
            let (task_id, map_index, try_number) = (
                attempt.ti.task_id.clone(),
                attempt.ti.map_index,
                attempt.try_number,
            );
            let actor = Actor::named("agent");
            let started = Command::ReportStarted {
                task_id: task_id.clone(),
                map_index,
                try_number,
                hostname: "bench".into(),
                pid: None,
            };
            let finished = Command::ReportFinished {
                task_id,
                map_index,
                try_number,
                outcome: Outcome::Success,
                at: Utc::now(),
                outlet_events: Default::default(),
            };
            for command in [started, finished] {
                // As an agent does, a report that lost to concurrent decisions is sent again.
                for _ in 0..10 {
                    let sent = submit(&store, &specs, &dag, &run, command.clone(), &actor).await;
                    match sent {
                        Err(SubmitError::Contended(_)) => continue,
                        Err(e) => eprintln!("report failed: {e}"),
                        Ok(_) => {}
                    }
                    break;
                }
            }
        });
    }

    fn terminate(&self, _attempt: &AttemptKey, _reason: &str) {
        // Its tries end at once: there is never anything to stop.
    }
}
