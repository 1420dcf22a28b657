//! Timetables of the project's own (subclasses of Airflow's `Timetable`). Their Python decides
//! each next run: while this scheduler leads, it asks a DAG's timetable
//! `next_dagrun_info(last_automated_data_interval, restriction)` through the triggerer
//! (`leoflow.custom_timetables.NextDagRunTrigger`), and asks again each time it queued the run
//! the answer named. What was asked is never in the log: the last scheduled run is, so a new
//! leader asks again from there.

use leoflow_core::timetable::RunInfo;
use leoflow_executors::triggerer::TriggerSpec;
use serde_json::{Value, json};

use super::triggers::TriggerOwner;
use super::*;
use crate::run_inputs;

/// What this scheduler knows of the next run of a DAG whose timetable is the project's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum CustomNext {
    /// To ask: first, after a run was queued, or after the DAG changed.
    #[default]
    Unknown,
    /// Asked; the answer comes back as the trigger's report.
    Asked,
    /// The answer: the next run, or none (the timetable has no more).
    Known(Option<RunInfo>),
    /// Asking failed (said in the log): asked again from then on.
    Failed(DateTime<Utc>),
}

impl CustomNext {
    /// The run the timetable gave, due now or later.
    pub(super) fn run(&self) -> Option<&RunInfo> {
        match self {
            CustomNext::Known(run) => run.as_ref(),
            _ => None,
        }
    }
}

/// The Python class asking a DAG's timetable in the triggerer.
const NEXT_RUN_TRIGGER: &str = "leoflow.custom_timetables.NextDagRunTrigger";

/// How long after a failed answer a timetable is asked again.
const ASK_AGAIN_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// The triggerer's id for asking `dag_id`'s timetable for the run after `last`.
fn ask_id(dag_id: &str, last: Option<&RunInfo>) -> String {
    let after = last.map_or_else(|| "start".to_owned(), |run| run.logical_date.to_rfc3339());
    format!("timetable:{dag_id}/{after}")
}

impl Reactor {
    /// Asks the timetables of the project's own that do not know their next run; returns when
    /// to ask again one whose asking failed.
    pub(super) async fn ask_custom_timetables(
        &mut self,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut again = None;
        let to_ask: Vec<String> = self
            .dags
            .iter()
            .filter(|(_, dag)| {
                !dag.paused
                    && dag
                        .schedule
                        .as_ref()
                        .and_then(Schedule::custom_class)
                        .is_some()
                    && match dag.custom_next {
                        CustomNext::Unknown => true,
                        CustomNext::Failed(at) => at <= now,
                        CustomNext::Asked | CustomNext::Known(_) => false,
                    }
            })
            .map(|(dag_id, _)| dag_id.clone())
            .collect();
        for dag_id in to_ask {
            let next = match self.ask_timetable(&dag_id).await {
                Ok(()) => CustomNext::Asked,
                Err(why) => {
                    tracing::error!("the timetable of DAG {dag_id} cannot be asked: {why}");
                    let at = now + ASK_AGAIN_AFTER;
                    again = Some(again.map_or(at, |a: DateTime<Utc>| a.min(at)));
                    CustomNext::Failed(at)
                }
            };
            if let Some(dag) = self.dags.get_mut(&dag_id) {
                dag.custom_next = next;
            }
        }
        again
    }

    /// Starts the trigger asking `dag_id`'s timetable for its next run.
    async fn ask_timetable(&mut self, dag_id: &str) -> Result<(), String> {
        let dag = self.dags.get(dag_id).ok_or("the DAG is gone")?;
        let schedule = dag.schedule.as_ref().ok_or("the DAG has no timetable")?;
        if self.triggers.is_none() {
            return Err(
                "timetables of the project's own run in the triggerer, which this \
                        control plane does not run"
                    .to_owned(),
            );
        }
        let instant = |at: Option<DateTime<Utc>>| at.map(|at| at.to_rfc3339());
        let restriction = json!({
            "earliest": instant(schedule.start_date),
            "latest": instant(schedule.end_date),
            "catchup": schedule.catchup,
        });
        let last = dag.last_scheduled.as_ref();
        let last_interval = last.map(|run| {
            json!({
                "start": run.data_interval_start.to_rfc3339(),
                "end": run.data_interval_end.to_rfc3339(),
            })
        });
        let id = ask_id(dag_id, last);
        let version = dag.version_hash.clone();
        let file = run_inputs::dag_file(&self.store, &self.specs, dag_id, &version)
            .await
            .map_err(|e| e.to_string())?;
        let (tenant, image) = self.trigger_home(dag_id);
        let spec = TriggerSpec {
            id,
            classpath: NEXT_RUN_TRIGGER.to_owned(),
            kwargs: json!({
                "dag_id": leoflow_events::dag_name(dag_id), "fileloc": file.fileloc, "source": file.source,
                "last": last_interval, "restriction": restriction,
            }),
            repeat: false,
            dag_id: dag_id.to_owned(),
            tenant,
            image,
            paths: Vec::new(),
        };
        let owner = TriggerOwner::Timetable {
            dag_id: dag_id.to_owned(),
        };
        if let Some(triggers) = self.triggers.as_mut() {
            triggers.start_own(spec, owner);
        }
        Ok(())
    }

    /// A timetable answered (or failed to): its DAG's next run is known, or asked again later.
    pub(super) fn timetable_answered(
        &mut self,
        id: &str,
        dag_id: &str,
        answer: Result<Option<RunInfo>, String>,
    ) {
        if let Some(triggers) = self.triggers.as_mut() {
            triggers.forget(id);
        }
        let next = match answer {
            Ok(run) => CustomNext::Known(run),
            Err(why) => {
                tracing::error!("the timetable of DAG {dag_id}: {why}");
                CustomNext::Failed(Utc::now() + ASK_AGAIN_AFTER)
            }
        };
        if let Some(dag) = self.dags.get_mut(dag_id)
            && dag.custom_next == CustomNext::Asked
        {
            dag.custom_next = next;
        }
    }
}

/// The next run a timetable's answer names (`{"next": {"run_after", "data_interval_start",
/// "data_interval_end"} | null, "error"}`); its logical date is its data interval's start, as
/// Airflow's `DagRunInfo.logical_date`.
pub(super) fn answered_run(payload: &Value) -> Result<Option<RunInfo>, String> {
    if let Some(error) = payload["error"].as_str() {
        return Err(error.to_owned());
    }
    let next = &payload["next"];
    if next.is_null() {
        return Ok(None);
    }
    let instant = |key: &str| -> Result<DateTime<Utc>, String> {
        next[key]
            .as_str()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc))
            .ok_or_else(|| format!("the timetable's answer has no {key}: {payload}"))
    };
    let (start, end) = (
        instant("data_interval_start")?,
        instant("data_interval_end")?,
    );
    if end < start {
        return Err(format!(
            "the timetable's data interval ends before it starts: {payload}"
        ));
    }
    Ok(Some(RunInfo {
        logical_date: start,
        run_after: instant("run_after")?,
        data_interval_start: start,
        data_interval_end: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_the_next_run_none_or_what_went_wrong() {
        let run = answered_run(&json!({"next": {
            "run_after": "2026-12-08T00:00:00+00:00",
            "data_interval_start": "2026-12-07T00:00:00+00:00",
            "data_interval_end": "2026-12-08T00:00:00+00:00",
        }, "error": null}))
        .unwrap()
        .unwrap();
        assert_eq!(run.logical_date.to_rfc3339(), "2026-12-07T00:00:00+00:00");
        assert_eq!(run.run_after.to_rfc3339(), "2026-12-08T00:00:00+00:00");
        assert_eq!(
            answered_run(&json!({"next": null, "error": null})),
            Ok(None)
        );
        assert_eq!(
            answered_run(&json!({"next": null, "error": "Workday.next_dagrun_info raised"})),
            Err("Workday.next_dagrun_info raised".to_owned())
        );
        let backwards = json!({"next": {
            "run_after": "2026-12-08T00:00:00+00:00",
            "data_interval_start": "2026-12-08T00:00:00+00:00",
            "data_interval_end": "2026-12-07T00:00:00+00:00",
        }});
        assert!(
            answered_run(&backwards)
                .unwrap_err()
                .contains("ends before")
        );
        assert!(answered_run(&json!({"next": {"run_after": "x"}})).is_err());
        assert_eq!(ask_id("d", None), "timetable:d/start");
    }
}
