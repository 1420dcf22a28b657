//! `leoflow dags test <project>`: one DAG run on this machine from start to end, each task's
//! log printed as the task ends (Airflow's `airflow dags test`). It runs on the real parts —
//! a managed Postgres of its own in a temporary folder, the project compiled and registered as
//! Lite registers it, the scheduler and the subprocess executor — so the run goes as it would on
//! Lite; then everything it started is stopped and removed. Nothing of Lite's home is touched
//! but its Python.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use leoflow_core::commands::TriggerRequest;
use leoflow_events::{Actor, DEFAULT_TENANT, Event, EventStore, TaskInstanceKey};
use leoflow_postgres::datastore::connect;
use leoflow_postgres::{ClusterSettings, ManagedCluster};
use leoflow_projector::{ReadModels, read, replay};
use leoflow_scheduler::agents::DEFAULT_MAX_XCOM_BYTES;
use leoflow_scheduler::reactor::Supervision;
use leoflow_scheduler::{control, task_logs};
use tokio::net::TcpListener;

use super::projects::{Layout, Projects};
use crate::control_plane::{ControlPlane, ControlPlaneOptions, ExecutorChoice};
use crate::python_env::{lite_python, note_to};

/// What to run: the project, its DAG (when it has several), the run's conf and logical date.
#[derive(Debug, clap::Args)]
pub struct DagTestArgs {
    /// The project directory.
    pub project: PathBuf,
    /// The DAG to run; needed when the project has several.
    pub dag_id: Option<String>,
    #[command(flatten)]
    pub run: RunOptions,
}

/// One task of a project, alone: `leoflow tasks test`.
#[derive(Debug, clap::Args)]
pub struct TaskTestArgs {
    /// The project directory.
    pub project: PathBuf,
    /// The task.
    pub task_id: String,
    /// Its DAG; needed when several DAGs of the project have the task.
    #[arg(long)]
    pub dag_id: Option<String>,
    #[command(flatten)]
    pub run: RunOptions,
}

/// The test run's conf and logical date, and how long compiling may take.
#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// The run's conf, a JSON object.
    #[arg(long)]
    pub conf: Option<String>,
    /// The run's logical date (RFC 3339); now when not given.
    #[arg(long)]
    pub logical_date: Option<DateTime<Utc>>,
    /// Seconds a DAG file may take to compile.
    #[arg(long, default_value_t = 60)]
    pub compile_timeout: u64,
}

/// Runs one task alone (Airflow's `airflow tasks test`): a run of its DAG holding only that
/// task, without its upstream tasks (what it would pull from them is missing).
pub async fn run_task(home: PathBuf, args: TaskTestArgs) -> Result<ExitCode> {
    let test = DagTestArgs {
        project: args.project,
        dag_id: args.dag_id,
        run: args.run,
    };
    run_test(home, test, Some(args.task_id)).await
}

/// Runs the DAG once; the exit code is 0 when the run succeeds, 1 when it fails.
pub async fn run(home: PathBuf, args: DagTestArgs) -> Result<ExitCode> {
    run_test(home, args, None).await
}

async fn run_test(home: PathBuf, args: DagTestArgs, task_id: Option<String>) -> Result<ExitCode> {
    let conf = match &args.run.conf {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .filter(|c| c.is_object())
                .with_context(|| format!("--conf must be a JSON object, not {text}"))?,
        ),
    };
    let layout = Layout::of(&args.project)?;
    if layout != Layout::Project {
        bail!(
            "{} is a folder of projects: `dags test` runs one project's DAG; name the project's directory",
            args.project.display()
        );
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let scratch =
        std::env::temp_dir().join(format!("leoflow-dags-test-{}-{nanos}", std::process::id()));
    let cluster = ManagedCluster::new(scratch.join("postgres"), ClusterSettings::for_tests())?;
    let starter = cluster.clone();
    let started = tokio::task::spawn_blocking(move || starter.start()).await?;
    let outcome = match started {
        Ok(_) => run_on(&home, &args, task_id.as_deref(), conf, &cluster).await,
        Err(error) => Err(error.into()),
    };
    // Whatever happened, the throwaway Postgres goes, with its folder.
    let remover = cluster.clone();
    let removed = tokio::task::spawn_blocking(move || remover.destroy()).await?;
    let _ = std::fs::remove_dir_all(&scratch);
    let outcome = outcome?;
    removed?;
    Ok(outcome)
}

async fn run_on(
    home: &std::path::Path,
    args: &DagTestArgs,
    task_id: Option<&str>,
    conf: Option<serde_json::Value>,
    cluster: &ManagedCluster,
) -> Result<ExitCode> {
    cluster.ensure_database("leoflow").await?;
    let pool = connect(cluster.connect_options("leoflow"), &cluster.describe(), "").await?;
    leoflow_postgres::migrate::migrate(&pool).await?;
    replay::catch_up(&pool).await?;
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));

    let note = note_to(false);
    let python = lite_python(home, &note).await?;
    let root = std::fs::canonicalize(&args.project)?;
    let timeout = Duration::from_secs(args.run.compile_timeout);
    let mut projects = Projects::open(home, root, Layout::Project, python, timeout).await?;
    let dag_id = match task_id {
        None => {
            let dag_ids = register_project(&mut projects, &store).await?;
            choose_dag(&dag_ids, args.dag_id.as_deref())?
        }
        Some(task_id) => register_task(&projects, &store, args, task_id).await?,
    };

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let options = ControlPlaneOptions {
        project_dir: Some(projects.root().to_owned()),
        python: projects.tasks_python(),
        heartbeat_interval: Duration::from_secs(5),
        max_xcom_bytes: DEFAULT_MAX_XCOM_BYTES,
        supervision: Supervision::default(),
        master_keys: None,
        executor: ExecutorChoice::Subprocess,
        liveness: None,
        log_retention: None,
        dispatch: None,
        advertise_grpc: None,
        otlp_endpoint: None,
        xcom_values: Default::default(),
        agent_tls: None,
        project_reloads: None,
    };
    let control_plane = ControlPlane::start(store.clone(), listener, options).await?;
    let actor = Actor::named("cli");
    control::set_paused(&store, &dag_id, false, &actor).await?;
    let request = TriggerRequest {
        run_id: None,
        logical_date: Some(args.run.logical_date.unwrap_or_else(Utc::now)),
        conf,
        triggered_by: "cli".into(),
    };
    let recorded = control::trigger_dag(&store, &dag_id, request, &actor).await?;
    let Ok(Event::RunQueued(queued)) = recorded.decode() else {
        bail!("the trigger recorded something else than a queued run");
    };
    println!("Running {dag_id} {}", queued.run_id);
    let state = follow(&store, &dag_id, &queued.run_id).await;
    control_plane.stop().await?;
    pool.close().await;
    let state = state?;
    println!("Run {} of {dag_id} ended: {state}", queued.run_id);
    Ok(if state == "success" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Registers the project as Lite does; its DAG ids.
async fn register_project(projects: &mut Projects, store: &EventStore) -> Result<BTreeSet<String>> {
    let loaded = projects.load_all(store).await?;
    let registration = loaded
        .into_iter()
        .next()
        .map(|l| l.outcome)
        .context("the project was not loaded")?
        .map_err(anyhow::Error::msg)?;
    if let Some(error) = registration.import_error {
        bail!("the DAG file does not compile:\n{error}");
    }
    Ok(registration
        .parsed
        .into_iter()
        .chain(registration.unchanged)
        .collect())
}

/// Registers the DAG of `task_id` holding only that task; the DAG's id.
async fn register_task(
    projects: &Projects,
    store: &EventStore,
    args: &DagTestArgs,
    task_id: &str,
) -> Result<String> {
    let timeout = Duration::from_secs(args.run.compile_timeout);
    let python = projects.tasks_python();
    let compiled = leoflow_authoring::compile_project(projects.root(), &python, timeout)
        .await
        .map_err(|error| anyhow::anyhow!("the DAG file does not compile:\n{error}"))?;
    let has_task = |dag: &&serde_json::Value| {
        dag["tasks"]
            .as_array()
            .is_some_and(|tasks| tasks.iter().any(|t| t["task_id"] == task_id))
    };
    let dag_ids: BTreeSet<String> = compiled
        .dags()
        .iter()
        .filter(has_task)
        .filter_map(|d| d["dag_id"].as_str().map(str::to_owned))
        .collect();
    if dag_ids.is_empty() {
        bail!("no DAG of the project has a task {task_id:?}");
    }
    let dag_id = choose_dag(&dag_ids, args.dag_id.as_deref())?;
    let alone = compiled
        .only_task(&dag_id, task_id)
        .map_err(anyhow::Error::msg)?;
    let name = projects
        .root()
        .file_name()
        .map_or("project".into(), |n| n.to_string_lossy().into_owned());
    leoflow_authoring::ingest::register(store, &name, DEFAULT_TENANT, &Ok(alone), "cli").await?;
    Ok(dag_id)
}

/// The DAG to run: the one named, or the project's only one.
fn choose_dag(dag_ids: &BTreeSet<String>, named: Option<&str>) -> Result<String> {
    let all = dag_ids.iter().cloned().collect::<Vec<_>>().join(", ");
    match named {
        Some(dag_id) if dag_ids.contains(dag_id) => Ok(dag_id.to_owned()),
        Some(dag_id) => bail!("the project has no DAG {dag_id:?}; it has {all}"),
        None if dag_ids.len() == 1 => Ok(all),
        None => bail!("the project has several DAGs ({all}): name the one to run"),
    }
}

/// Prints each try's log and state as it ends, until the run ends; its final state.
async fn follow(store: &EventStore, dag_id: &str, run_id: &str) -> Result<String> {
    let pool = store.pool();
    let mut shown: BTreeSet<(String, i32, i32)> = BTreeSet::new();
    loop {
        let mut tis = read::task_instances::of_run(pool, dag_id, run_id, &[]).await?;
        // In the order they ended.
        tis.sort_by_key(|ti| ti.end_date);
        for ti in tis {
            let Some(state) = ti.state.as_deref() else {
                continue;
            };
            let done = matches!(
                state,
                "success" | "failed" | "skipped" | "upstream_failed" | "up_for_retry"
            );
            if !done || !shown.insert((ti.task_id.clone(), ti.map_index, ti.try_number)) {
                continue;
            }
            let index = if ti.map_index >= 0 {
                format!("[{}]", ti.map_index)
            } else {
                String::new()
            };
            println!("--- {}{index} try {}: {state}", ti.task_id, ti.try_number);
            let key = TaskInstanceKey::mapped(dag_id, run_id, &ti.task_id, ti.map_index);
            for line in task_logs::read(pool, &key, ti.try_number, 0).await? {
                println!("    {}", line.line);
            }
        }
        let run = read::runs::find(pool, dag_id, run_id)
            .await?
            .context("the run is gone")?;
        if run.state == "success" || run.state == "failed" {
            return Ok(run.state);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
