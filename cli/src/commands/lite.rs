//! `leoflow lite`: the control plane on one machine.
//!
//! It brings up the datastore (managed Postgres unless told otherwise), the schema and the read
//! models, compiles and registers the project, and starts the control plane: the scheduler's
//! reactor, the task agent service on the gRPC port and the subprocess executor. It then
//! serves the Airflow UI and `/api/v2` on the HTTP port. A home that was never set up is set up
//! first (admin account, keys, UI assets). It then follows the event log until Ctrl-C (or
//! SIGTERM), and stops what it started.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leoflow_api::auth::Auth;
use leoflow_api::{ApiState, Settings, Ui};
use leoflow_authoring::ingest::register;
use leoflow_authoring::python::PythonRuntime;
use leoflow_authoring::{compile_project, project_name};
use leoflow_events::EventStore;
use leoflow_projector::{ReadModels, replay};
use leoflow_scheduler::reactor::Supervision;

use crate::commands::events::human_line;
use crate::commands::setup;
use crate::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::datastore::DatastoreArgs;

/// `leoflow lite`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LiteArgs {
    /// What else to do instead of running Lite.
    #[command(subcommand)]
    action: Option<LiteAction>,
    /// The project directory (holding dag.py and leoflow.yaml).
    #[arg(default_value = ".")]
    project: PathBuf,
    /// The port of the web UI and the API.
    #[arg(long, default_value_t = 8088)]
    port: u16,
    /// The port task agents call (gRPC).
    #[arg(long, default_value_t = 9099)]
    grpc_port: u16,
    /// Serve the API only, without fetching or serving the Airflow UI.
    #[arg(long)]
    no_ui: bool,
    /// Seconds between agent heartbeats.
    #[arg(
        long,
        env = "LEOFLOW_HEARTBEAT_INTERVAL",
        default_value_t = 5.0,
        hide = true
    )]
    heartbeat_interval: f64,
    /// Seconds a try may stay silent before it is failed (and retried by policy).
    #[arg(long, env = "LEOFLOW_HEARTBEAT_TIMEOUT", default_value_t = 60.0)]
    heartbeat_timeout: f64,
    /// Seconds to wait for the DAG file to compile.
    #[arg(long, default_value_t = 30)]
    compile_timeout: u64,
}

/// `leoflow lite <action>`
#[derive(Debug, Subcommand)]
pub enum LiteAction {
    /// Make a new admin password (shown once) and keep only its hash.
    ResetPassword {
        /// Read the new password from this file instead of generating one (also
        /// LEOFLOW_ADMIN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        admin_password_file: Option<PathBuf>,
    },
}

/// Runs Lite until Ctrl-C.
pub async fn run(datastore: &DatastoreArgs, args: LiteArgs) -> Result<ExitCode> {
    if let Some(LiteAction::ResetPassword {
        admin_password_file,
    }) = &args.action
    {
        return setup::reset_password(&datastore.home(), admin_password_file.as_deref());
    }
    let dag_file = args.project.join("dag.py");
    if !dag_file.is_file() {
        bail!(
            "{} is not a Leoflow project: it has no dag.py. Point `leoflow lite` at a project \
             directory, e.g. `leoflow lite dags/hello`.",
            args.project.display()
        );
    }
    if !(args.heartbeat_interval > 0.0 && args.heartbeat_timeout > args.heartbeat_interval) {
        bail!("--heartbeat-timeout must be longer than the heartbeat interval");
    }
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    // Bound first: a taken port fails before anything is started.
    let http_listener = tokio::net::TcpListener::bind(http).await.with_context(|| {
        format!(
            "cannot serve the web UI on {http}: is another Leoflow (or another program) using \
             it? Stop it, or choose another port with --port"
        )
    })?;
    let http = http_listener
        .local_addr()
        .context("reading the HTTP address")?;
    let home = datastore.home();
    let credentials = setup::ensure_credentials(&home, None)?;
    let ui_dirs = if args.no_ui {
        None
    } else {
        setup::ensure_ui(&home).await
    };
    let python = PythonRuntime::detect().await?;
    let project_dir = std::fs::canonicalize(&args.project)?;
    let database = datastore.open().await?;
    let caught_up = replay::catch_up(&database.pool).await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));

    let compiled = compile_project(
        &project_dir,
        &python,
        Duration::from_secs(args.compile_timeout),
    )
    .await;
    let registration = register(&store, &project_name(&project_dir), &compiled, "lite").await?;
    let control_plane = ControlPlane::start(
        store.clone(),
        ControlPlaneOptions {
            grpc: SocketAddr::from((Ipv4Addr::LOCALHOST, args.grpc_port)),
            project_dir: Some(project_dir.clone()),
            python,
            heartbeat_interval: Duration::from_secs_f64(args.heartbeat_interval),
            supervision: Supervision {
                heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout),
                ..Supervision::default()
            },
            connection_key: Some(credentials.connection_key.clone()),
        },
    )
    .await?;
    let ui = match ui_dirs.map(|dirs| Ui::load(dirs, "/")).transpose() {
        Ok(ui) => ui.map(Arc::new),
        Err(error) => {
            eprintln!(
                "warning: the installed Airflow UI is unreadable ({error}); serving the API only"
            );
            None
        }
    };
    let has_ui = ui.is_some();
    let api = ApiState {
        store: store.clone(),
        specs: control_plane.specs(),
        auth: Arc::new(Auth::new(credentials.clone(), Some(home.clone()))),
        connection_key: credentials.connection_key.clone(),
        settings: Arc::new(Settings::lite()),
    };
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_server = tokio::spawn(leoflow_api::serve(
        http_listener,
        leoflow_api::router(api, ui),
        async move {
            let _ = http_stopped.await;
        },
    ));
    let head = store.head().await?;

    println!("Leoflow Lite");
    println!("  project   {}", project_dir.display());
    println!("  database  {}", database.target);
    println!("  event log {head} events; read models caught up ({caught_up} replayed)");
    for dag_id in &registration.parsed {
        println!("  dag       {dag_id}: new version registered");
    }
    for dag_id in &registration.unchanged {
        println!("  dag       {dag_id}: unchanged");
    }
    if let Some(error) = &registration.import_error {
        println!("  import error: {error}");
    }
    if has_ui {
        println!("  web UI    http://{http}/ (user admin)");
    } else {
        println!("  api       http://{http}/api/v2 (without the web UI)");
    }
    println!("  agents    gRPC on {}", control_plane.grpc_address());
    println!("Following the event log; Ctrl-C stops Lite.");

    let mut subscription = store.subscribe(head + 1).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = loop {
        tokio::select! {
            event = subscription.next() => match event {
                Ok(event) => println!("{}", human_line(&event)),
                Err(e) => break Err(e.into()),
            },
            _ = tokio::signal::ctrl_c() => break Ok(ExitCode::SUCCESS),
            _ = terminate.recv() => break Ok(ExitCode::SUCCESS),
        }
    };
    drop(subscription);
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), http_server).await;
    control_plane.stop().await?;
    database.pool.close().await;
    if database.started_cluster
        && let Some(cluster) = database.cluster
    {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
        println!("Stopped the managed Postgres this session started.");
    }
    result
}
