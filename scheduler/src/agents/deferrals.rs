//! Tries that wait without a process: a try that deferred itself to a trigger
//! (`self.defer`), and a sensor in reschedule mode. What its runner reports is read here into
//! the core's [`Outcome`]; the arguments it resumes with (which may hold credentials, as
//! Airflow's encrypted trigger arguments may) are sealed with the run's data key, and opened
//! again for the attempt that carries the try on.

use chrono::{DateTime, Duration, Utc};
use leoflow_core::run::{Deferral, Outcome};
use leoflow_events::TaskInstanceKey;
use leoflow_events::catalog::{DeferredTrigger, run_stream};
use leoflow_projector::read;
use leoflow_secrets::Sealed;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tonic::Status;

use super::{AgentService, unavailable};
use crate::lookups;
use crate::task_logs;

/// A deferral as the runner reports it (`FinishRequest.deferral_json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reported {
    trigger: ReportedTrigger,
    method: String,
    #[serde(default)]
    kwargs: Option<Map<String, Value>>,
    /// Seconds the wait may last.
    #[serde(default)]
    timeout: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ReportedTrigger {
    Time {
        moment: DateTime<Utc>,
        #[serde(default)]
        end_from_trigger: bool,
    },
    Python {
        classpath: String,
        kwargs: Map<String, Value>,
    },
    Person {
        request: Map<String, Value>,
        #[serde(default)]
        answer_by: Option<DateTime<Utc>>,
        unanswered: Value,
    },
}

/// The longest wait a deferral may ask for: Airflow's timeouts are timedeltas, but a moment
/// past this is a mistake, not a plan.
const LONGEST_WAIT_DAYS: i64 = 366 * 100;

impl AgentService {
    /// The outcome of a try that deferred itself, as its runner reported it; a deferral that
    /// cannot be read fails the try, saying why (retries apply).
    pub(super) async fn deferred_outcome(
        &self,
        key: &TaskInstanceKey,
        try_number: i32,
        deferral_json: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Outcome, Status> {
        let reported = match read_deferral(deferral_json, at, self.triggerer) {
            Ok(checked) => checked,
            Err(why) => {
                // No process of the try is left to say why it failed: its log says it.
                let reason = format!("the try deferred itself, but {why}");
                let note = format!("[leoflow] {reason}");
                let _ = task_logs::append_note(self.store.pool(), key, try_number, &note).await;
                return Ok(Outcome::Failed { reason });
            }
        };
        let owner = run_stream(&key.dag_id, &key.run_id);
        let trigger = match reported.trigger {
            ReportedTrigger::Time {
                moment,
                end_from_trigger,
            } => DeferredTrigger::Time {
                moment,
                end_from_trigger,
            },
            ReportedTrigger::Python { classpath, kwargs } => DeferredTrigger::Python {
                classpath,
                kwargs: self.seal(&owner, &Value::Object(kwargs)).await?,
            },
            ReportedTrigger::Person {
                request,
                answer_by,
                unanswered,
            } => DeferredTrigger::Person {
                request: Value::Object(request),
                answer_by,
                unanswered,
            },
        };
        let kwargs = Value::Object(reported.kwargs.unwrap_or_default());
        let timeout_at = reported
            .timeout
            .map(|seconds| at + Duration::milliseconds((seconds * 1000.0) as i64));
        Ok(Outcome::Deferred(Deferral {
            trigger,
            next_method: reported.method,
            next_kwargs: self.seal(&owner, &kwargs).await?,
            timeout_at,
        }))
    }

    /// The outcome of a sensor that asked to be poked again at `reschedule_at`.
    pub(super) fn rescheduled_outcome(reschedule_at: Option<&str>) -> Outcome {
        match reschedule_at.map(DateTime::parse_from_rfc3339) {
            Some(Ok(at)) => Outcome::Rescheduled {
                at: at.with_timezone(&Utc),
            },
            Some(Err(error)) => Outcome::Failed {
                reason: format!(
                    "the sensor asked to be rescheduled at an unreadable time: {error}"
                ),
            },
            None => Outcome::Failed {
                reason: "the sensor asked to be rescheduled without saying when".to_owned(),
            },
        }
    }

    /// When the try of `key` first started, and how it resumes when it carries on after a
    /// deferral: `{"method", "kwargs"}`, the trigger's event in `kwargs["event"]`.
    pub(super) async fn continuation(
        &self,
        key: &TaskInstanceKey,
    ) -> Result<(Option<DateTime<Utc>>, Option<Value>), Status> {
        let Some(row) = read::task_instances::continuation(
            self.store.pool(),
            &key.dag_id,
            &key.run_id,
            &key.task_id,
            key.map_index,
        )
        .await
        .map_err(unavailable)?
        else {
            return Ok((None, None));
        };
        let Some(method) = row.next_method else {
            return Ok((row.start_date, None));
        };
        let sealed: Sealed = row
            .next_kwargs
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Status::internal(format!("next_kwargs are not sealed: {e}")))?
            .unwrap_or_else(|| Sealed::clear("{}"));
        let text = match &sealed {
            Sealed::Clear { text } => text.clone(),
            other => lookups::opened(self.vault.as_ref(), "the deferral's arguments", &[other])
                .await
                .map_err(super::lookup_status)?
                .remove(0),
        };
        let mut kwargs: Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| Status::internal(format!("next_kwargs are not a JSON object: {e}")))?;
        kwargs.insert("event".to_owned(), row.trigger_event.unwrap_or(Value::Null));
        Ok((
            row.start_date,
            Some(json!({"method": method, "kwargs": kwargs})),
        ))
    }

    /// `value` sealed with `owner`'s data key (in clear when this control plane has no master
    /// key, as Variables are then).
    async fn seal(&self, owner: &str, value: &Value) -> Result<Sealed, Status> {
        let text = value.to_string();
        match &self.vault {
            Some(vault) => vault.seal(owner, &text).await.map_err(unavailable),
            None => Ok(Sealed::clear(text)),
        }
    }
}

/// The runner's deferral, checked: its trigger (its moment for a time trigger; any other needs
/// `triggerer`), a method, and a timeout that makes sense at `at`.
fn read_deferral(
    json: Option<&str>,
    at: DateTime<Utc>,
    triggerer: bool,
) -> Result<Reported, String> {
    let json = json.ok_or("its runner did not say how it waits")?;
    let reported: Reported =
        serde_json::from_str(json).map_err(|e| format!("its deferral is unreadable: {e}"))?;
    if reported.method.is_empty() {
        return Err("its deferral names no method to resume in".to_owned());
    }
    let longest = Duration::days(LONGEST_WAIT_DAYS);
    match &reported.trigger {
        ReportedTrigger::Time { moment, .. } if *moment > at + longest => {
            return Err(format!(
                "its trigger's moment, {moment}, is more than 100 years away"
            ));
        }
        ReportedTrigger::Time { .. } => {}
        ReportedTrigger::Person {
            answer_by: Some(moment),
            ..
        } if *moment > at + longest => {
            return Err(format!(
                "its answer's deadline, {moment}, is more than 100 years away"
            ));
        }
        ReportedTrigger::Person { request, .. }
            if !request.get("options").is_some_and(|o| o.is_array()) =>
        {
            return Err("it waits for a person's answer but names no options".to_owned());
        }
        ReportedTrigger::Person { .. } => {}
        ReportedTrigger::Python { classpath, .. } if !classpath.contains('.') => {
            return Err(format!(
                "its trigger's class, {classpath:?}, is not a module's class (module.Class)"
            ));
        }
        ReportedTrigger::Python { .. } if triggerer => {}
        // Nothing would run it: refused rather than left waiting until its timeout.
        ReportedTrigger::Python { classpath, .. } => {
            return Err(format!(
                "to trigger {classpath}, and this control plane runs no triggerer: only \
                 DateTimeTrigger and TimeDeltaTrigger are run here, as timers of the scheduler"
            ));
        }
    }
    match reported.timeout {
        Some(seconds) if !seconds.is_finite() || seconds < 0.0 => {
            Err(format!("its timeout, {seconds} s, is not a duration"))
        }
        Some(seconds) if seconds > longest.num_seconds() as f64 => {
            Err(format!("its timeout, {seconds} s, is more than 100 years"))
        }
        _ => Ok(reported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-12-04T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_time_deferral_reads_with_its_method_and_timeout() {
        let json = r#"{"trigger": {"kind": "time", "moment": "2026-12-04T11:00:00+00:00"},
                       "method": "execute_complete", "kwargs": {"n": 1}, "timeout": 60}"#;
        let reported = read_deferral(Some(json), at(), false).unwrap();
        assert_eq!(reported.method, "execute_complete");
        assert_eq!(reported.timeout, Some(60.0));
        assert!(
            matches!(reported.trigger, ReportedTrigger::Time { moment, .. } if moment == at() + Duration::hours(1))
        );
    }

    #[test]
    fn a_deferral_to_another_trigger_needs_a_triggerer() {
        let json = r#"{"trigger": {"kind": "python", "classpath": "files.FileTrigger",
                                   "kwargs": {"filepath": "/tmp/x"}}, "method": "m"}"#;
        let reported = read_deferral(Some(json), at(), true).unwrap();
        assert!(
            matches!(&reported.trigger, ReportedTrigger::Python { classpath, kwargs }
                     if classpath == "files.FileTrigger" && kwargs["filepath"] == "/tmp/x")
        );
        let error = read_deferral(Some(json), at(), false).unwrap_err();
        assert!(error.contains("runs no triggerer"), "{error}");
    }

    #[test]
    fn bad_deferrals_say_what_is_wrong() {
        let cases = [
            (None, "did not say how it waits"),
            (Some("not json"), "unreadable"),
            (
                Some(r#"{"trigger": {"kind": "sql"}, "method": "m"}"#),
                "unreadable",
            ),
            (
                Some(
                    r#"{"trigger": {"kind": "time", "moment": "2026-12-04T11:00:00Z"}, "method": ""}"#,
                ),
                "names no method",
            ),
            (
                Some(
                    r#"{"trigger": {"kind": "time", "moment": "9999-01-01T00:00:00Z"}, "method": "m"}"#,
                ),
                "100 years away",
            ),
            (
                Some(
                    r#"{"trigger": {"kind": "python", "classpath": "files.FileTrigger", "kwargs": {}}, "method": "m"}"#,
                ),
                "trigger files.FileTrigger, and this control plane runs no triggerer",
            ),
            (
                Some(
                    r#"{"trigger": {"kind": "python", "classpath": "FileTrigger", "kwargs": {}}, "method": "m"}"#,
                ),
                "not a module's class",
            ),
            (
                Some(
                    r#"{"trigger": {"kind": "python", "classpath": "a.B", "kwargs": [1]}, "method": "m"}"#,
                ),
                "unreadable",
            ),
            (
                Some(
                    r#"{"trigger": {"kind": "time", "moment": "2026-12-04T11:00:00Z"}, "method": "m", "timeout": -1}"#,
                ),
                "not a duration",
            ),
        ];
        for (json, expected) in cases {
            let error = read_deferral(json, at(), false).unwrap_err();
            assert!(error.contains(expected), "{json:?}: {error}");
        }
    }

    #[test]
    fn a_reschedule_needs_a_readable_time() {
        assert_eq!(
            AgentService::rescheduled_outcome(Some("2026-12-04T10:00:30Z")),
            Outcome::Rescheduled {
                at: at() + Duration::seconds(30)
            }
        );
        for bad in [None, Some("soon")] {
            assert!(matches!(
                AgentService::rescheduled_outcome(bad),
                Outcome::Failed { .. }
            ));
        }
    }
}
