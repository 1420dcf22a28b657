//! `leoflow demo`: Leoflow Pro's shape on one host, the contributor's reference environment.
//! It is `leoflow server` with every role, on the Pro ports (8080 / 9091 / 9090), on a database
//! `leoflow` of its own (a managed cluster under `$LEOFLOW_HOME/demo` unless a URL is given),
//! with the admin's JWT login and the instance name "Leoflow". It takes DAGs only from pushes:
//! at first start it pushes the example projects as frozen artifacts, and it never watches a
//! file. It runs beside a Lite on the same host: its ports, database and state are its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use leoflow_api::assets::UiDirs;
use leoflow_authoring::ingest::{Origin, register_from};
use leoflow_authoring::{DEFAULT_TIMEOUT, compile_project, project_name};
use leoflow_events::catalog::Provenance;
use leoflow_events::{DEFAULT_TENANT, EventStore, Metadata};
use leoflow_postgres::{Database, Datastore, PostgresChoice, migrate};
use leoflow_projector::ReadModels;

use super::lite::provision::{POD_IMAGE, k3d_pods, pod_checks};
use super::server::config::ServerConfig;
use super::server::{ServerSecrets, serve_with};
use super::setup::ensure_credentials;
use crate::control_plane::ExecutorChoice;
use crate::datastore::DatastoreArgs;
use crate::python_env::project_python;

/// The database Demo keeps its state in (Lite's is `leoflow_dev`).
pub const DATABASE: &str = "leoflow";

/// The k3d cluster whose answer would give Demo the pod executor.
const K3D_CLUSTER: &str = "leoflow-demo";

/// What marks the examples as pushed (they are pushed once, at the first start).
const EXAMPLES_PUSHED: &str = "examples-pushed";

/// `leoflow demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The API and UI port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// The agents' gRPC port.
    #[arg(long, default_value_t = 9091)]
    grpc_port: u16,
    /// The metrics and probes port.
    #[arg(long, default_value_t = 9090)]
    metrics_port: u16,
    /// The admin's password, read at the first start (default: one is made and shown once).
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// The projects pushed at the first start (default: this checkout's `dags/`).
    #[arg(long, value_name = "DIR")]
    examples: Option<PathBuf>,
}

/// The checkout's example projects.
const CHECKOUT_EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dags");

/// Runs Demo until Ctrl-C or SIGTERM.
pub async fn run(datastore: &DatastoreArgs, args: DemoArgs) -> Result<ExitCode> {
    let lite_home = datastore.home();
    let home = lite_home.join("demo");
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    println!("Leoflow Demo — state in {}", home.display());
    let database = open_database(datastore, &home).await?;
    println!("  database  {}", database.target);
    let credentials = ensure_credentials(&home, args.admin_password_file.as_deref())?;
    if !home.join(EXAMPLES_PUSHED).exists() {
        let examples = args
            .examples
            .clone()
            .unwrap_or_else(|| PathBuf::from(CHECKOUT_EXAMPLES));
        push_examples(&lite_home, &database, &examples).await?;
        std::fs::write(home.join(EXAMPLES_PUSHED), "")?;
    }
    let (executor, note) = demo_executor().await;
    println!("  executor  {note}");
    // The UI `leoflow setup` installed for Lite serves Demo too.
    let ui = lite_home.join("ui");
    let ui_dir = UiDirs::installed(&ui).map(|_| ui);
    if ui_dir.is_none() {
        println!("  ui        not installed: `leoflow setup` installs it; serving the API only");
    }
    let ports = [args.http_port, args.grpc_port, args.metrics_port];
    let config = ServerConfig::one_host(&database.target, ports, ui_dir);
    serve_with(
        config,
        ServerSecrets::of(credentials),
        Some(database.pool),
        executor,
    )
    .await
}

/// Demo's database, migrated: the URL given, else the managed cluster under Demo's home.
async fn open_database(datastore: &DatastoreArgs, home: &Path) -> Result<Database> {
    let store = match &datastore.database_url {
        Some(url) => Datastore::choose(Some(PostgresChoice::Url), Some(url.clone()), home)?,
        None => Datastore::choose(Some(PostgresChoice::Managed), None, home)?,
    };
    let database = store.open(DATABASE).await?;
    migrate::migrate(&database.pool)
        .await
        .with_context(|| format!("database {}", database.target))?;
    Ok(database)
}

/// Compiles each project under `examples` and registers it as a pushed artifact (its git
/// commit as provenance). A project that does not compile is recorded as an import error, as
/// a push of it would be refused: the others go on.
async fn push_examples(lite_home: &Path, database: &Database, examples: &Path) -> Result<()> {
    let store =
        EventStore::new(database.pool.clone()).with_projection(std::sync::Arc::new(ReadModels));
    let mut projects: Vec<PathBuf> = std::fs::read_dir(examples)
        .with_context(|| format!("cannot read the example projects in {}", examples.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| leoflow_authoring::is_project(dir))
        .collect();
    projects.sort();
    let origin = Origin {
        metadata: Metadata::actor("demo"),
        provenance: Some(Provenance {
            image: None,
            git_commit: super::push::head_commit(examples),
        }),
    };
    for project in &projects {
        let (python, _) = project_python(lite_home, project, true).await?;
        let compiled = compile_project(project, &python, DEFAULT_TIMEOUT).await;
        let name = project_name(project);
        let registration = register_from(&store, &name, DEFAULT_TENANT, &compiled, &origin).await?;
        match registration.import_error {
            Some(error) => println!("  examples  {name}: does not compile: {error}"),
            None => println!(
                "  examples  {name}: pushed ({})",
                registration.parsed.join(", ")
            ),
        }
    }
    Ok(())
}

/// Which executor runs tasks, said at start: subprocesses on this host. Pro's pod executor is
/// not in `leoflow server` yet, so a k3d cluster `leoflow-demo` is named but not used.
/// Pods in the k3d cluster `leoflow-demo` when it answers (with Docker, k3d and kubectl),
/// else subprocesses (`None`: the server's own); and the line that says which, and why.
async fn demo_executor() -> (Option<ExecutorChoice>, String) {
    let missing: Vec<String> = pod_checks(K3D_CLUSTER)
        .await
        .into_iter()
        .filter_map(|check| {
            check
                .found
                .err()
                .map(|why| format!("{}: {why}", check.name))
        })
        .collect();
    match missing.first() {
        None => (
            Some(k3d_pods(K3D_CLUSTER, POD_IMAGE)),
            format!("pods in the k3d cluster {K3D_CLUSTER} (image {POD_IMAGE})"),
        ),
        Some(why) => (
            None,
            format!(
                "subprocesses on this host (no k3d cluster {K3D_CLUSTER} to run pods in: {why}; \
                 `k3d cluster create {K3D_CLUSTER} --volume \"$HOME:$HOME@all\"` makes one)"
            ),
        ),
    }
}
