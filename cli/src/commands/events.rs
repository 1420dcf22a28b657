//! `leoflow events`: tail and replay the log.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use leoflow_events::{EventStore, RecordedEvent};
use leoflow_projector::read::audit_log::LogFilter;
use leoflow_projector::replay::{self, Until};
use serde_json::Value;

use crate::datastore::DatastoreArgs;
use crate::remote::{Remote, RemoteArgs, each_line};

/// `leoflow events …`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print the log, newest last; with --follow keep printing as it grows.
    Tail(TailArgs),
    /// Rebuild the read models from the log.
    Replay(ReplayArgs),
}

/// `leoflow events tail`
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Start at this position (inclusive) instead of showing the last --lines events.
    #[arg(long, value_name = "POSITION")]
    from: Option<i64>,
    /// How many recent events to show when --from is not given.
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: usize,
    /// Keep running and print new events as they are appended.
    #[arg(short, long)]
    follow: bool,
    /// Only events of this DAG (its DAG stream and its runs).
    #[arg(long, value_name = "DAG_ID")]
    dag: Option<String>,
    /// Only events of this dag run.
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// Only events of this type (repeatable), e.g. --type TaskFailed.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Only events caused in this tenant (as their metadata records it). Against a server, a
    /// caller of one tenant sees only their tenant's events whatever this says.
    #[arg(long)]
    tenant: Option<String>,
    /// One JSON object per line instead of the human format.
    #[arg(long)]
    json: bool,
}

/// `leoflow events replay`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Build the read models as of this position or RFC 3339 time, into the schema
    /// `leoflow_replay`, leaving the live ones untouched.
    #[arg(long, value_name = "POSITION|TIME", conflicts_with = "verify")]
    until: Option<Until>,
    /// Replay into a throw-away schema and compare with the live read models; exits 1 on
    /// any difference.
    #[arg(long)]
    verify: bool,
    /// Against a server: print the runs and task instances as of --until as JSON.
    #[arg(long, requires = "until")]
    json: bool,
}

/// Runs an `events` subcommand: `tail` against a server when one is named (or current).
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    command: EventsCommand,
) -> Result<ExitCode> {
    if let Some(server) = remote.remote(datastore)? {
        return match &command {
            EventsCommand::Tail(args) => remote_tail(&server, args).await,
            EventsCommand::Replay(args) => remote_replay(&server, args).await,
        };
    }
    let database = datastore.open().await?;
    let pool = database.pool.clone();
    match command {
        EventsCommand::Tail(args) => tail(EventStore::new(pool), args).await,
        EventsCommand::Replay(args) => replay_command(&pool, args).await,
    }
}

async fn tail(store: EventStore, args: TailArgs) -> Result<ExitCode> {
    let filter = Filter {
        dag: args.dag,
        run: args.run,
        types: args.types,
        tenant: args.tenant,
    };
    let print = |event: &RecordedEvent| {
        if filter.matches(event) {
            println!(
                "{}",
                if args.json {
                    json_line(event)
                } else {
                    human_line(event)
                }
            );
        }
    };

    let next = match args.from {
        Some(from) => from.max(1),
        None => {
            // Walk back from the head until --lines matching events are found.
            let head = store.head().await?;
            let mut recent = Vec::new();
            let mut upto = head;
            while recent.len() < args.lines && upto > 0 {
                let page = store.read_backward(upto, 1000).await?;
                let Some(oldest) = page.last() else { break };
                upto = oldest.position - 1;
                recent.extend(page.into_iter().filter(|e| filter.matches(e)));
            }
            recent.truncate(args.lines);
            recent.iter().rev().for_each(print);
            head + 1
        }
    };

    let mut subscription = store.subscribe(next).await?;
    loop {
        let event = if args.follow {
            tokio::select! {
                event = subscription.next() => Some(event?),
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        } else {
            subscription.try_next().await?
        };
        match event {
            Some(event) => print(&event),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `events tail` against a server: its event feed, printed as the local tail prints.
async fn remote_tail(server: &Remote, args: &TailArgs) -> Result<ExitCode> {
    let filter = LogFilter {
        tenant: args.tenant.clone(),
        dag_id: args.dag.clone(),
        run_id: args.run.clone(),
        types: args.types.clone(),
        ..LogFilter::default()
    };
    let start = match args.from {
        Some(from) => FeedStart::At(from),
        None => FeedStart::Last(args.lines as i64),
    };
    read_feed(server, &filter, start, args.follow, |event| {
        let line = if args.json {
            json_line(&event)
        } else {
            human_line(&event)
        };
        println!("{line}");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Where a read of the server's event feed starts.
pub(crate) enum FeedStart {
    /// At this position (inclusive).
    At(i64),
    /// With the last this many events that match.
    Last(i64),
}

/// Reads the server's event feed (`leoflow_api::event_log::FEED_PATH`) narrowed by `filter`,
/// calling `each` with every event as it arrives; `follow` keeps reading as the log grows.
pub(crate) async fn read_feed(
    server: &Remote,
    filter: &LogFilter,
    start: FeedStart,
    follow: bool,
    mut each: impl FnMut(RecordedEvent),
) -> Result<()> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    match start {
        FeedStart::At(from) => query.append_pair("from", &from.to_string()),
        FeedStart::Last(lines) => query.append_pair("lines", &lines.to_string()),
    };
    for (name, value) in filter.query_pairs() {
        query.append_pair(name, &value);
    }
    if follow {
        query.append_pair("follow", "true");
    }
    let path = format!("{}?{}", leoflow_api::event_log::FEED_PATH, query.finish());
    each_line(server.get_ndjson(&path).await?, |line| {
        let event: RecordedEvent = serde_json::from_slice(line)
            .context("the server's event feed sent a line that is not an event")?;
        each(event);
        Ok(())
    })
    .await
}

/// `events replay --until` against a server: the runs and task instances the caller may see,
/// as they were then.
async fn remote_replay(server: &Remote, args: &ReplayArgs) -> Result<ExitCode> {
    let Some(until) = args.until else {
        anyhow::bail!(
            "against a server, `events replay` shows the past: give --until POSITION|TIME \
             (rebuilding and verifying the read models are done on the database, with \
             --database-url)"
        );
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("until", &until.to_string())
        .finish();
    let path = format!("{}?{query}", leoflow_api::event_log::REPLAY_PATH);
    let past: leoflow_projector::point_in_time::PointInTime =
        serde_json::from_value(server.get_json(&path).await?)
            .context("the server's answer is not the runs and task instances as of --until")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&past)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "As of position {} ({} events replayed): {} runs, {} task instances.",
        past.position,
        past.events,
        past.runs.len(),
        past.task_instances.len()
    );
    for run in &past.runs {
        println!(
            "{:<30} {:<40} {:<10} {}",
            run.dag_id, run.run_id, run.state, run.run_type
        );
        let tasks = past
            .task_instances
            .iter()
            .filter(|ti| ti.dag_id == run.dag_id && ti.run_id == run.run_id);
        for ti in tasks {
            let index = if ti.map_index >= 0 {
                format!("[{}]", ti.map_index)
            } else {
                String::new()
            };
            let state = ti.state.as_deref().unwrap_or("none");
            println!(
                "    {}{index:<8} {state:<18} try {}",
                ti.task_id, ti.try_number
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `events tail` filters, matched against the raw payload so even events this binary cannot
/// decode are shown.
struct Filter {
    dag: Option<String>,
    run: Option<String>,
    types: Vec<String>,
    tenant: Option<String>,
}

impl Filter {
    fn matches(&self, event: &RecordedEvent) -> bool {
        let field = |name: &str| {
            event
                .payload
                .get(name)
                .or_else(|| event.payload.get("ti").and_then(|ti| ti.get(name)))
                .and_then(Value::as_str)
        };
        (self.types.is_empty() || self.types.contains(&event.event_type))
            && self
                .dag
                .as_deref()
                .is_none_or(|d| field("dag_id") == Some(d))
            && self
                .run
                .as_deref()
                .is_none_or(|r| field("run_id") == Some(r))
            && self
                .tenant
                .as_ref()
                .is_none_or(|t| event.metadata.tenant.as_ref() == Some(t))
    }
}

fn json_line(event: &RecordedEvent) -> String {
    serde_json::to_string(&event.shown()).expect("recorded events serialize")
}

/// `     42  2026-11-23 22:55:01.123Z  TaskSucceeded   run:etl/manual__1 #7  task_id=load try_number=2`
pub(crate) fn human_line(event: &RecordedEvent) -> String {
    let mut fields = Vec::new();
    summarize(&event.shown().payload, &mut fields);
    let actor = event
        .metadata
        .actor
        .as_deref()
        .map(|a| format!("  by {a}"))
        .unwrap_or_default();
    format!(
        "{:>8}  {}  {:<18} {} #{}  {}{actor}",
        event.position,
        event.recorded_at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
        event.event_type,
        event.stream,
        event.stream_version,
        fields.join(" "),
    )
}

/// Flattens a payload into `key=value` words, leaving out what the stream already says.
fn summarize(payload: &Value, out: &mut Vec<String>) {
    let Value::Object(map) = payload else {
        out.push(payload.to_string());
        return;
    };
    for (key, value) in map {
        match (key.as_str(), value) {
            ("dag_id" | "run_id", _) | (_, Value::Null) => {}
            ("ti", Value::Object(_)) => summarize(value, out),
            ("map_index", Value::Number(n)) if n.as_i64() == Some(-1) => {}
            (_, Value::String(s)) => out.push(format!("{key}={}", shorten(s))),
            _ => out.push(format!("{key}={}", shorten(&value.to_string()))),
        }
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    let one_line = s.replace('\n', "⏎");
    match one_line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

async fn replay_command(pool: &sqlx::PgPool, args: ReplayArgs) -> Result<ExitCode> {
    if args.verify {
        let report = replay::verify(pool)
            .await
            .context("replay --verify stopped")?;
        println!(
            "Replayed {} events (head {}) in {} ms into a scratch schema and compared:",
            report.events,
            report.head,
            report.elapsed.as_millis()
        );
        for table in &report.tables {
            let verdict = if table.is_equal() {
                "equal"
            } else {
                "DIFFERENT"
            };
            println!(
                "  {:<18} live {:>8} rows   replayed {:>8} rows   {verdict}",
                table.table, table.live.rows, table.replayed.rows
            );
            for (side, row) in &table.differing_rows {
                println!("      {side}: {row}");
            }
        }
        return Ok(if report.is_equal() {
            println!("Read models are equal to a replay of the log.");
            ExitCode::SUCCESS
        } else {
            println!(
                "Read models DIFFER from a replay of the log. `leoflow events replay` rebuilds them."
            );
            ExitCode::FAILURE
        });
    }
    let report = match args.until {
        Some(until) => replay::rebuild_for_inspection(pool, until).await,
        None => replay::rebuild(pool).await,
    }
    .context("replay stopped; the read models were left as they were")?;
    let rate = report.events as f64 / report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "Replayed {} events (up to position {}) into schema {:?} in {} ms ({rate:.0} events/s).",
        report.events,
        report.last_position,
        report.schema,
        report.elapsed.as_millis()
    );
    if args.until.is_some() {
        println!(
            "The live read models are untouched; query e.g. SELECT * FROM {}.dag_run.",
            report.schema
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leoflow_events::Metadata;
    use serde_json::json;

    fn event(event_type: &str, payload: Value) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            stream: "run:etl/r1".into(),
            stream_version: 3,
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: Metadata::actor("scheduler"),
            recorded_at: "2026-11-23T10:00:00Z".parse().unwrap(),
        }
    }

    fn filter(dag: Option<&str>, run: Option<&str>, types: &[&str]) -> Filter {
        Filter {
            dag: dag.map(Into::into),
            run: run.map(Into::into),
            types: types.iter().map(|t| t.to_string()).collect(),
            tenant: None,
        }
    }

    #[test]
    fn an_attempt_token_recorded_by_an_older_leoflow_is_never_shown() {
        let token = "0b5e3f5c-8a43-4a7e-9d8e-4f1c2a6b7d90";
        let old = event(
            "TaskDispatched",
            json!({"ti": {"dag_id": "etl", "run_id": "r1", "task_id": "load", "map_index": -1},
                   "try_number": 1, "attempt_token": token, "executor": "subprocess"}),
        );
        for line in [human_line(&old), json_line(&old)] {
            assert!(!line.contains(token), "{line}");
            assert!(line.contains("attempt_digest"), "{line}");
        }
    }

    #[test]
    fn filters_match_dag_run_and_type_in_nested_task_keys() {
        let e = event(
            "TaskSucceeded",
            json!({"ti": {"dag_id": "etl", "run_id": "r1", "task_id": "load", "map_index": -1}, "try_number": 1}),
        );
        assert!(filter(Some("etl"), Some("r1"), &["TaskSucceeded"]).matches(&e));
        assert!(filter(None, None, &[]).matches(&e));
        assert!(!filter(Some("other"), None, &[]).matches(&e));
        assert!(!filter(None, Some("r2"), &[]).matches(&e));
        assert!(!filter(None, None, &["TaskFailed"]).matches(&e));
    }

    #[test]
    fn the_tenant_filter_keeps_only_that_tenants_events() {
        let mut acme = event("VariableSet", json!({"key": "k"}));
        acme.metadata.tenant = Some("acme".into());
        let unscoped = event("VariableSet", json!({"key": "k"}));
        let only_acme = Filter {
            tenant: Some("acme".into()),
            ..filter(None, None, &[])
        };
        assert!(only_acme.matches(&acme));
        assert!(!only_acme.matches(&unscoped));
        let only_other = Filter {
            tenant: Some("globex".into()),
            ..filter(None, None, &[])
        };
        assert!(!only_other.matches(&acme));
    }

    #[test]
    fn human_line_is_one_compact_line() {
        let e = event(
            "TaskFailed",
            json!({"ti": {"dag_id": "etl", "run_id": "r1", "task_id": "load", "map_index": -1},
                   "try_number": 2, "reason": "boom\nline two"}),
        );
        assert_eq!(
            human_line(&e),
            "       7  2026-11-23 10:00:00.000Z  TaskFailed         run:etl/r1 #3  \
             reason=boom⏎line two task_id=load try_number=2  by scheduler"
        );
    }
}
