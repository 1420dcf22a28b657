//! When a DAG runs: Airflow 3's timetables for the schedules dag.json can hold.
//!
//! Airflow 3 turns a cron schedule into a `CronTriggerTimetable` and a `timedelta` into a
//! `DeltaTriggerTimetable` (its `create_*_data_intervals` settings default to off): a run's
//! logical date is the moment it is due, and its data interval is that instant. Cron
//! expressions are evaluated in the DAG's time zone, so "0 6 * * *" in Europe/Amsterdam stays
//! at 06:00 local time across daylight-saving changes.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde_json::Value;

/// A run the timetable asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunInfo {
    /// Airflow's logical date.
    pub logical_date: DateTime<Utc>,
    /// When the run may start.
    pub run_after: DateTime<Utc>,
    /// Start of the data interval.
    pub data_interval_start: DateTime<Utc>,
    /// End of the data interval.
    pub data_interval_end: DateTime<Utc>,
}

impl RunInfo {
    /// A run due at `at`, with the zero-length data interval of Airflow 3's trigger timetables.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            logical_date: at,
            run_after: at,
            data_interval_start: at,
            data_interval_end: at,
        }
    }

    /// Airflow's run id for a run of this kind: `scheduled__2026-01-01T00:00:00+00:00`.
    pub fn run_id(&self, run_type: &str) -> String {
        format!(
            "{run_type}__{}",
            self.logical_date.format("%Y-%m-%dT%H:%M:%S%:z")
        )
    }
}

/// How a DAG's runs are spaced.
#[derive(Debug, Clone)]
pub enum Timetable {
    /// `schedule=None`: only triggered runs.
    Never,
    /// `@once`: one run, at the start date.
    Once,
    /// A cron expression in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its text.
        expression: String,
        /// The zone it is evaluated in.
        zone: Tz,
    },
    /// A fixed interval.
    Delta(Duration),
}

/// A DAG's timetable with its bounds.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The timetable.
    pub timetable: Timetable,
    /// No run before this.
    pub start_date: Option<DateTime<Utc>>,
    /// No run after this.
    pub end_date: Option<DateTime<Utc>>,
    /// Whether missed slots between the start date (or the last run) and now are all run.
    pub catchup: bool,
}

/// A schedule the scheduler cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimetableError {
    /// The cron expression does not parse.
    #[error("cron expression {expression:?}: {reason}")]
    Cron {
        /// The expression.
        expression: String,
        /// Why.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("time zone {0:?} is not an IANA time zone name (such as Europe/Amsterdam or UTC)")]
    Zone(String),
    /// The schedule object is not one dag.json defines.
    #[error("not a dag.json schedule: {0}")]
    Shape(String),
}

impl Schedule {
    /// Reads the schedule of a dag.json DAG.
    pub fn from_dag_json(dag: &Value) -> Result<Self, TimetableError> {
        let zone_name = dag["timezone"].as_str().unwrap_or("UTC");
        let zone =
            Tz::from_str(zone_name).map_err(|_| TimetableError::Zone(zone_name.to_owned()))?;
        let schedule = &dag["schedule"];
        let timetable = match schedule["type"].as_str() {
            Some("none") => Timetable::Never,
            Some("once") => Timetable::Once,
            Some("timedelta") => {
                let seconds = schedule["seconds"]
                    .as_f64()
                    .filter(|s| *s > 0.0)
                    .ok_or_else(|| TimetableError::Shape(schedule.to_string()))?;
                Timetable::Delta(Duration::milliseconds((seconds * 1000.0).round() as i64))
            }
            Some("cron") => {
                let expression = schedule["expression"]
                    .as_str()
                    .ok_or_else(|| TimetableError::Shape(schedule.to_string()))?;
                Timetable::cron(expression, zone)?
            }
            _ => return Err(TimetableError::Shape(schedule.to_string())),
        };
        let date = |key: &str| -> Result<Option<DateTime<Utc>>, TimetableError> {
            match &dag[key] {
                Value::Null => Ok(None),
                Value::String(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| TimetableError::Shape(format!("{key} {s:?}"))),
                other => Err(TimetableError::Shape(format!("{key} {other}"))),
            }
        };
        Ok(Self {
            timetable,
            start_date: date("start_date")?,
            end_date: date("end_date")?,
            catchup: dag["catchup"].as_bool().unwrap_or(false),
        })
    }

    /// The next automatic run: after `last` (the latest automatic run), as of `now`.
    /// `None` when the timetable has no further run.
    pub fn next_run(&self, last: Option<&RunInfo>, now: DateTime<Utc>) -> Option<RunInfo> {
        let next = match &self.timetable {
            Timetable::Never => return None,
            Timetable::Once => {
                // One run, at the start date; none without one.
                if last.is_some() {
                    return None;
                }
                self.start_date?
            }
            timetable => {
                if self.catchup {
                    match last {
                        Some(last) => timetable.after(last.data_interval_end)?,
                        None => timetable.at_or_after(self.start_date?)?,
                    }
                } else {
                    // Without catchup only the latest due slot (or a later one) is run.
                    let mut candidates = vec![timetable.at_or_before(now)?];
                    if let Some(last) = last {
                        candidates.extend(timetable.after(last.data_interval_end));
                    }
                    if let Some(start) = self.start_date {
                        candidates.extend(timetable.at_or_after(start));
                    }
                    candidates.into_iter().max()?
                }
            }
        };
        if self.end_date.is_some_and(|end| next > end) {
            return None;
        }
        Some(RunInfo::at(next))
    }

    /// The logical date the timetable gives after `at` (a run's own), within the end date;
    /// `None` for a timetable without one (`None`, `@once`). LatestOnlyOperator's window ends
    /// there.
    pub fn following(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = match &self.timetable {
            Timetable::Never | Timetable::Once => return None,
            timetable => timetable.after(at)?,
        };
        self.end_date.is_none_or(|end| next <= end).then_some(next)
    }

    /// Every run a backfill from `from` to `to` (inclusive) creates, in order.
    pub fn runs_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<RunInfo> {
        let mut runs = Vec::new();
        let from = self.start_date.map_or(from, |start| from.max(start));
        let to = self.end_date.map_or(to, |end| to.min(end));
        let mut next = match &self.timetable {
            Timetable::Never => None,
            Timetable::Once => self.start_date.filter(|s| *s >= from),
            timetable => timetable.at_or_after(from),
        };
        while let Some(at) = next.filter(|at| *at <= to) {
            runs.push(RunInfo::at(at));
            next = match &self.timetable {
                Timetable::Once => None,
                timetable => timetable.after(at),
            };
        }
        runs
    }
}

impl Timetable {
    /// A cron timetable, checking the expression.
    pub fn cron(expression: &str, zone: Tz) -> Result<Self, TimetableError> {
        let cron = Cron::from_str(expression).map_err(|e| TimetableError::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Timetable::Cron {
            cron: Box::new(cron),
            expression: expression.to_owned(),
            zone,
        })
    }

    /// The first slot strictly after `t`.
    fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&t.with_timezone(zone), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            Timetable::Delta(step) => Some(t + *step),
            Timetable::Never | Timetable::Once => None,
        }
    }

    /// `t` if it is a slot, else the first slot after it.
    fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&t.with_timezone(zone), true)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            Timetable::Delta(_) => Some(t),
            Timetable::Never | Timetable::Once => None,
        }
    }

    /// `t` if it is a slot, else the last slot before it.
    fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Cron { cron, zone, .. } => cron
                .find_previous_occurrence(&t.with_timezone(zone), true)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            // A delta timetable has no grid: "now" is as good a slot as any.
            Timetable::Delta(_) => Some(t),
            Timetable::Never | Timetable::Once => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn schedule(
        schedule: Value,
        start: Option<&str>,
        end: Option<&str>,
        catchup: bool,
        tz: &str,
    ) -> Schedule {
        Schedule::from_dag_json(&json!({
            "schedule": schedule, "start_date": start, "end_date": end, "catchup": catchup, "timezone": tz
        }))
        .unwrap()
    }

    fn daily(catchup: bool) -> Schedule {
        schedule(
            json!({"type": "cron", "expression": "0 0 * * *"}),
            Some("2026-01-01T00:00:00Z"),
            None,
            catchup,
            "UTC",
        )
    }

    #[test]
    fn the_following_logical_date_is_the_timetable_s_next_slot_within_the_end_date() {
        let s = daily(false);
        assert_eq!(
            s.following(utc("2026-03-10T00:00:00Z")),
            Some(utc("2026-03-11T00:00:00Z"))
        );
        let every_4h = schedule(
            json!({"type": "timedelta", "seconds": 14400.0}),
            Some("2026-01-01T00:00:00Z"),
            None,
            false,
            "UTC",
        );
        assert_eq!(
            every_4h.following(utc("2026-03-10T08:00:00Z")),
            Some(utc("2026-03-10T12:00:00Z"))
        );
        let ending = schedule(
            json!({"type": "cron", "expression": "0 0 * * *"}),
            Some("2026-01-01T00:00:00Z"),
            Some("2026-03-10T12:00:00Z"),
            false,
            "UTC",
        );
        assert_eq!(ending.following(utc("2026-03-10T00:00:00Z")), None);
        let manual = schedule(json!({"type": "none"}), None, None, false, "UTC");
        assert_eq!(manual.following(utc("2026-03-10T00:00:00Z")), None);
    }

    #[test]
    fn catchup_runs_every_missed_slot_in_order() {
        let s = daily(true);
        let now = utc("2026-01-03T12:00:00Z");
        let first = s.next_run(None, now).unwrap();
        assert_eq!(first.logical_date, utc("2026-01-01T00:00:00Z"));
        assert_eq!(
            (first.data_interval_start, first.data_interval_end),
            (first.logical_date, first.logical_date)
        );
        let second = s.next_run(Some(&first), now).unwrap();
        let third = s.next_run(Some(&second), now).unwrap();
        assert_eq!(
            (second.logical_date, third.logical_date),
            (utc("2026-01-02T00:00:00Z"), utc("2026-01-03T00:00:00Z"))
        );
        // The fourth slot is in the future: it is still the next run, due when its time comes.
        assert_eq!(
            s.next_run(Some(&third), now).unwrap().run_after,
            utc("2026-01-04T00:00:00Z")
        );
        assert_eq!(
            first.run_id("scheduled"),
            "scheduled__2026-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn without_catchup_only_the_latest_due_slot_runs() {
        let s = daily(false);
        let now = utc("2026-03-10T15:00:00Z");
        let next = s.next_run(None, now).unwrap();
        assert_eq!(next.logical_date, utc("2026-03-10T00:00:00Z"));
        let long_ago = RunInfo::at(utc("2026-01-05T00:00:00Z"));
        assert_eq!(
            s.next_run(Some(&long_ago), now).unwrap().logical_date,
            utc("2026-03-10T00:00:00Z")
        );
        assert_eq!(
            s.next_run(Some(&next), now).unwrap().logical_date,
            utc("2026-03-11T00:00:00Z")
        );
        // A start date in the future wins over the latest past slot.
        let later = schedule(
            json!({"type": "cron", "expression": "0 0 * * *"}),
            Some("2026-06-01T00:00:00Z"),
            None,
            false,
            "UTC",
        );
        assert_eq!(
            later.next_run(None, now).unwrap().logical_date,
            utc("2026-06-01T00:00:00Z")
        );
    }

    #[test]
    fn cron_follows_the_dags_time_zone_across_daylight_saving() {
        let s = schedule(
            json!({"type": "cron", "expression": "0 6 * * *"}),
            Some("2026-03-28T00:00:00Z"),
            None,
            true,
            "Europe/Amsterdam",
        );
        let runs = s.runs_between(utc("2026-03-28T00:00:00Z"), utc("2026-03-30T23:00:00Z"));
        let times: Vec<_> = runs.iter().map(|r| r.logical_date).collect();
        // 06:00 CET is 05:00 UTC; after the switch on March 29, 06:00 CEST is 04:00 UTC.
        assert_eq!(
            times,
            [
                utc("2026-03-28T05:00:00Z"),
                utc("2026-03-29T04:00:00Z"),
                utc("2026-03-30T04:00:00Z")
            ]
        );
    }

    #[test]
    fn end_date_stops_the_schedule() {
        let s = schedule(
            json!({"type": "cron", "expression": "0 12 * * *"}),
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-02T00:00:00Z"),
            true,
            "UTC",
        );
        let first = s.next_run(None, utc("2026-02-01T00:00:00Z")).unwrap();
        assert_eq!(first.logical_date, utc("2026-01-01T12:00:00Z"));
        assert_eq!(s.next_run(Some(&first), utc("2026-02-01T00:00:00Z")), None);
    }

    #[test]
    fn timedelta_once_and_none() {
        let every_6h = schedule(
            json!({"type": "timedelta", "seconds": 21600.0}),
            Some("2026-01-01T00:00:00Z"),
            None,
            true,
            "UTC",
        );
        let first = every_6h
            .next_run(None, utc("2026-01-02T00:00:00Z"))
            .unwrap();
        assert_eq!(first.logical_date, utc("2026-01-01T00:00:00Z"));
        assert_eq!(
            every_6h
                .next_run(Some(&first), utc("2026-01-02T00:00:00Z"))
                .unwrap()
                .logical_date,
            utc("2026-01-01T06:00:00Z")
        );

        let once = schedule(
            json!({"type": "once"}),
            Some("2026-01-01T00:00:00Z"),
            None,
            false,
            "UTC",
        );
        let run = once.next_run(None, utc("2026-05-01T00:00:00Z")).unwrap();
        assert_eq!(run.logical_date, utc("2026-01-01T00:00:00Z"));
        assert_eq!(once.next_run(Some(&run), utc("2026-05-01T00:00:00Z")), None);
        let once_without_start = schedule(json!({"type": "once"}), None, None, false, "UTC");
        assert_eq!(
            once_without_start.next_run(None, utc("2026-05-01T00:00:00Z")),
            None
        );

        let never = schedule(
            json!({"type": "none"}),
            Some("2026-01-01T00:00:00Z"),
            None,
            true,
            "UTC",
        );
        assert_eq!(never.next_run(None, utc("2026-05-01T00:00:00Z")), None);
        assert!(
            never
                .runs_between(utc("2026-01-01T00:00:00Z"), utc("2026-12-01T00:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn backfill_covers_the_slots_between_two_dates() {
        let s = schedule(
            json!({"type": "cron", "expression": "0 0 * * MON-FRI"}),
            Some("2026-01-01T00:00:00Z"),
            None,
            false,
            "UTC",
        );
        let runs = s.runs_between(utc("2026-01-09T00:00:00Z"), utc("2026-01-13T00:00:00Z"));
        let days: Vec<_> = runs
            .iter()
            .map(|r| r.logical_date.format("%a %d").to_string())
            .collect();
        assert_eq!(days, ["Fri 09", "Mon 12", "Tue 13"]);
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        let err = Schedule::from_dag_json(
            &json!({"schedule": {"type": "cron", "expression": "99 * * * *"}, "timezone": "UTC"}),
        )
        .unwrap_err();
        assert!(matches!(err, TimetableError::Cron { .. }), "{err}");
        let err = Schedule::from_dag_json(
            &json!({"schedule": {"type": "none"}, "timezone": "Mars/Olympus"}),
        )
        .unwrap_err();
        assert_eq!(err, TimetableError::Zone("Mars/Olympus".into()));
        let err =
            Schedule::from_dag_json(&json!({"schedule": {"type": "asset"}, "timezone": "UTC"}))
                .unwrap_err();
        assert!(matches!(err, TimetableError::Shape(_)));
    }
}
