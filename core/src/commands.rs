//! DAG-level commands of the API and CLI: trigger a run (its `conf` checked against the DAG's
//! params, as Airflow does) and pause or unpause a DAG.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leoflow_events::catalog::{DagPaused, DagUnpaused, RunQueued};
use leoflow_events::{Event, RunType};
use serde_json::{Map, Value};

/// A request to trigger a run by hand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerRequest {
    /// The run id; generated (`manual__<now>`) when absent.
    pub run_id: Option<String>,
    /// The logical date; Airflow 3 allows none for manual runs.
    pub logical_date: Option<DateTime<Utc>>,
    /// The run's `conf`: a JSON object (absent means `{}`).
    pub conf: Option<Value>,
    /// Who triggers it (`rest_api`, `ui`, `cli`).
    pub triggered_by: String,
}

/// Why a trigger was refused, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerRejection {
    /// `conf` is not a JSON object.
    #[error("conf must be a JSON object, not {0}")]
    ConfNotAnObject(String),
    /// A param's value breaks its schema.
    #[error("param {param:?}: {reason}")]
    InvalidParam {
        /// The param.
        param: String,
        /// What the schema says.
        reason: String,
    },
    /// A param without a default was not given.
    #[error("param {0:?} has no default and conf does not set it")]
    MissingParam(String),
    /// A param's schema is not a valid JSON Schema (the DAG's fault, reported at trigger).
    #[error("param {param:?} has an unusable schema: {reason}")]
    BadSchema {
        /// The param.
        param: String,
        /// Why.
        reason: String,
    },
    /// The run id cannot be used.
    #[error("run_id {0:?} must be 1 to 250 characters without '/' or '%'")]
    BadRunId(String),
    /// The run id is taken.
    #[error("a run with run_id {0:?} already exists")]
    DuplicateRunId(String),
}

/// Builds the `RunQueued` of a manual run of DAG `dag_id`, whose dag.json `params` are given.
/// The run's conf is the request's conf with every param filled in (conf wins over defaults),
/// and every param value must satisfy its schema.
pub fn trigger(
    dag_id: &str,
    params: &Value,
    version_hash: &str,
    existing_run_ids: &[String],
    request: TriggerRequest,
    now: DateTime<Utc>,
) -> Result<Event, TriggerRejection> {
    let mut conf: Map<String, Value> = match request.conf {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(TriggerRejection::ConfNotAnObject(
                type_name(&other).to_owned(),
            ));
        }
    };
    let params: BTreeMap<String, Value> = params
        .as_object()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for (name, param) in &params {
        let value = match (conf.get(name), param.get("default")) {
            (Some(value), _) => value.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) => return Err(TriggerRejection::MissingParam(name.clone())),
        };
        let schema = param
            .get("schema")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_format("time", is_time)
            .build(&schema)
            .map_err(|e| TriggerRejection::BadSchema {
                param: name.clone(),
                reason: e.to_string(),
            })?;
        if let Some(error) = validator.iter_errors(&value).next() {
            return Err(TriggerRejection::InvalidParam {
                param: name.clone(),
                reason: error.to_string(),
            });
        }
        conf.insert(name.clone(), value);
    }
    let run_id = match request.run_id {
        Some(id) => {
            if id.trim().is_empty() || id.len() > 250 || id.contains(['/', '%']) {
                return Err(TriggerRejection::BadRunId(id));
            }
            id
        }
        None => format!("manual__{}", now.format("%Y-%m-%dT%H:%M:%S%.6f%:z")),
    };
    if existing_run_ids.contains(&run_id) {
        return Err(TriggerRejection::DuplicateRunId(run_id));
    }
    Ok(RunQueued {
        dag_id: dag_id.to_owned(),
        run_id,
        run_type: RunType::Manual,
        logical_date: request.logical_date,
        data_interval_start: request.logical_date,
        data_interval_end: request.logical_date,
        run_after: request.logical_date.unwrap_or(now).max(now),
        conf: Value::Object(conf),
        triggered_by: request.triggered_by,
        dag_version_hash: Some(version_hash.to_owned()),
        task_ids: Vec::new(),
        consumed_asset_events: Vec::new(),
    }
    .into())
}

/// `DagPaused` or `DagUnpaused`, or nothing when the DAG already is so.
pub fn set_paused(dag_id: &str, currently_paused: bool, paused: bool) -> Option<Event> {
    match (currently_paused, paused) {
        (false, true) => Some(
            DagPaused {
                dag_id: dag_id.to_owned(),
            }
            .into(),
        ),
        (true, false) => Some(
            DagUnpaused {
                dag_id: dag_id.to_owned(),
            }
            .into(),
        ),
        _ => None,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `time` as Airflow's trigger form gives it and Airflow accepts: `HH:MM[:SS[.fraction]]`,
/// with an optional `Z` or `±HH:MM` offset (JSON Schema's RFC 3339 `full-time` requires the
/// offset, which would refuse the `"12:13:14"` of Airflow's own `example_params_ui_tutorial`).
fn is_time(text: &str) -> bool {
    let (clock, offset) = match text.find(['Z', 'z', '+', '-']) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let two_digits =
        |part: &str, max: u32| part.len() == 2 && part.parse::<u32>().is_ok_and(|n| n <= max);
    let offset_ok = match offset {
        "" | "Z" | "z" => true,
        signed => signed[1..]
            .split_once(':')
            .is_some_and(|(h, m)| two_digits(h, 23) && two_digits(m, 59)),
    };
    let mut parts = clock.splitn(3, ':');
    let (Some(hour), Some(minute)) = (parts.next(), parts.next()) else {
        return false;
    };
    let second_ok = parts.next().is_none_or(|second| {
        let (whole, fraction) = second.split_once('.').unwrap_or((second, "0"));
        two_digits(whole, 60)
            && !fraction.is_empty()
            && fraction.bytes().all(|b| b.is_ascii_digit())
    });
    two_digits(hour, 23) && two_digits(minute, 59) && second_ok && offset_ok
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_time_param_is_what_airflow_s_form_gives() {
        for good in [
            "12:13:14",
            "00:00",
            "23:59:60",
            "08:30:00.125",
            "12:13:14Z",
            "12:13:14+02:00",
        ] {
            assert!(super::is_time(good), "{good}");
        }
        for bad in [
            "12",
            "24:00:00",
            "12:60",
            "12:13:14+2",
            "noon",
            "12:13:14.",
            "1:02:03",
        ] {
            assert!(!super::is_time(bad), "{bad}");
        }
    }

    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn params() -> Value {
        json!({
            "rows": {"default": 100, "description": null, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            "mode": {"default": "fast", "description": null, "schema": {"enum": ["fast", "safe"]}},
            "day": {"default": null, "description": null, "schema": {"type": ["null", "string"], "format": "date"}},
        })
    }

    fn request(conf: Value) -> TriggerRequest {
        TriggerRequest {
            conf: Some(conf),
            triggered_by: "rest_api".into(),
            ..TriggerRequest::default()
        }
    }

    fn conf_of(event: Event) -> Value {
        match event {
            Event::RunQueued(run) => run.conf,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conf_fills_and_overrides_params() {
        let event = trigger(
            "etl",
            &params(),
            "h",
            &[],
            request(json!({"rows": 5, "extra": [1]})),
            now(),
        )
        .unwrap();
        let Event::RunQueued(run) = &event else {
            panic!()
        };
        assert_eq!(run.run_id, "manual__2026-11-23T10:00:00.000000+00:00");
        assert_eq!(run.run_type, RunType::Manual);
        assert_eq!(
            conf_of(event),
            json!({"rows": 5, "mode": "fast", "day": null, "extra": [1]})
        );
    }

    #[test]
    fn conf_that_breaks_a_param_schema_is_refused_with_the_param_named() {
        let cases = [
            (json!({"rows": 0}), "rows"),
            (json!({"rows": "many"}), "rows"),
            (json!({"mode": "reckless"}), "mode"),
            (json!({"day": "yesterday"}), "day"),
        ];
        for (conf, param) in cases {
            match trigger("etl", &params(), "h", &[], request(conf.clone()), now()) {
                Err(TriggerRejection::InvalidParam { param: p, reason }) => {
                    assert_eq!(p, param, "{conf}: {reason}");
                }
                other => panic!("{conf}: {other:?}"),
            }
        }
        let err = trigger("etl", &params(), "h", &[], request(json!([1, 2])), now()).unwrap_err();
        assert_eq!(err.to_string(), "conf must be a JSON object, not an array");
    }

    #[test]
    fn a_param_without_default_must_be_given() {
        let params = json!({"target": {"description": null, "schema": {"type": "string"}}});
        let err = trigger("etl", &params, "h", &[], request(json!({})), now()).unwrap_err();
        assert_eq!(err, TriggerRejection::MissingParam("target".into()));
        assert!(
            trigger(
                "etl",
                &params,
                "h",
                &[],
                request(json!({"target": "db"})),
                now()
            )
            .is_ok()
        );
    }

    #[test]
    fn run_ids_are_checked() {
        let taken = vec!["nightly".to_owned()];
        let mut req = request(json!({}));
        req.run_id = Some("nightly".into());
        assert_eq!(
            trigger("etl", &json!({}), "h", &taken, req.clone(), now()),
            Err(TriggerRejection::DuplicateRunId("nightly".into()))
        );
        req.run_id = Some("a/b".into());
        assert!(matches!(
            trigger("etl", &json!({}), "h", &taken, req, now()),
            Err(TriggerRejection::BadRunId(_))
        ));
    }

    #[test]
    fn pausing_is_idempotent() {
        assert!(matches!(
            set_paused("d", false, true),
            Some(Event::DagPaused(_))
        ));
        assert!(matches!(
            set_paused("d", true, false),
            Some(Event::DagUnpaused(_))
        ));
        assert_eq!(set_paused("d", true, true), None);
    }
}
