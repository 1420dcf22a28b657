//! Airflow's trigger rules: when a task instance may run, and when it never will.

use serde::{Deserialize, Serialize};

use crate::state::TiState;

/// Every trigger rule of Airflow 3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream succeeded (Airflow's default).
    AllSuccess,
    /// Every upstream failed or had its upstream fail.
    AllFailed,
    /// Every upstream is done, whatever its outcome.
    AllDone,
    /// Every upstream is done and at least one succeeded.
    AllDoneMinOneSuccess,
    /// Airflow's rule for teardown tasks: every upstream is done and, when some are setups,
    /// at least one of them succeeded.
    AllDoneSetupSuccess,
    /// Every upstream was skipped.
    AllSkipped,
    /// At least one upstream succeeded; runs without waiting for the others.
    OneSuccess,
    /// At least one upstream failed; runs without waiting for the others.
    OneFailed,
    /// At least one upstream succeeded or failed; runs without waiting for the others.
    OneDone,
    /// No upstream failed: each succeeded or was skipped.
    NoneFailed,
    /// No upstream failed and at least one succeeded.
    NoneFailedMinOneSuccess,
    /// No upstream was skipped, once all are done.
    NoneSkipped,
    /// Runs at once, whatever its upstream does.
    Always,
}

/// The states of a task instance's direct upstream task instances, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// How many upstream task instances there are.
    pub total: usize,
    /// In `success`.
    pub success: usize,
    /// In `skipped`.
    pub skipped: usize,
    /// In `failed`.
    pub failed: usize,
    /// In `upstream_failed`.
    pub upstream_failed: usize,
    /// Of them, how many are instances of setup tasks.
    pub setup_total: usize,
    /// Setup instances in `success`.
    pub setup_success: usize,
    /// Setup instances in `skipped`.
    pub setup_skipped: usize,
}

impl UpstreamCounts {
    /// Counts one more upstream task instance, in `state`.
    pub fn add(&mut self, state: TiState) {
        self.total += 1;
        match state {
            TiState::Success => self.success += 1,
            TiState::Skipped => self.skipped += 1,
            TiState::Failed => self.failed += 1,
            TiState::UpstreamFailed => self.upstream_failed += 1,
            _ => {}
        }
    }

    /// Upstream task instances in a final state.
    pub fn done(&self) -> usize {
        self.success + self.skipped + self.failed + self.upstream_failed
    }

    fn all_done(&self) -> bool {
        self.done() == self.total
    }

    /// Whether one failed or had its upstream fail.
    pub fn any_failed(&self) -> bool {
        self.failed + self.upstream_failed > 0
    }
}

/// What a trigger rule says about a task instance that has not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decidable yet: wait for more upstream task instances to finish.
    Wait,
    /// Its dependencies are met: schedule it.
    Run,
    /// It will never run: skip it.
    Skip,
    /// It will never run because something upstream failed.
    UpstreamFailed,
}

impl TriggerRule {
    /// Every rule.
    pub const ALL: [TriggerRule; 13] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllDoneMinOneSuccess,
        TriggerRule::AllDoneSetupSuccess,
        TriggerRule::AllSkipped,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::Always,
    ];

    /// Evaluates the rule as Airflow's trigger-rule dependency does (with
    /// `flag_upstream_failed`): first whether the task can never run, then whether it can run now.
    pub fn evaluate(self, up: &UpstreamCounts) -> Verdict {
        use TriggerRule::*;
        use Verdict::*;
        // Airflow skips the trigger rule entirely for a task without upstream tasks.
        if up.total == 0 {
            return Run;
        }
        let all_done = up.all_done();
        match self {
            AllSuccess if up.any_failed() => UpstreamFailed,
            AllSuccess if up.skipped > 0 => Skip,
            AllSuccess if up.success == up.total => Run,
            AllFailed if up.success + up.skipped > 0 => Skip,
            AllFailed if up.failed + up.upstream_failed == up.total => Run,
            AllDoneSetupSuccess if all_done && up.setup_total > 0 => {
                if up.setup_skipped >= up.setup_total {
                    Skip
                } else if up.setup_success == 0 {
                    UpstreamFailed
                } else {
                    Run
                }
            }
            AllDone | AllDoneSetupSuccess if all_done => Run,
            AllDoneMinOneSuccess if all_done && up.success > 0 => Run,
            AllDoneMinOneSuccess if all_done => Skip,
            AllSkipped if up.success + up.failed + up.upstream_failed > 0 => Skip,
            AllSkipped if up.skipped == up.total => Run,
            OneSuccess if up.success > 0 => Run,
            OneSuccess if all_done && up.skipped == up.total => Skip,
            OneSuccess if all_done => UpstreamFailed,
            OneFailed if up.any_failed() => Run,
            OneFailed if all_done => Skip,
            OneDone if up.success + up.failed > 0 => Run,
            OneDone if all_done => Skip,
            NoneFailed if up.any_failed() => UpstreamFailed,
            NoneFailed if all_done => Run,
            NoneFailedMinOneSuccess if up.any_failed() => UpstreamFailed,
            NoneFailedMinOneSuccess if all_done && up.success > 0 => Run,
            NoneFailedMinOneSuccess if all_done => Skip,
            NoneSkipped if up.skipped > 0 => Skip,
            NoneSkipped if all_done => Run,
            Always => Run,
            _ => Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TriggerRule::*;
    use super::Verdict::*;
    use super::*;

    /// (success, skipped, failed, upstream_failed, still running) of 3 upstream task instances.
    fn up(success: usize, skipped: usize, failed: usize, upstream_failed: usize) -> UpstreamCounts {
        UpstreamCounts {
            total: 3,
            success,
            skipped,
            failed,
            upstream_failed,
            ..Default::default()
        }
    }

    #[test]
    fn every_rule_against_every_kind_of_upstream() {
        // columns: all success | 1 running, rest success | all skipped | 1 failed, 2 success |
        //          1 skipped, 2 success | all failed | 1 upstream_failed, 1 running | 1 success, 2 running
        let cases = [
            up(3, 0, 0, 0),
            up(2, 0, 0, 0),
            up(0, 3, 0, 0),
            up(2, 0, 1, 0),
            up(2, 1, 0, 0),
            up(0, 0, 3, 0),
            up(0, 0, 0, 1),
            up(1, 0, 0, 0),
        ];
        let table: [(TriggerRule, [Verdict; 8]); 13] = [
            (
                AllSuccess,
                [
                    Run,
                    Wait,
                    Skip,
                    UpstreamFailed,
                    Skip,
                    UpstreamFailed,
                    UpstreamFailed,
                    Wait,
                ],
            ),
            (AllFailed, [Skip, Skip, Skip, Skip, Skip, Run, Wait, Skip]),
            (AllDone, [Run, Wait, Run, Run, Run, Run, Wait, Wait]),
            (
                AllDoneSetupSuccess,
                [Run, Wait, Run, Run, Run, Run, Wait, Wait],
            ),
            (
                AllDoneMinOneSuccess,
                [Run, Wait, Skip, Run, Run, Skip, Wait, Wait],
            ),
            (AllSkipped, [Skip, Skip, Run, Skip, Skip, Skip, Skip, Skip]),
            (
                OneSuccess,
                [Run, Run, Skip, Run, Run, UpstreamFailed, Wait, Run],
            ),
            (OneFailed, [Skip, Wait, Skip, Run, Skip, Run, Run, Wait]),
            (OneDone, [Run, Run, Skip, Run, Run, Run, Wait, Run]),
            (
                NoneFailed,
                [
                    Run,
                    Wait,
                    Run,
                    UpstreamFailed,
                    Run,
                    UpstreamFailed,
                    UpstreamFailed,
                    Wait,
                ],
            ),
            (
                NoneFailedMinOneSuccess,
                [
                    Run,
                    Wait,
                    Skip,
                    UpstreamFailed,
                    Run,
                    UpstreamFailed,
                    UpstreamFailed,
                    Wait,
                ],
            ),
            (NoneSkipped, [Run, Wait, Skip, Run, Skip, Run, Wait, Wait]),
            (Always, [Run, Run, Run, Run, Run, Run, Run, Run]),
        ];
        for (rule, expected) in table {
            for (case, want) in cases.iter().zip(expected) {
                assert_eq!(rule.evaluate(case), want, "{rule:?} with {case:?}");
            }
        }
    }

    #[test]
    fn a_teardown_needs_one_of_its_setups_to_succeed() {
        // 3 upstream, all done: 2 of them setups.
        let with_setups = |success: usize, skipped: usize, failed: usize| UpstreamCounts {
            total: 3,
            success: success + 1,
            skipped,
            failed,
            setup_total: 2,
            setup_success: success,
            setup_skipped: skipped,
            ..Default::default()
        };
        assert_eq!(AllDoneSetupSuccess.evaluate(&with_setups(1, 0, 1)), Run);
        assert_eq!(AllDoneSetupSuccess.evaluate(&with_setups(0, 2, 0)), Skip);
        assert_eq!(
            AllDoneSetupSuccess.evaluate(&with_setups(0, 1, 1)),
            UpstreamFailed
        );
        // Two upstream instances not done yet.
        assert_eq!(AllDoneSetupSuccess.evaluate(&with_setups(0, 0, 0)), Wait);
    }

    #[test]
    fn a_task_without_upstream_runs_under_any_rule() {
        let none = UpstreamCounts::default();
        for rule in TriggerRule::ALL {
            // Airflow: a task with no upstream passes its trigger rule, whatever the rule.
            assert_eq!(rule.evaluate(&none), Run, "{rule:?}");
        }
    }

    #[test]
    fn rule_names_are_airflows() {
        let rule: TriggerRule = serde_json::from_str("\"none_failed_min_one_success\"").unwrap();
        assert_eq!(rule, NoneFailedMinOneSuccess);
    }
}
