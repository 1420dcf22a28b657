//! Task instances' timers: retries, rescheduled sensors, time triggers of deferred tries and
//! deferral timeouts, read from the model so a restarted scheduler has them back.

use super::*;
use leoflow_events::catalog::DeferredTrigger;

/// What a task instance's timer does when it fires.
enum Timer {
    /// Schedules the next try.
    Retry,
    /// Resumes the try, with the trigger's event (none for a rescheduled sensor).
    Resume(Option<serde_json::Value>),
    /// Fails a deferral that waited past its timeout.
    DeferralTimeout,
    /// Ends the task, successful, at its time trigger (`end_from_trigger`).
    EndFromTrigger,
}

impl Timer {
    /// The command of this timer of try `try_number` of an instance, due at `due`, at `now`.
    pub(super) fn command(
        self,
        task_id: String,
        map_index: i32,
        try_number: i32,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Command {
        match self {
            Timer::Retry => Command::RetryDue {
                task_id,
                map_index,
                try_number,
                at: now,
            },
            Timer::Resume(trigger_event) => Command::Resume {
                task_id,
                map_index,
                try_number,
                trigger_event,
                at: now,
            },
            Timer::EndFromTrigger => Command::EndFromTrigger {
                task_id,
                map_index,
                try_number,
                at: now,
            },
            Timer::DeferralTimeout => Command::DeferralFailed {
                task_id,
                map_index,
                try_number,
                reason: format!(
                    "TaskDeferralTimeout: the trigger did not fire before the deferral's timeout, {}",
                    due.to_rfc3339()
                ),
            },
        }
    }
}

/// When `ti`'s timer fires, and what it does then; `None` when it waits for no time.
fn timer_of(ti: &leoflow_core::run::TaskInstance) -> Option<(DateTime<Utc>, Timer)> {
    match (ti.state, ti.due_at, ti.timeout_at) {
        (TiState::UpForRetry, Some(due), _) => Some((due, Timer::Retry)),
        (TiState::UpForReschedule, Some(due), _) => Some((due, Timer::Resume(None))),
        (TiState::Deferred, due, Some(timeout)) if due.is_none_or(|due| timeout < due) => {
            Some((timeout, Timer::DeferralTimeout))
        }
        (TiState::Deferred, Some(moment), _) if ti.ends_at_due => {
            Some((moment, Timer::EndFromTrigger))
        }
        // A person did not answer in time: the try carries on with what that means.
        (TiState::Deferred, Some(moment), _)
            if let Some(DeferredTrigger::Person { unanswered, .. }) = &ti.trigger =>
        {
            Some((moment, Timer::Resume(Some(unanswered.clone()))))
        }
        // A time trigger's event is its moment, as Airflow's `DateTimeTrigger` yields it.
        (TiState::Deferred, Some(moment), _) => {
            Some((moment, Timer::Resume(Some(airflow_datetime(moment)))))
        }
        _ => None,
    }
}

/// A datetime as Airflow serialises one in a trigger's event (`BaseSerialization`: seconds
/// since the epoch).
fn airflow_datetime(at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({"__type": "datetime", "__var": at.timestamp_micros() as f64 / 1e6})
}

/// How many runs' timer decisions are appended at once: enough to overlap the appends' round
/// trips, few enough to leave the store's pool (8 in Lite) to the rest of the control plane.
const TIMER_APPENDS_AT_ONCE: usize = 4;

impl Reactor {
    /// Fires what waits for a time: retries after their delay, rescheduled sensors, time
    /// triggers of deferred tries and deferrals past their timeout. Returns the earliest time
    /// still to come.
    pub(super) async fn fire_timers(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        let mut due = Vec::new();
        for ((dag_id, run_id), run) in &self.runs {
            let mut commands = Vec::new();
            for ((task_id, map_index), ti) in &run.state.tis {
                let Some((due, timer)) = timer_of(ti) else {
                    continue;
                };
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    continue;
                }
                commands.push(timer.command(task_id.clone(), *map_index, ti.try_number, due, now));
            }
            if !commands.is_empty() {
                due.push((dag_id, run_id, commands));
            }
        }
        // Runs are streams of their own: their decisions are appended side by side, a few at a
        // time (each holds one of the store's connections while it appends).
        stream::iter(due)
            .for_each_concurrent(
                TIMER_APPENDS_AT_ONCE,
                |(dag_id, run_id, commands)| async move {
                    self.submit_all(dag_id, run_id, commands).await;
                },
            )
            .await;
        next
    }
}
