//! Prometheus metrics (`GET /metrics` on Lite's metrics port, 9098): what the read models say
//! now — DAGs, runs and task instances by state, the event log's head — and the process's
//! memory. Every value is read at scrape time, so the metrics can never drift from the state.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leoflow_projector::read;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ApiResult;
use crate::state::{Edition, Settings};

/// What a scrape reads: the log and its read models, and this process's settings.
#[derive(Clone)]
pub struct MetricsState {
    /// The event log (and its pool, for the read models).
    pub store: leoflow_events::EventStore,
    /// The edition and start time.
    pub settings: std::sync::Arc<Settings>,
}

type Labelled = Family<Vec<(String, String)>, Gauge>;

/// The metrics router (public: bind it to a port only Prometheus reaches).
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Resident memory of this process, in bytes (Linux `/proc/self/statm`).
fn resident_bytes() -> i64 {
    let pages: i64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page
}

async fn metrics(State(state): State<MetricsState>) -> ApiResult<Response> {
    let pool = state.store.pool();
    let mut registry = Registry::with_prefix("leoflow");

    let info = Labelled::default();
    let edition = match state.settings.edition {
        Edition::Lite => "lite",
        Edition::Pro => "pro",
    };
    info.get_or_create(&vec![
        ("edition".into(), edition.into()),
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
    ])
    .set(1);
    registry.register("build_info", "Leoflow's edition and version", info);

    let head = Gauge::<i64>::default();
    head.set(state.store.head().await?);
    registry.register(
        "event_log_head",
        "Position of the newest event in the log",
        head,
    );

    let dags = Labelled::default();
    let rows = read::metrics::dags_by_paused(pool).await?;
    for (paused, count) in rows {
        dags.get_or_create(&vec![("paused".into(), paused.to_string())])
            .set(count);
    }
    registry.register("dags", "DAGs, paused or not", dags);

    let runs = Labelled::default();
    let rows = read::metrics::runs_by_state(pool).await?;
    for (state, count) in rows {
        runs.get_or_create(&vec![("state".into(), state)])
            .set(count);
    }
    registry.register("dag_runs", "Dag runs by state", runs);

    let tis = Labelled::default();
    let rows = read::metrics::task_instances_by_state(pool).await?;
    for (state, count) in rows {
        tis.get_or_create(&vec![(
            "state".into(),
            state.unwrap_or_else(|| "none".into()),
        )])
        .set(count);
    }
    registry.register("task_instances", "Task instances by state", tis);

    let memory = Gauge::<i64>::default();
    memory.set(resident_bytes());
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of the control plane process",
        memory,
    );
    let uptime = Gauge::<i64>::default();
    uptime.set((chrono::Utc::now() - state.settings.started_at).num_seconds());
    registry.register(
        "uptime_seconds",
        "Seconds since this process started",
        uptime,
    );

    let refused = Counter::<u64>::default();
    refused.inc_by(leoflow_scheduler::agents::refused_calls());
    registry.register(
        "agent_calls_refused",
        "Agent calls refused as not coming from a current attempt (unknown run, bad token)",
        refused,
    );

    let mut text = String::new();
    encode(&mut text, &registry).map_err(crate::error::ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
