//! When a DAG runs: Airflow 3's timetables for the schedules dag.json can hold.
//!
//! Airflow 3 turns a cron schedule into a `CronTriggerTimetable` and a `timedelta` into a
//! `DeltaTriggerTimetable` (its `create_*_data_intervals` settings default to off): a run's
//! logical date is the moment it is due, and its data interval is that instant. A DAG may
//! also name a timetable: `CronTriggerTimetable` / `DeltaTriggerTimetable` with an
//! `interval` (the data interval before each slot) and `run_immediately`,
//! `CronDataIntervalTimetable` / `DeltaDataIntervalTimetable` (a run per interval between two
//! slots, due at its end, as in Airflow 2), `MultipleCronTriggerTimetable` and
//! `EventsTimetable`. Each follows Airflow's `next_dagrun_info` and
//! `infer_manual_data_interval`. Cron expressions are evaluated in their time zone (the DAG's
//! unless the timetable names one), so "0 6 * * *" in Europe/Amsterdam stays at 06:00 local
//! time across daylight-saving changes.

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
        Self::interval(at, at)
    }

    /// A run over the data interval from `start` to `end`, due at its end (Airflow's
    /// `DagRunInfo.interval`): its logical date is the interval's start.
    pub fn interval(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            logical_date: start,
            run_after: end,
            data_interval_start: start,
            data_interval_end: end,
        }
    }

    /// Airflow's run id for a run of this kind, named after when it is due:
    /// `scheduled__2026-01-01T00:00:00+00:00`.
    pub fn run_id(&self, run_type: &str) -> String {
        format!(
            "{run_type}__{}",
            self.run_after.format("%Y-%m-%dT%H:%M:%S%:z")
        )
    }
}

/// The slots a timetable's runs fall on.
#[derive(Debug, Clone)]
pub enum Grid {
    /// A cron expression in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its text.
        expression: String,
        /// The zone it is evaluated in.
        zone: Tz,
    },
    /// A fixed step: every moment is a slot, the next one a step later.
    Delta(Duration),
}

/// When a cron trigger timetable whose DAG has no start date runs first (Airflow's
/// `run_immediately`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunImmediately {
    /// At the latest past slot (`True`).
    Always,
    /// At the latest past slot if it is at most this old, else at the next (a `timedelta`).
    Within(Duration),
    /// At the latest past slot if it is at most a tenth of the gap between slots old (at
    /// least five minutes), else at the next (`False`, the default).
    TenthOfGap,
}

/// How a DAG's runs are spaced.
#[derive(Debug, Clone)]
pub enum Timetable {
    /// `schedule=None`: only triggered runs.
    Never,
    /// `@once`: one run, at the start date (or at once without one).
    Once,
    /// A run at each slot of the grid, whose data interval is the `interval` before it
    /// (`CronTriggerTimetable`, `DeltaTriggerTimetable`, and plain cron and timedelta
    /// schedules).
    Trigger {
        /// The slots.
        grid: Grid,
        /// The length of each run's data interval (0: the slot itself).
        interval: Duration,
        /// When a DAG without a start date runs first.
        run_immediately: RunImmediately,
    },
    /// A run per interval between two slots, due at its end (`CronDataIntervalTimetable`,
    /// `DeltaDataIntervalTimetable`).
    DataIntervals(Grid),
    /// The earliest run any of several trigger timetables asks for
    /// (`MultipleCronTriggerTimetable`).
    Multiple(Vec<Timetable>),
    /// A run at each listed instant (`EventsTimetable`).
    Events {
        /// The instants, in order.
        dates: Vec<DateTime<Utc>>,
        /// Whether a manual run's data interval is the latest event before it.
        restrict_to_events: bool,
    },
    /// A timetable of the project's own (a subclass of Airflow's `Timetable`): its Python
    /// answers `next_dagrun_info`, which the scheduler asks through the triggerer. Here it
    /// makes no run, and a manual run's data interval is its logical date.
    Custom {
        /// Its class, `module.Class`.
        class: String,
    },
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

/// What bounds the runs a timetable asks for (Airflow's `TimeRestriction`).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    earliest: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
    catchup: bool,
}

impl Bounds {
    /// `at`, unless it is past the latest bound.
    fn admit(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.latest.is_none_or(|latest| at <= latest).then_some(at)
    }
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

/// Bounds how many runs one backfill lists: a timetable always moves on, so only a range
/// of more slots than this stops early.
const MOST_RUNS_BETWEEN: usize = 100_000;

impl Schedule {
    /// Reads the schedule of a dag.json DAG.
    pub fn from_dag_json(dag: &Value) -> Result<Self, TimetableError> {
        let zone = zone(dag["timezone"].as_str().unwrap_or("UTC"))?;
        let timetable = Timetable::from_dag_json(&dag["schedule"], zone)?;
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

    fn bounds(&self) -> Bounds {
        Bounds {
            earliest: self.start_date,
            latest: self.end_date,
            catchup: self.catchup,
        }
    }

    /// The class of a timetable of the project's own, whose runs its Python decides.
    pub fn custom_class(&self) -> Option<&str> {
        match &self.timetable {
            Timetable::Custom { class } => Some(class),
            _ => None,
        }
    }

    /// The next automatic run: after `last` (the latest automatic run), as of `now`.
    /// `None` when the timetable has no further run.
    pub fn next_run(&self, last: Option<&RunInfo>, now: DateTime<Utc>) -> Option<RunInfo> {
        self.timetable.next(last, &self.bounds(), now)
    }

    /// The logical date the timetable gives after `at` (a run's own), within the end date;
    /// `None` for a timetable without one (`None`, `@once`). LatestOnlyOperator's window ends
    /// there.
    pub fn following(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = self.timetable.following(at)?;
        self.end_date.is_none_or(|end| next <= end).then_some(next)
    }

    /// The data interval of a run triggered by hand with logical date `at` (Airflow's
    /// `infer_manual_data_interval`).
    pub fn manual_interval(&self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        self.timetable.manual_interval(at)
    }

    /// Every run a backfill from `from` to `to` (inclusive, by logical date) creates, in
    /// order.
    pub fn runs_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<RunInfo> {
        let from = self.start_date.map_or(from, |start| from.max(start));
        let to = self.end_date.map_or(to, |end| to.min(end));
        if let Timetable::Once = self.timetable {
            let once = self.start_date.filter(|s| (from..=to).contains(s));
            return once.map(RunInfo::at).into_iter().collect();
        }
        let bounds = Bounds {
            earliest: Some(from),
            latest: Some(to),
            catchup: true,
        };
        let mut runs: Vec<RunInfo> = Vec::new();
        while runs.len() < MOST_RUNS_BETWEEN {
            match self.timetable.next(runs.last(), &bounds, to) {
                Some(run) if run.logical_date <= to => runs.push(run),
                _ => break,
            }
        }
        runs
    }
}

/// A time zone by its IANA name.
fn zone(name: &str) -> Result<Tz, TimetableError> {
    Tz::from_str(name).map_err(|_| TimetableError::Zone(name.to_owned()))
}

/// A dag.json duration in seconds (`key` of `schedule`, 0 when absent).
fn seconds(schedule: &Value, key: &str) -> Result<Duration, TimetableError> {
    match &schedule[key] {
        Value::Null => Ok(Duration::zero()),
        value => value
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(|s| Duration::milliseconds((s * 1000.0).round() as i64))
            .ok_or_else(|| TimetableError::Shape(format!("{key} {value}"))),
    }
}

impl Timetable {
    /// Reads a dag.json `schedule` whose DAG's time zone is `dag_zone`.
    fn from_dag_json(schedule: &Value, dag_zone: Tz) -> Result<Self, TimetableError> {
        let shape = || TimetableError::Shape(schedule.to_string());
        let zone = match schedule["timezone"].as_str() {
            Some(name) => zone(name)?,
            None => dag_zone,
        };
        let data_intervals = schedule["data_intervals"].as_bool().unwrap_or(false);
        let timetable = match schedule["type"].as_str() {
            // Runs of the asset condition are the reactor's; the timetable makes none.
            Some("none" | "assets") => Timetable::Never,
            // `AssetOrTimeSchedule`: its timetable's runs besides the asset-triggered ones.
            Some("asset_or_time") => Self::from_dag_json(&schedule["timetable"], dag_zone)?,
            Some("once") => Timetable::Once,
            Some("custom") => Timetable::Custom {
                class: schedule["class"].as_str().ok_or_else(shape)?.to_owned(),
            },
            Some("timedelta") => {
                let step = seconds(schedule, "seconds")?;
                if step <= Duration::zero() {
                    return Err(shape());
                }
                Timetable::on(Grid::Delta(step), schedule, data_intervals)?
            }
            Some("cron") => {
                let expression = schedule["expression"].as_str().ok_or_else(shape)?;
                Timetable::on(Grid::cron(expression, zone)?, schedule, data_intervals)?
            }
            Some("multiple_cron") => {
                let expressions = schedule["expressions"].as_array().ok_or_else(shape)?;
                if expressions.is_empty() {
                    return Err(shape());
                }
                let timetables = expressions
                    .iter()
                    .map(|e| {
                        let expression = e.as_str().ok_or_else(shape)?;
                        Timetable::on(Grid::cron(expression, zone)?, schedule, false)
                    })
                    .collect::<Result<_, _>>()?;
                Timetable::Multiple(timetables)
            }
            Some("events") => {
                let mut dates = schedule["events"]
                    .as_array()
                    .ok_or_else(shape)?
                    .iter()
                    .map(|e| e.as_str().and_then(|s| s.parse().ok()).ok_or_else(shape))
                    .collect::<Result<Vec<DateTime<Utc>>, _>>()?;
                dates.sort();
                Timetable::Events {
                    dates,
                    restrict_to_events: schedule["restrict_to_events"].as_bool().unwrap_or(false),
                }
            }
            _ => return Err(shape()),
        };
        Ok(timetable)
    }

    /// The timetable of `grid` that `schedule` describes: data intervals between its slots,
    /// or a run at each slot.
    fn on(grid: Grid, schedule: &Value, data_intervals: bool) -> Result<Self, TimetableError> {
        if data_intervals {
            return Ok(Timetable::DataIntervals(grid));
        }
        let run_immediately = match &schedule["run_immediately"] {
            Value::Null | Value::Bool(false) => RunImmediately::TenthOfGap,
            Value::Bool(true) => RunImmediately::Always,
            _ => RunImmediately::Within(seconds(schedule, "run_immediately")?),
        };
        Ok(Timetable::Trigger {
            grid,
            interval: seconds(schedule, "interval")?,
            run_immediately,
        })
    }

    /// Airflow's `next_dagrun_info`: the run after `last` within `bounds`, as of `now`.
    fn next(&self, last: Option<&RunInfo>, bounds: &Bounds, now: DateTime<Utc>) -> Option<RunInfo> {
        match self {
            Timetable::Never | Timetable::Custom { .. } => None,
            Timetable::Once => {
                if last.is_some() {
                    return None;
                }
                // At the start date, catchup or not; without one, as soon as possible.
                bounds
                    .admit(bounds.earliest.unwrap_or(now))
                    .map(RunInfo::at)
            }
            Timetable::Trigger {
                grid,
                interval,
                run_immediately,
            } => {
                let slot = grid.next_trigger(last, bounds, *run_immediately, now)?;
                bounds
                    .admit(slot)
                    .map(|slot| RunInfo::interval(slot - *interval, slot))
            }
            Timetable::DataIntervals(grid) => grid.next_interval(last, bounds, now),
            Timetable::Multiple(timetables) => {
                let runs = timetables.iter().filter_map(|t| t.next(last, bounds, now));
                if bounds.catchup {
                    runs.min_by_key(|run| run.logical_date)
                } else {
                    // The latest run due by now, else the earliest one to come.
                    let now = now.timestamp_millis();
                    runs.min_by_key(|run| match run.logical_date.timestamp_millis() {
                        due if due <= now => -due,
                        later => later,
                    })
                }
            }
            Timetable::Events { dates, .. } => {
                let mut earliest = bounds.earliest;
                if !bounds.catchup && earliest.is_none_or(|e| now > e) {
                    earliest = Some(now);
                }
                let next = dates.iter().copied().find(|at| {
                    earliest.is_none_or(|e| *at >= e)
                        && last.is_none_or(|last| *at > last.data_interval_end)
                })?;
                bounds.admit(next).map(RunInfo::at)
            }
        }
    }

    /// The logical date of the run after the one with logical date `at`.
    fn following(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Never | Timetable::Once | Timetable::Custom { .. } => None,
            Timetable::Trigger { grid, interval, .. } => {
                grid.after(at + *interval).map(|slot| slot - *interval)
            }
            Timetable::DataIntervals(grid) => grid.after(at),
            Timetable::Multiple(timetables) => {
                timetables.iter().filter_map(|t| t.following(at)).min()
            }
            Timetable::Events { dates, .. } => dates.iter().copied().find(|d| *d > at),
        }
    }

    /// Airflow's `infer_manual_data_interval` for a run triggered with logical date `at`.
    fn manual_interval(&self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        match self {
            Timetable::Never | Timetable::Once | Timetable::Custom { .. } => (at, at),
            Timetable::Trigger { interval, .. } => (at - *interval, at),
            Timetable::DataIntervals(grid) => grid.interval_before(at).unwrap_or((at, at)),
            Timetable::Multiple(timetables) => timetables
                .iter()
                .map(|t| t.manual_interval(at))
                .min_by_key(|(start, _)| *start)
                .unwrap_or((at, at)),
            Timetable::Events {
                dates,
                restrict_to_events,
            } => {
                let event = match dates.first() {
                    Some(first) if *restrict_to_events && at < *first => *first,
                    Some(_) if *restrict_to_events => *dates
                        .iter()
                        .rev()
                        .find(|d| **d <= at)
                        .expect("one is at or before"),
                    _ => at,
                };
                (event, event)
            }
        }
    }
}

impl Grid {
    /// A cron grid, checking the expression.
    pub fn cron(expression: &str, zone: Tz) -> Result<Self, TimetableError> {
        let cron = Cron::from_str(expression).map_err(|e| TimetableError::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Grid::Cron {
            cron: Box::new(cron),
            expression: expression.to_owned(),
            zone,
        })
    }

    /// The slot of a trigger timetable's next run (`_TriggerTimetable.next_dagrun_info`).
    fn next_trigger(
        &self,
        last: Option<&RunInfo>,
        bounds: &Bounds,
        run_immediately: RunImmediately,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if bounds.catchup {
            return match (last, bounds.earliest) {
                (Some(last), _) => self.after(last.data_interval_end),
                (None, None) => self.first_run(run_immediately, now),
                (None, Some(earliest)) => self.at_or_after(earliest),
            };
        }
        // Without catchup only the latest due slot (or a later one) is run.
        let mut candidates = vec![self.at_or_before(now)];
        match last {
            Some(last) => candidates.push(self.after(last.data_interval_end)),
            None if bounds.earliest.is_none() => {
                candidates.push(self.first_run(run_immediately, now))
            }
            None => {}
        }
        if let Some(earliest) = bounds.earliest {
            candidates.push(self.at_or_after(earliest));
        }
        candidates.into_iter().flatten().max()
    }

    /// The first slot of a trigger timetable whose DAG has no start date (`_calc_first_run`).
    fn first_run(
        &self,
        run_immediately: RunImmediately,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let past = self.at_or_before(now)?;
        if let Grid::Delta(_) = self {
            return Some(past);
        }
        let buffer = match run_immediately {
            RunImmediately::Always => return Some(past),
            RunImmediately::Within(buffer) => buffer,
            RunImmediately::TenthOfGap => {
                let next = self.at_or_after(now)?;
                ((next - past) / 10).max(Duration::minutes(5))
            }
        };
        if now - past <= buffer {
            Some(past)
        } else {
            self.at_or_after(now)
        }
    }

    /// The next run of a data-interval timetable (`_DataIntervalTimetable.next_dagrun_info`).
    fn next_interval(
        &self,
        last: Option<&RunInfo>,
        bounds: &Bounds,
        now: DateTime<Utc>,
    ) -> Option<RunInfo> {
        let earliest = if bounds.catchup {
            bounds.earliest.and_then(|e| self.at_or_after(e))
        } else {
            self.skip_to_latest(bounds.earliest, now)
        };
        let start = match last {
            None => earliest?,
            Some(last) => {
                let aligned = self.at_or_before(last.data_interval_end)?;
                let start = earliest.map_or(aligned, |e| e.max(aligned));
                // A run of another timetable at that very slot: this one starts after it.
                if last.data_interval_start == last.data_interval_end
                    && start == last.data_interval_start
                {
                    self.after(start)?
                } else {
                    start
                }
            }
        };
        let start = bounds.admit(start)?;
        Some(RunInfo::interval(start, self.after(start)?))
    }

    /// Without catchup, the earliest interval a data-interval timetable may start: the last
    /// one that has ended by `now` (`_skip_to_latest`).
    fn skip_to_latest(
        &self,
        earliest: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let latest = match self {
            Grid::Cron { .. } => {
                let last_start = self.before(now)?;
                if self.after(last_start)? == now {
                    last_start
                } else {
                    self.before(last_start)?
                }
            }
            Grid::Delta(step) => {
                let millis = step.num_milliseconds().max(1);
                let now_millis = now.timestamp_millis();
                DateTime::from_timestamp_millis(now_millis - now_millis.rem_euclid(millis))? - *step
            }
        };
        match earliest {
            None => Some(latest),
            Some(earliest) => Some(latest.max(self.at_or_after(earliest)?)),
        }
    }

    /// The data interval a run triggered by hand at `at` covers: the last whole interval.
    fn interval_before(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            Grid::Cron { .. } => {
                let end = self.at_or_before(at)?;
                Some((self.before(end)?, end))
            }
            Grid::Delta(step) => Some((at - *step, at)),
        }
    }

    /// The first slot strictly after `t`.
    fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Grid::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&t.with_timezone(zone), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            Grid::Delta(step) => Some(t + *step),
        }
    }

    /// The last slot strictly before `t`.
    fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Grid::Cron { cron, zone, .. } => cron
                .find_previous_occurrence(&t.with_timezone(zone), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            Grid::Delta(step) => Some(t - *step),
        }
    }

    /// `t` if it is a slot, else the first slot after it.
    fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Grid::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&t.with_timezone(zone), true)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            Grid::Delta(_) => Some(t),
        }
    }

    /// `t` if it is a slot, else the last slot before it.
    fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Grid::Cron { cron, zone, .. } => cron
                .find_previous_occurrence(&t.with_timezone(zone), true)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            // A delta timetable has no grid: "now" is as good a slot as any.
            Grid::Delta(_) => Some(t),
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
        // Without a start date, as soon as possible (Airflow's OnceTimetable).
        let once_without_start = schedule(json!({"type": "once"}), None, None, false, "UTC");
        assert_eq!(
            once_without_start.next_run(None, utc("2026-05-01T00:00:00Z")),
            Some(RunInfo::at(utc("2026-05-01T00:00:00Z")))
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

    fn runs(s: &Schedule, now: &str, n: usize) -> Vec<RunInfo> {
        let mut runs: Vec<RunInfo> = Vec::new();
        for _ in 0..n {
            match s.next_run(runs.last(), utc(now)) {
                Some(run) => runs.push(run),
                None => break,
            }
        }
        runs
    }

    #[test]
    fn a_trigger_timetable_s_interval_is_the_data_interval_before_each_slot() {
        // CronTriggerTimetable("0 6 * * *", timezone="UTC", interval=timedelta(hours=1)).
        let s = schedule(
            json!({"type": "cron", "expression": "0 6 * * *", "timezone": "UTC", "interval": 3600.0}),
            Some("2026-01-01T00:00:00Z"),
            None,
            true,
            "Europe/Amsterdam",
        );
        let first = s.next_run(None, utc("2026-01-03T00:00:00Z")).unwrap();
        assert_eq!(
            first,
            RunInfo {
                logical_date: utc("2026-01-01T05:00:00Z"),
                run_after: utc("2026-01-01T06:00:00Z"),
                data_interval_start: utc("2026-01-01T05:00:00Z"),
                data_interval_end: utc("2026-01-01T06:00:00Z"),
            }
        );
        // Its own time zone wins over the DAG's; the run id names when it is due.
        assert_eq!(
            first.run_id("scheduled"),
            "scheduled__2026-01-01T06:00:00+00:00"
        );
        assert_eq!(
            s.next_run(Some(&first), utc("2026-01-03T00:00:00Z"))
                .unwrap()
                .run_after,
            utc("2026-01-02T06:00:00Z")
        );
        assert_eq!(
            s.following(first.logical_date),
            Some(utc("2026-01-02T05:00:00Z"))
        );
        assert_eq!(
            s.manual_interval(utc("2026-02-01T12:30:00Z")),
            (utc("2026-02-01T11:30:00Z"), utc("2026-02-01T12:30:00Z"))
        );
    }

    #[test]
    fn without_a_start_date_run_immediately_chooses_the_last_slot_or_the_next() {
        let hourly = |run_immediately: Value| {
            schedule(
                json!({"type": "cron", "expression": "0 * * * *", "run_immediately": run_immediately}),
                None,
                None,
                true,
                "UTC",
            )
        };
        let first = |s: &Schedule, now: &str| s.next_run(None, utc(now)).unwrap().run_after;
        // True: the last slot, however old.
        assert_eq!(
            first(&hourly(json!(true)), "2026-03-10T10:50:00Z"),
            utc("2026-03-10T10:00:00Z")
        );
        // False: the last slot while it is younger than a tenth of the gap (at least 5
        // minutes), else the next.
        assert_eq!(
            first(&hourly(json!(false)), "2026-03-10T10:04:00Z"),
            utc("2026-03-10T10:00:00Z")
        );
        assert_eq!(
            first(&hourly(json!(false)), "2026-03-10T10:07:00Z"),
            utc("2026-03-10T11:00:00Z")
        );
        // A timedelta: the last slot while it is at most that old.
        assert_eq!(
            first(&hourly(json!(1800.0)), "2026-03-10T10:20:00Z"),
            utc("2026-03-10T10:00:00Z")
        );
        assert_eq!(
            first(&hourly(json!(1800.0)), "2026-03-10T10:40:00Z"),
            utc("2026-03-10T11:00:00Z")
        );
    }

    #[test]
    fn a_cron_data_interval_timetable_runs_each_interval_at_its_end() {
        let s = schedule(
            json!({"type": "cron", "expression": "0 0 * * *", "data_intervals": true}),
            Some("2026-01-01T00:00:00Z"),
            None,
            true,
            "UTC",
        );
        let got = runs(&s, "2026-01-03T12:00:00Z", 3);
        assert_eq!(
            got[0],
            RunInfo {
                logical_date: utc("2026-01-01T00:00:00Z"),
                run_after: utc("2026-01-02T00:00:00Z"),
                data_interval_start: utc("2026-01-01T00:00:00Z"),
                data_interval_end: utc("2026-01-02T00:00:00Z"),
            }
        );
        assert_eq!(got[1].logical_date, utc("2026-01-02T00:00:00Z"));
        // The third interval ends in the future: it is the next run, due at its end.
        assert_eq!(got[2].run_after, utc("2026-01-04T00:00:00Z"));
        assert_eq!(
            got[0].run_id("scheduled"),
            "scheduled__2026-01-02T00:00:00+00:00"
        );
        // Without catchup: the last interval that has ended by now.
        let mut latest = s.clone();
        latest.catchup = false;
        let run = latest.next_run(None, utc("2026-03-10T15:00:00Z")).unwrap();
        assert_eq!(
            (run.data_interval_start, run.data_interval_end),
            (utc("2026-03-09T00:00:00Z"), utc("2026-03-10T00:00:00Z"))
        );
        assert_eq!(
            s.following(run.logical_date),
            Some(utc("2026-03-10T00:00:00Z"))
        );
        // By hand: the last whole interval before the logical date.
        assert_eq!(
            s.manual_interval(utc("2026-03-10T15:00:00Z")),
            (utc("2026-03-09T00:00:00Z"), utc("2026-03-10T00:00:00Z"))
        );
        let backfill = s.runs_between(utc("2026-02-01T00:00:00Z"), utc("2026-02-03T00:00:00Z"));
        let days: Vec<_> = backfill.iter().map(|r| r.logical_date).collect();
        assert_eq!(
            days,
            [
                utc("2026-02-01T00:00:00Z"),
                utc("2026-02-02T00:00:00Z"),
                utc("2026-02-03T00:00:00Z")
            ]
        );
    }

    #[test]
    fn a_delta_data_interval_timetable_without_catchup_starts_one_step_before_now_rounded() {
        let s = schedule(
            json!({"type": "timedelta", "seconds": 3600.0, "data_intervals": true}),
            Some("2026-01-01T00:00:00Z"),
            None,
            false,
            "UTC",
        );
        let run = s.next_run(None, utc("2026-03-10T15:30:00Z")).unwrap();
        assert_eq!(
            (
                run.data_interval_start,
                run.data_interval_end,
                run.run_after
            ),
            (
                utc("2026-03-10T14:00:00Z"),
                utc("2026-03-10T15:00:00Z"),
                utc("2026-03-10T15:00:00Z")
            )
        );
        let next = s.next_run(Some(&run), utc("2026-03-10T15:30:00Z")).unwrap();
        assert_eq!(next.data_interval_start, utc("2026-03-10T15:00:00Z"));
        assert_eq!(
            s.manual_interval(utc("2026-03-10T15:30:00Z")),
            (utc("2026-03-10T14:30:00Z"), utc("2026-03-10T15:30:00Z"))
        );
    }

    #[test]
    fn multiple_crons_run_at_whichever_fires_first() {
        let s = schedule(
            json!({"type": "multiple_cron", "expressions": ["0 9 * * *", "0 17 * * *"], "timezone": "UTC"}),
            Some("2026-01-01T00:00:00Z"),
            None,
            true,
            "UTC",
        );
        let times: Vec<_> = runs(&s, "2026-01-05T00:00:00Z", 3)
            .iter()
            .map(|r| r.logical_date)
            .collect();
        assert_eq!(
            times,
            [
                utc("2026-01-01T09:00:00Z"),
                utc("2026-01-01T17:00:00Z"),
                utc("2026-01-02T09:00:00Z")
            ]
        );
        // Without catchup: the latest slot due by now.
        let mut latest = s.clone();
        latest.catchup = false;
        assert_eq!(
            latest
                .next_run(None, utc("2026-03-10T12:00:00Z"))
                .unwrap()
                .logical_date,
            utc("2026-03-10T09:00:00Z")
        );
        assert_eq!(
            s.following(utc("2026-03-10T09:00:00Z")),
            Some(utc("2026-03-10T17:00:00Z"))
        );
    }

    #[test]
    fn an_events_timetable_runs_at_each_event() {
        let events = |catchup: bool, restrict: bool| {
            schedule(
                json!({"type": "events", "restrict_to_events": restrict, "events": [
                    "2026-03-01T12:00:00Z", "2026-01-01T12:00:00Z", "2026-02-01T12:00:00Z"
                ]}),
                Some("2026-01-01T00:00:00Z"),
                None,
                catchup,
                "UTC",
            )
        };
        let all: Vec<_> = runs(&events(true, false), "2026-02-15T00:00:00Z", 5)
            .iter()
            .map(|r| r.logical_date)
            .collect();
        assert_eq!(
            all,
            [
                utc("2026-01-01T12:00:00Z"),
                utc("2026-02-01T12:00:00Z"),
                utc("2026-03-01T12:00:00Z")
            ]
        );
        // Without catchup, only events from now on.
        assert_eq!(
            events(false, false)
                .next_run(None, utc("2026-02-15T00:00:00Z"))
                .unwrap()
                .logical_date,
            utc("2026-03-01T12:00:00Z")
        );
        // By hand: the instant itself, or the latest event before it when restricted.
        let at = utc("2026-02-15T00:00:00Z");
        assert_eq!(events(true, false).manual_interval(at), (at, at));
        let event = utc("2026-02-01T12:00:00Z");
        assert_eq!(events(true, true).manual_interval(at), (event, event));
        let first = utc("2026-01-01T12:00:00Z");
        assert_eq!(
            events(true, true).manual_interval(utc("2025-06-01T00:00:00Z")),
            (first, first)
        );
    }

    #[test]
    fn malformed_timetables_are_refused() {
        for bad in [
            json!({"type": "multiple_cron", "expressions": [], "timezone": "UTC"}),
            json!({"type": "multiple_cron", "expressions": ["0 * * * *", "61 * * * *"], "timezone": "UTC"}),
            json!({"type": "events", "events": ["yesterday"]}),
            json!({"type": "cron", "expression": "0 * * * *", "interval": -5}),
            json!({"type": "cron", "expression": "0 * * * *", "run_immediately": "soon"}),
            json!({"type": "timedelta", "seconds": 0}),
        ] {
            assert!(
                Schedule::from_dag_json(&json!({"schedule": bad, "timezone": "UTC"})).is_err(),
                "{bad}"
            );
        }
        let err = Schedule::from_dag_json(&json!({
            "schedule": {"type": "cron", "expression": "0 * * * *", "timezone": "Mars/Olympus"},
            "timezone": "UTC"
        }))
        .unwrap_err();
        assert_eq!(err, TimetableError::Zone("Mars/Olympus".into()));
    }
}
