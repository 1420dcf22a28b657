//! Prometheus metrics (`GET /metrics` on Lite's metrics port, 9098): what the read models say
//! now — DAGs, runs and task instances by state, the event log's head — and the process's
//! memory. Every value is read at scrape time, so the metrics can never drift from the state.

use std::sync::LazyLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leoflow_projector::read;
use leoflow_scheduler::metrics::SchedulerMetrics;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::ApiResult;
use crate::probes::Readiness;
use crate::state::{Edition, Settings};

/// What a scrape reads: the log and its read models, this process's settings, and the
/// scheduler's own metrics when this process runs one.
#[derive(Clone)]
pub struct MetricsState {
    /// The event log (and its pool, for the read models).
    pub store: leoflow_events::EventStore,
    /// The edition and start time.
    pub settings: std::sync::Arc<Settings>,
    /// The scheduler's metrics (`None` for an API-only replica).
    pub scheduler: Option<SchedulerMetrics>,
    /// The replica's readiness checks (datastores, schema), reported as gauges.
    pub readiness: Option<std::sync::Arc<dyn Readiness>>,
}

type Labelled = Family<Vec<(String, String)>, Gauge>;

/// `route`, `method`, `status`.
type RequestLabels = Vec<(&'static str, String)>;

/// Request durations by [`RequestLabels`].
type RequestHistograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The duration of every HTTP request this process answered, by route (the route's pattern,
/// never the ids in the path), method and status.
static REQUESTS: LazyLock<RequestHistograms> = LazyLock::new(|| {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.5, 12)))
});

/// Middleware: times the request into the HTTP metrics.
pub(crate) async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = vec![
        ("route", route),
        ("method", method),
        ("status", response.status().as_u16().to_string()),
    ];
    REQUESTS
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

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
    let mut root = Registry::default();
    if let Some(scheduler) = &state.scheduler {
        scheduler.register(&mut root);
    }
    let registry = root.sub_registry_with_prefix("leoflow");

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

    let position = state.store.head().await?;
    let head = Gauge::<i64>::default();
    head.set(position);
    registry.register(
        "event_log_head",
        "Position of the newest event in the log",
        head,
    );
    let lag = Labelled::default();
    for (projection, at) in read::metrics::projection_positions(pool).await? {
        lag.get_or_create(&vec![("projection".into(), projection)])
            .set(position - at);
    }
    registry.register(
        "projection_lag_events",
        "Events in the log a read model has not applied yet",
        lag,
    );
    leoflow_events::metrics::register(registry);
    if let Some(readiness) = &state.readiness {
        let up = Labelled::default();
        let checks = tokio::time::timeout(crate::probes::CHECK_DEADLINE, readiness.checks())
            .await
            .unwrap_or_default();
        for check in checks {
            up.get_or_create(&vec![("check".into(), check.name.into())])
                .set(i64::from(check.ok));
        }
        registry.register(
            "readiness_check_up",
            "1 while a readiness check passes (postgres, schema, redis, serving)",
            up,
        );
    }

    let dags = Labelled::default();
    let rows = read::metrics::dags_by_paused(pool).await?;
    for (paused, count) in rows {
        dags.get_or_create(&vec![("paused".into(), paused.to_string())])
            .set(count);
    }
    registry.register("dags", "DAGs, paused or not", dags);

    let runs = Labelled::default();
    for (state, count) in read::metrics::unfinished_runs_by_state(pool).await? {
        runs.get_or_create(&vec![("state".into(), state)])
            .set(count);
    }
    registry.register(
        "dag_runs_active",
        "Dag runs queued or running, by state",
        runs,
    );

    let tis = Labelled::default();
    for (state, count) in read::metrics::active_task_instances_by_state(pool).await? {
        tis.get_or_create(&vec![("state".into(), state)]).set(count);
    }
    registry.register(
        "task_instances_active",
        "Task instances scheduled, queued, running or up for retry, by state",
        tis,
    );

    let connections = Labelled::default();
    let idle = pool.num_idle() as i64;
    connections
        .get_or_create(&vec![("state".into(), "idle".into())])
        .set(idle);
    connections
        .get_or_create(&vec![("state".into(), "busy".into())])
        .set(i64::from(pool.size()) - idle);
    registry.register(
        "postgres_pool_connections",
        "This process's Postgres connections, idle or busy",
        connections,
    );
    registry.register(
        "http_request_duration_seconds",
        "HTTP requests answered, by route, method and status",
        REQUESTS.clone(),
    );

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

    let (hits, misses) = leoflow_scheduler::xcom_values::cache_counts();
    for (name, help, count) in [
        (
            "xcom_cache_hits",
            "Large XCom values read from the replicas' shared cache (Redis)",
            hits,
        ),
        (
            "xcom_cache_misses",
            "Large XCom values read from Postgres because the shared cache did not have them",
            misses,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(count);
        registry.register(name, help, counter);
    }

    let mut text = String::new();
    encode(&mut text, &root).map_err(crate::error::ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
