//! The states of task instances and dag runs, each spelled once: the core, the projector (which
//! writes them into the read models), the agent service and every SQL builder take the Airflow
//! name from here.

/// A task instance's state, with Airflow's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TiState {
    /// Not scheduled yet (Airflow's `None`).
    Pending,
    /// Its trigger rule is met; it waits for a pool slot and the DAG's concurrency.
    Scheduled,
    /// Admitted and handed to the executor; its agent has not started the try yet.
    Queued,
    /// A try is running.
    Running,
    /// The last try succeeded (or the instance was marked successful).
    Success,
    /// The last try failed with no retry left, was cancelled, or the instance was marked failed.
    Failed,
    /// A try failed and another one is due after the retry delay.
    UpForRetry,
    /// It will not run: a branch, a short circuit or its trigger rule skipped it.
    Skipped,
    /// It will not run because something upstream failed.
    UpstreamFailed,
    /// Its try deferred itself to a trigger and holds no process until the trigger fires.
    Deferred,
    /// Its try (a sensor in reschedule mode) waits to be poked again, holding no process.
    UpForReschedule,
}

impl TiState {
    /// Every state, in the order a try goes through them.
    pub const ALL: [TiState; 11] = [
        TiState::Pending,
        TiState::Scheduled,
        TiState::Queued,
        TiState::Running,
        TiState::Success,
        TiState::Failed,
        TiState::UpForRetry,
        TiState::Skipped,
        TiState::UpstreamFailed,
        TiState::Deferred,
        TiState::UpForReschedule,
    ];

    /// Airflow's name of the state (`None` for a task instance not scheduled yet).
    pub fn airflow_name(self) -> &'static str {
        match self {
            TiState::Pending => "None",
            TiState::Scheduled => "scheduled",
            TiState::Queued => "queued",
            TiState::Running => "running",
            TiState::Success => "success",
            TiState::Failed => "failed",
            TiState::UpForRetry => "up_for_retry",
            TiState::Skipped => "skipped",
            TiState::UpstreamFailed => "upstream_failed",
            TiState::Deferred => "deferred",
            TiState::UpForReschedule => "up_for_reschedule",
        }
    }

    /// The state named `name` by [`TiState::airflow_name`].
    pub fn from_airflow_name(name: &str) -> Option<TiState> {
        Self::ALL.into_iter().find(|s| s.airflow_name() == name)
    }

    /// The state as the read models store it: Airflow keeps no state (NULL) for a task
    /// instance not scheduled yet.
    pub fn stored_name(self) -> Option<&'static str> {
        (self != TiState::Pending).then(|| self.airflow_name())
    }

    /// The states of a try that an executor holds: queued or running.
    pub const IN_FLIGHT: [TiState; 2] = [TiState::Queued, TiState::Running];

    /// Whether a try is in flight (see [`TiState::IN_FLIGHT`]).
    pub fn is_in_flight(self) -> bool {
        Self::IN_FLIGHT.contains(&self)
    }

    /// Whether the task instance is done for this run (until cleared).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TiState::Success | TiState::Failed | TiState::Skipped | TiState::UpstreamFailed
        )
    }
}

/// Where a dag run stands (Airflow's `DagRunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting for `max_active_runs` to let it start.
    Queued,
    /// Started: its task instances are being scheduled.
    Running,
    /// Ended, its leaves decided it succeeded (or it was marked successful).
    Success,
    /// Ended, its leaves decided it failed (or it was marked failed).
    Failed,
}

impl RunStatus {
    /// Every state, in the order a run goes through them.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Failed,
    ];

    /// Airflow's name of the state.
    pub fn airflow_name(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
        }
    }

    /// The state named `name` by [`RunStatus::airflow_name`].
    pub fn from_airflow_name(name: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|s| s.airflow_name() == name)
    }

    /// Whether the run is over: only a clear (`RunCleared`) brings it back.
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_airflow_name() {
        for state in TiState::ALL {
            assert_eq!(
                TiState::from_airflow_name(state.airflow_name()),
                Some(state)
            );
        }
        for status in RunStatus::ALL {
            assert_eq!(
                RunStatus::from_airflow_name(status.airflow_name()),
                Some(status)
            );
        }
        assert_eq!(TiState::from_airflow_name("restarting"), None);
        assert_eq!(RunStatus::from_airflow_name("None"), None);
    }

    #[test]
    fn a_pending_task_instance_is_stored_without_a_state() {
        assert_eq!(TiState::Pending.stored_name(), None);
        assert_eq!(TiState::UpForRetry.stored_name(), Some("up_for_retry"));
    }
}
