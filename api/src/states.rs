//! The states the API filters and counts by, spelled once: from the core's `TiState` and
//! `RunStatus`, plus the task-instance states only Airflow has (Leoflow never reaches them, yet
//! Airflow's clients may ask for them).

use leoflow_core::run::{RunStatus, TiState};

/// A task-instance state as Airflow's API names it.
#[derive(Debug, Clone, Copy)]
pub enum TiStateName {
    /// One Leoflow's core reaches.
    Core(TiState),
    /// One only Airflow has.
    AirflowOnly(&'static str),
}

impl TiStateName {
    /// Airflow's name.
    pub fn name(self) -> &'static str {
        match self {
            TiStateName::Core(state) => state.airflow_name(),
            TiStateName::AirflowOnly(name) => name,
        }
    }
}

use TiStateName::{AirflowOnly, Core};

/// Airflow's `TaskInstanceState`, in its order (a 422 lists them so).
const TI_STATES: [TiStateName; 12] = [
    AirflowOnly("removed"),
    Core(TiState::Scheduled),
    Core(TiState::Queued),
    Core(TiState::Running),
    Core(TiState::Success),
    AirflowOnly("restarting"),
    Core(TiState::Failed),
    Core(TiState::UpForRetry),
    Core(TiState::UpForReschedule),
    Core(TiState::UpstreamFailed),
    Core(TiState::Skipped),
    Core(TiState::Deferred),
];

/// Airflow's precedence of states when the grid summarises several (mapped instances,
/// groups): the first one present wins.
const SUMMARY_PRECEDENCE: [TiStateName; 11] = [
    Core(TiState::Failed),
    Core(TiState::UpstreamFailed),
    Core(TiState::UpForRetry),
    Core(TiState::UpForReschedule),
    Core(TiState::Running),
    Core(TiState::Queued),
    Core(TiState::Scheduled),
    Core(TiState::Deferred),
    AirflowOnly("removed"),
    Core(TiState::Skipped),
    Core(TiState::Success),
];

/// The names of Airflow's task-instance states (the `state` filters' allowed values).
pub fn ti_state_names() -> Vec<&'static str> {
    TI_STATES.iter().map(|s| s.name()).collect()
}

/// The grid's precedence of task-instance states, by name.
pub fn summary_precedence() -> impl Iterator<Item = &'static str> {
    SUMMARY_PRECEDENCE.iter().map(|s| s.name())
}

/// The names of Airflow's dag-run states.
pub fn run_state_names() -> Vec<&'static str> {
    RunStatus::ALL.iter().map(|s| s.airflow_name()).collect()
}

/// The names of the states of an active run (queued or running), as Airflow counts them.
pub fn active_run_names() -> Vec<&'static str> {
    [RunStatus::Queued, RunStatus::Running]
        .iter()
        .map(|s| s.airflow_name())
        .collect()
}

/// The names of the states a clear with `only_failed` runs again.
pub fn failed_names() -> Vec<String> {
    [TiState::Failed, TiState::UpstreamFailed]
        .iter()
        .map(|s| s.airflow_name().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_airflows_spelling_and_order() {
        assert_eq!(
            ti_state_names(),
            [
                "removed",
                "scheduled",
                "queued",
                "running",
                "success",
                "restarting",
                "failed",
                "up_for_retry",
                "up_for_reschedule",
                "upstream_failed",
                "skipped",
                "deferred",
            ]
        );
        assert_eq!(
            run_state_names(),
            ["queued", "running", "success", "failed"]
        );
        assert_eq!(summary_precedence().next(), Some("failed"));
    }
}
