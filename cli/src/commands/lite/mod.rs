//! `leoflow lite`: the control plane on one machine.
//!
//! It brings up the datastore (managed Postgres unless told otherwise), the schema and the read
//! models, compiles and registers the project — or each project of a folder — and starts the
//! control plane: the scheduler's reactor, the task agent service on the gRPC port and the
//! subprocess executor. It then serves the Airflow UI and `/api/v2` on the HTTP port. A home that was never set up is set up
//! first (admin account, keys, UI assets). It then follows the event log until Ctrl-C (or
//! SIGTERM), and stops what it started.
//!
//! Its other parts: [`projects`] (the project, or the projects of a folder: finding, compiling
//! and registering them), [`executors`] (an executor per project of a folder), [`reload`] (hot
//! reload on save), [`lock`] (one Lite per home), [`provision`] (what the host has), [`backup`]
//! (backup and restore of a home) and [`watchdog`] (starting a managed Postgres that died
//! again).

mod backup;
pub(crate) mod dag_test;
mod executors;
mod lock;
mod projects;
pub(crate) mod provision;
mod reload;
mod watchdog;

pub use executors::ProjectExecutors;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leoflow_api::assets::UiDirs;
use leoflow_api::auth::Auth;
use leoflow_api::credentials::Credentials;
use leoflow_api::editor::installed_monaco;
use leoflow_api::{ApiState, Settings, Ui};
use leoflow_events::EventStore;
use leoflow_postgres::{Database, Datastore, ManagedCluster};
use leoflow_projector::{ReadModels, replay};
use leoflow_scheduler::reactor::Supervision;
use leoflow_secrets::Vault;

use crate::commands::events::human_line;
use crate::commands::setup;
use crate::control_plane::{ControlPlane, ControlPlaneOptions, ExecutorChoice};
use crate::datastore::DatastoreArgs;
use crate::python_env::{lite_python, managed_venv, note_to, venv_python};
use crate::stop::Stop;
use projects::{Layout, Loaded, Projects};

/// How tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorArg {
    /// Each try is a process on this machine (the default).
    Subprocess,
    /// Each try is a pod in the k3d cluster `leoflow-dev`.
    K3d,
}

/// `leoflow lite`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LiteArgs {
    /// What else to do instead of running Lite.
    #[command(subcommand)]
    action: Option<LiteAction>,
    /// The project directory (holding its DAG file — dag.py, or its single *.py file — and
    /// leoflow.yaml), or a folder of projects (every directory under it with a DAG file).
    #[arg(default_value = ".")]
    project: PathBuf,
    /// The port of the web UI and the API; the gRPC and metrics ports follow it (9099 and 9098
    /// for 8088) unless given.
    #[arg(long, default_value_t = 8088)]
    port: u16,
    /// The port task agents call (gRPC); default --port + 1011.
    #[arg(long)]
    grpc_port: Option<u16>,
    /// The port of Prometheus metrics (`/metrics`); default --port + 1010.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// The address to listen on. Anything but a loopback address exposes Lite to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// How tasks run.
    #[arg(long, value_enum, default_value_t = ExecutorArg::Subprocess)]
    executor: ExecutorArg,
    /// With `--executor k3d`: the image tries run in (it needs Python ≥ 3.10 as `python3`).
    #[arg(long, default_value = provision::POD_IMAGE)]
    pod_image: String,
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
    /// The largest XCom value a task may push, in bytes of JSON (a larger one fails its task).
    /// At most 48 MiB: the agent protocol's messages are 64 MiB at most.
    #[arg(
        long,
        env = "LEOFLOW_MAX_XCOM_BYTES",
        default_value_t = leoflow_scheduler::agents::DEFAULT_MAX_XCOM_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(1..=48 << 20)
    )]
    max_xcom_bytes: u64,
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
    /// Check this host for what Lite (and its pod executor) needs, and say how to fix gaps.
    Provision,
    /// Save the database, the config and the project's files into one archive.
    Backup(backup::BackupArgs),
    /// Restore an archive made by `leoflow lite backup` (refuses a newer schema).
    Restore(backup::RestoreArgs),
}

/// The ports Lite listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    http: u16,
    grpc: u16,
    metrics: u16,
}

impl Ports {
    /// `--port` shifts all three; 0 (any free port) stays 0 for each.
    fn from_args(args: &LiteArgs) -> Result<Self> {
        let follow = |offset: u16, what: &str| -> Result<u16> {
            if args.port == 0 {
                return Ok(0);
            }
            args.port.checked_add(offset).with_context(|| {
                format!(
                    "--port {} leaves no room for the {what} port ({offset} above it): choose a \
                     lower --port",
                    args.port
                )
            })
        };
        Ok(Self {
            http: args.port,
            grpc: args.grpc_port.map_or_else(|| follow(1011, "gRPC"), Ok)?,
            metrics: args
                .metrics_port
                .map_or_else(|| follow(1010, "metrics"), Ok)?,
        })
    }
}

/// Binds one of Lite's ports, or says who might hold it and what to do.
async fn bind(host: IpAddr, port: u16, what: &str) -> Result<tokio::net::TcpListener> {
    let address = SocketAddr::new(host, port);
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!(
                "cannot serve {what} on {address}: the port is taken (another Leoflow Lite, or \
             another program). Stop that program, or move Lite's ports with --port (the gRPC \
             and metrics ports follow it)"
            )
        })
}

/// Runs Lite until Ctrl-C.
pub async fn run(datastore: &DatastoreArgs, args: LiteArgs) -> Result<ExitCode> {
    let home = datastore.home();
    if let Some(action) = &args.action {
        return run_action(datastore, &home, action).await;
    }
    let (ports, layout) = check_args(&args)?;
    let executor = match args.executor {
        ExecutorArg::Subprocess => ExecutorChoice::Subprocess,
        ExecutorArg::K3d => provision::k3d_executor(&args.pod_image).await?,
    };
    // Handlers first: a Ctrl-C or SIGTERM during start-up is handled once started, never the
    // default death that would leave the managed Postgres running.
    let mut stop = Stop::install()?;
    // One Lite per home, decided before anything is started.
    let _lock = lock::lock_home(&home)?;
    let listeners = Listeners::bind(&args, ports, &executor).await?;
    let mut prepared = prepare(datastore, &home, &args, layout).await?;
    let opened = open_datastore(datastore, &home, &prepared.store_choice).await?;
    let store = opened.store.clone();
    let loaded = prepared.projects.load_all(&store).await?;
    let executor = match prepared.projects.executors() {
        Some(projects) => ExecutorChoice::Projects(projects),
        None => executor,
    };
    let executor_name = executor.config_name();
    let control_plane = ControlPlane::start(
        store.clone(),
        listeners.grpc,
        control_plane_options(&args, &prepared, executor),
    )
    .await?;
    let servers = Servers::start(
        &home,
        &prepared,
        &store,
        &control_plane,
        executor_name,
        listeners.http,
        listeners.metrics,
    )?;
    let head = store.head().await?;
    let summary = prepared.projects.summary();
    let root = prepared.projects.root().to_owned();
    let _watcher = reload::watch(prepared.projects, store.clone())
        .with_context(|| format!("watching {} for changes", root.display()))?;

    print_banner(&Banner {
        summary: &summary,
        database: &opened.database.target,
        head,
        caught_up: opened.caught_up,
        loaded: &loaded,
        servers: &servers,
        grpc: control_plane.grpc_address(),
    });
    let mut control_plane = control_plane;
    let result = follow(&store, head, &mut control_plane, &mut stop).await;
    shut_down(opened, servers, control_plane).await?;
    result
}

/// `leoflow lite <action>`: what runs instead of Lite.
async fn run_action(
    datastore: &DatastoreArgs,
    home: &Path,
    action: &LiteAction,
) -> Result<ExitCode> {
    match action {
        LiteAction::ResetPassword {
            admin_password_file,
        } => setup::reset_password(home, admin_password_file.as_deref()),
        LiteAction::Provision => provision::run(home).await,
        LiteAction::Backup(backup) => backup::backup(datastore, backup).await,
        LiteAction::Restore(restore) => backup::restore(datastore, restore).await,
    }
}

/// Refuses, before anything starts, a directory that neither is nor holds a project and
/// inconsistent flags; returns the ports to bind and what the directory is.
fn check_args(args: &LiteArgs) -> Result<(Ports, Layout)> {
    let layout = Layout::of(&args.project)?;
    if layout == Layout::Folder && args.executor == ExecutorArg::K3d {
        bail!(
            "{} is a folder of projects, and --executor k3d runs the tasks of one project: run \
             Lite on a project directory with --executor k3d, or on the folder without it.",
            args.project.display()
        );
    }
    if !(args.heartbeat_interval > 0.0 && args.heartbeat_timeout > args.heartbeat_interval) {
        bail!("--heartbeat-timeout must be longer than the heartbeat interval");
    }
    Ok((Ports::from_args(args)?, layout))
}

/// Lite's three ports, bound.
struct Listeners {
    http: tokio::net::TcpListener,
    metrics: tokio::net::TcpListener,
    grpc: tokio::net::TcpListener,
}

impl Listeners {
    /// The ports are bound before anything is started: a taken one fails with nothing to undo.
    async fn bind(args: &LiteArgs, ports: Ports, executor: &ExecutorChoice) -> Result<Self> {
        let http = bind(args.host, ports.http, "the web UI").await?;
        let metrics = bind(args.host, ports.metrics, "metrics").await?;
        // Pods call the gRPC port through the container network's gateway, not loopback.
        let grpc_host = match executor {
            ExecutorChoice::Pods { .. } if args.host.is_loopback() => {
                tracing::info!(
                    "with --executor k3d the task agents' gRPC port listens on every \
                     interface (pods reach it through the container network); agents must \
                     present their attempt's token."
                );
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            }
            _ => args.host,
        };
        let grpc = bind(grpc_host, ports.grpc, "the task agents' gRPC").await?;
        if !args.host.is_loopback() {
            tracing::warn!(
                "listening on {}: anyone who can reach this machine can reach Lite's login \
                 page, API and agent port. Use the default (127.0.0.1) unless you mean it.",
                args.host
            );
        }
        Ok(Self {
            http,
            metrics,
            grpc,
        })
    }
}

/// What Lite needs ready before it opens the database: Python and the projects (with their
/// venvs), the admin account and keys, the UI's files.
struct Prepared {
    projects: Projects,
    store_choice: Datastore,
    credentials: Credentials,
    ui_dirs: Option<UiDirs>,
}

/// Python and the datastore are checked before anything is written: without them there is
/// nothing to set up for. A home never set up is set up first.
async fn prepare(
    datastore: &DatastoreArgs,
    home: &Path,
    args: &LiteArgs,
    layout: Layout,
) -> Result<Prepared> {
    if std::env::var_os("LEOFLOW_PYTHON").is_none() && !venv_python(&managed_venv(home)).is_file() {
        setup::first_start(home, !args.no_ui).await?;
    }
    let note = note_to(false);
    let python = lite_python(home, &note).await?;
    let store_choice = datastore.lite_datastore()?;
    datastore.preflight(&store_choice)?;
    let credentials = setup::ensure_credentials(home, None)?;
    let ui_dirs = if args.no_ui {
        None
    } else {
        setup::ensure_ui(home).await
    };
    let root = std::fs::canonicalize(&args.project)?;
    // A backup takes the files of the project, or of the folder of projects.
    backup::remember_project(home, &root);
    let compile_timeout = Duration::from_secs(args.compile_timeout);
    let projects = Projects::open(home, root, layout, python, compile_timeout).await?;
    Ok(Prepared {
        projects,
        store_choice,
        credentials,
        ui_dirs,
    })
}

/// The database Lite runs on, migrated, its read models caught up.
struct Opened {
    database: Database,
    store: EventStore,
    caught_up: u64,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    owned_cluster: Option<OwnedCluster>,
}

/// Opens and migrates the database (starting the managed Postgres when it is the datastore),
/// watches a managed server, claims one this Lite started and catches the read models up.
async fn open_datastore(
    datastore: &DatastoreArgs,
    home: &Path,
    store_choice: &Datastore,
) -> Result<Opened> {
    let mut database = datastore.open_for_lite(store_choice).await?;
    // Whoever started it, Lite's managed Postgres is Lite's database: one that dies is started
    // again while Lite runs.
    let watchdog = database.cluster.clone().map(watchdog::spawn);
    let owned_cluster = OwnedCluster::claim(home, &mut database)?;
    let caught_up = replay::catch_up(&database.pool).await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));
    Ok(Opened {
        database,
        store,
        caught_up,
        watchdog,
        owned_cluster,
    })
}

/// The control plane as Lite's flags and the prepared home configure it.
fn control_plane_options(
    args: &LiteArgs,
    prepared: &Prepared,
    executor: ExecutorChoice,
) -> ControlPlaneOptions {
    // On a folder, each project's executor has its own directory and Python.
    let project_dir = match &executor {
        ExecutorChoice::Projects(_) => None,
        _ => Some(prepared.projects.root().to_owned()),
    };
    ControlPlaneOptions {
        project_dir,
        python: prepared.projects.tasks_python(),
        heartbeat_interval: Duration::from_secs_f64(args.heartbeat_interval),
        max_xcom_bytes: args.max_xcom_bytes as usize,
        supervision: Supervision {
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout),
            ..Supervision::default()
        },
        master_keys: Some(prepared.credentials.master_keys()),
        executor,
        liveness: None,
        log_retention: None,
        dispatch: None,
        advertise_grpc: None,
        otlp_endpoint: std::env::var(crate::logging::OTLP_ENDPOINT_ENV)
            .ok()
            .filter(|e| !e.trim().is_empty()),
        xcom_values: Default::default(),
        agent_tls: None,
        project_reloads: Some(prepared.projects.registrations()),
    }
}

/// The HTTP server (API and UI) and the metrics server.
struct Servers {
    http: SocketAddr,
    metrics: SocketAddr,
    has_ui: bool,
    http_stop: tokio::sync::oneshot::Sender<()>,
    http_server: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics_server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Servers {
    fn start(
        home: &Path,
        prepared: &Prepared,
        store: &EventStore,
        control_plane: &ControlPlane,
        executor: &'static str,
        http_listener: tokio::net::TcpListener,
        metrics_listener: tokio::net::TcpListener,
    ) -> Result<Self> {
        let http = http_listener
            .local_addr()
            .context("reading the HTTP address")?;
        let ui = match prepared
            .ui_dirs
            .clone()
            .map(|dirs| Ui::load(dirs, "/"))
            .transpose()
        {
            Ok(ui) => ui.map(Arc::new),
            Err(error) => {
                tracing::warn!(
                    "the installed Airflow UI is unreadable ({error}); serving the API only"
                );
                None
            }
        };
        let has_ui = ui.is_some();
        let credentials = &prepared.credentials;
        let api = ApiState {
            store: store.clone(),
            specs: control_plane.specs(),
            auth: Arc::new(Auth::new(credentials.clone(), Some(home.to_owned()))),
            vault: Vault::new(store.pool().clone(), credentials.master_keys()),
            settings: Arc::new(Settings {
                // The editor edits the project's files, or those of the folder's projects.
                project_dir: Some(prepared.projects.root().to_owned()),
                editor_assets: installed_monaco(&setup::editor_dir(home)),
                executor,
                ..Settings::lite()
            }),
            xcom_values: Default::default(),
            oidc: None,
        };
        let metrics = metrics_listener
            .local_addr()
            .context("reading the metrics address")?;
        let metrics_server = tokio::spawn(leoflow_api::serve(
            metrics_listener,
            leoflow_api::metrics::router(leoflow_api::metrics::MetricsState {
                store: api.store.clone(),
                settings: api.settings.clone(),
                scheduler: Some(control_plane.metrics()),
                readiness: None,
            }),
            std::future::pending(),
        ));
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http_server = tokio::spawn(leoflow_api::serve(
            http_listener,
            leoflow_api::router(api, ui),
            async move {
                let _ = http_stopped.await;
            },
        ));
        Ok(Self {
            http,
            metrics,
            has_ui,
            http_stop,
            http_server,
            metrics_server,
        })
    }

    /// Lets the HTTP server finish its requests (5 s at most); metrics just stop.
    async fn stop(self) {
        let _ = self.http_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http_server).await;
        self.metrics_server.abort();
    }
}

/// What Lite's banner says.
struct Banner<'a> {
    /// The line naming the project, or the folder and its projects.
    summary: &'a str,
    database: &'a str,
    head: i64,
    caught_up: u64,
    loaded: &'a [Loaded],
    servers: &'a Servers,
    grpc: SocketAddr,
}

/// Prints the banner on stdout; its last line tells scripts (and the tests) Lite is ready.
fn print_banner(banner: &Banner) {
    let Banner {
        summary,
        database,
        head,
        caught_up,
        loaded,
        servers,
        grpc,
    } = banner;
    println!("Leoflow Lite");
    println!("{summary}");
    println!("  database  {database}");
    println!("  event log {head} events; read models caught up ({caught_up} replayed)");
    for project in loaded.iter() {
        projects::print_loaded(project);
    }
    let http = servers.http;
    if servers.has_ui {
        println!("  web UI    http://{http}/ (user admin)");
    } else {
        println!("  api       http://{http}/api/v2 (without the web UI)");
    }
    println!("  agents    gRPC on {grpc}");
    println!("  metrics   http://{}/metrics", servers.metrics);
    println!("Following the event log; Ctrl-C stops Lite.");
}

/// Prints each new event of the log until Lite is asked to stop (success) or its scheduler
/// fails (failure).
async fn follow(
    store: &EventStore,
    head: i64,
    control_plane: &mut ControlPlane,
    stop: &mut Stop,
) -> Result<ExitCode> {
    let mut subscription = store.subscribe(head + 1).await?;
    let mut log_failures = 0u32;
    loop {
        tokio::select! {
            event = subscription.next() => match event {
                Ok(event) => {
                    log_failures = 0;
                    println!("{}", human_line(&event));
                }
                // The database is away (restarting, a network blip): the scheduler and the
                // agents ride it out, and so does this follower, from where it stopped.
                Err(leoflow_events::StoreError::Database(e)) => {
                    log_failures += 1;
                    if log_failures == 1 {
                        tracing::warn!("the event log cannot be read ({e}); retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            },
            error = control_plane.reactor_failure() => {
                tracing::error!("{error:#}");
                return Ok(ExitCode::FAILURE);
            }
            _ = stop.requested() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Stops what Lite started, the servers before the control plane and the database last (and
/// the managed Postgres, if this Lite started it).
async fn shut_down(opened: Opened, servers: Servers, control_plane: ControlPlane) -> Result<()> {
    if let Some(watchdog) = opened.watchdog {
        watchdog.abort();
    }
    servers.stop().await;
    control_plane.stop().await?;
    opened.database.pool.close().await;
    if let Some(owned) = opened.owned_cluster {
        tokio::task::spawn_blocking(move || owned.stop()).await??;
        println!("Stopped the managed Postgres this Lite started.");
    }
    Ok(())
}

/// The managed Postgres this home's Lite started: stopped with Lite — by [`OwnedCluster::stop`]
/// on a clean stop, by `Drop` when start-up fails half-way — even when the Lite that started
/// it was killed before it could (a marker file outlives it). A cluster started by `leoflow
/// postgres start` is not claimed and keeps running.
struct OwnedCluster {
    cluster: Option<ManagedCluster>,
    marker: PathBuf,
}

impl OwnedCluster {
    fn claim(home: &Path, database: &mut Database) -> Result<Option<Self>> {
        let marker = home.join("postgres-started-by-lite");
        if !(database.started_cluster || marker.exists()) {
            return Ok(None);
        }
        let Some(cluster) = database.cluster.take() else {
            return Ok(None);
        };
        std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
        Ok(Some(Self {
            cluster: Some(cluster),
            marker,
        }))
    }

    /// Stops the cluster (blocking: pg_ctl waits for it).
    fn stop(mut self) -> Result<()> {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop()?;
            let _ = std::fs::remove_file(&self.marker);
        }
        Ok(())
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            eprintln!("Lite did not start; stopping the managed Postgres it started.");
            if cluster.stop().is_ok() {
                let _ = std::fs::remove_file(&self.marker);
            }
        }
    }
}
