//! `leoflow`: the one binary of Leoflow's control plane.

mod agent_tls;
mod commands;
mod control_plane;
mod datastore;
mod logging;
mod output;
mod python_env;
mod remote;
mod stop;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::config_cli::{connections, pools, variables};
use crate::commands::{
    agent, audit, compile, dags, db, demo, events, init, lite, login, postgres, push, runs,
    secrets, server, setup, tasks, tokens, triggerer,
};

/// Leoflow: Airflow's DAGs, API and UI on an event-sourced control plane.
#[derive(Debug, Parser)]
#[command(name = "leoflow", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    datastore: datastore::DatastoreArgs,

    #[command(flatten)]
    remote: remote::RemoteArgs,

    /// How diagnostics go to stderr: readable `text`, or `json` (one object per line, for a log
    /// shipper). `RUST_LOG` filters them (default: info for Leoflow, warn for the rest).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "LEOFLOW_LOG_FORMAT",
        default_value_t = logging::LogFormat::Text
    )]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prepare $LEOFLOW_HOME for Lite: the admin account, keys and the Airflow UI.
    Setup(setup::SetupArgs),
    /// Run Leoflow Lite on this machine for a project directory.
    Lite(lite::LiteArgs),
    /// Compile a project (dag.py + leoflow.yaml) into dag.json.
    Compile(compile::CompileArgs),
    /// Create a new project with a working example DAG.
    Init(init::InitArgs),
    /// List, show, trigger, pause, unpause or delete DAGs.
    #[command(subcommand)]
    Dags(dags::DagsCommand),
    /// A DAG's runs, and one run with its task instances (against a server).
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Clear, mark or cancel task instances; print a try's log.
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
    /// Start, stop or inspect the managed Postgres cluster under $LEOFLOW_HOME.
    #[command(subcommand)]
    Postgres(postgres::PostgresCommand),
    /// Apply or reset the database schema.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Read, follow and replay the event log.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Who did what: the events people and machines caused, by actor, tenant, resource,
    /// action and time.
    Audit(audit::AuditArgs),
    /// Manage the master key of secrets at rest.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Issue, list and revoke API tokens for machines (CI, GitOps).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Run Leoflow Demo: Pro's shape on one host (ports 8080/9091/9090, its own database and
    /// state), serving the example projects pushed as frozen artifacts.
    Demo(demo::DemoArgs),
    /// Run Leoflow Pro's control plane from a configuration (check it with --check-config).
    Server(Box<server::ServerArgs>),
    /// Ship a compiled project (or a dag.json) to a server, with its provenance.
    Push(push::PushArgs),
    /// Sign in to a server; later commands that can run against one use it.
    Login(login::LoginArgs),
    /// Forget the token of a profile (default: the current one).
    Logout,
    /// List, get, set, delete, import and export Variables on a server (after `leoflow login`).
    Variables(variables::VariablesArgs),
    /// List, get, set, delete, import and export Connections on a server (after `leoflow
    /// login`).
    Connections(connections::ConnectionsArgs),
    /// List, get, set, delete, import and export Pools on a server (after `leoflow login`).
    Pools(pools::PoolsArgs),
    /// Run one task attempt (the executor starts this; not meant to be run by hand).
    #[command(hide = true)]
    Agent(agent::AgentArgs),
    /// Run a triggerer pod's triggers (the Kubernetes executor starts this; not meant to be
    /// run by hand).
    #[command(hide = true)]
    Triggerer(triggerer::TriggererArgs),
}

/// Where Leoflow keeps its state: `$LEOFLOW_HOME`, else `~/.leoflow`.
pub fn leoflow_home(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".leoflow")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Diagnostics are set up inside the runtime: the trace exporter runs on it.
    let _runtime_context = runtime.enter();
    let telemetry = match &cli.command {
        // The server sets up its own once its configuration (with `otlp_endpoint`) is read.
        Command::Server(_) => None,
        command => match init_logging(cli.log_format, command) {
            Ok(telemetry) => Some(telemetry),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    let log_format = cli.log_format;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Setup(args) => setup::run(&cli.datastore, args).await,
            Command::Lite(args) => lite::run(&cli.datastore, args).await,
            Command::Compile(args) => compile::run(&cli.datastore, args).await,
            Command::Init(args) => init::run(args),
            Command::Dags(cmd) => dags::run(&cli.datastore, &cli.remote, cmd).await,
            Command::Runs(cmd) => runs::run(&cli.datastore, &cli.remote, cmd).await,
            Command::Tasks(cmd) => tasks::run(&cli.datastore, &cli.remote, cmd).await,
            Command::Postgres(cmd) => postgres::run(&cli.datastore, cmd).await,
            Command::Db(cmd) => db::run(&cli.datastore, cmd).await,
            Command::Events(cmd) => events::run(&cli.datastore, &cli.remote, cmd).await,
            Command::Login(args) => {
                login::login(&cli.datastore, cli.remote.profile.as_deref(), args).await
            }
            Command::Logout => login::logout(&cli.datastore, cli.remote.profile.as_deref()),
            Command::Push(args) => push::run(&cli.datastore, &cli.remote, args).await,
            Command::Variables(args) => variables::run(&cli.datastore, &cli.remote, args).await,
            Command::Connections(args) => connections::run(&cli.datastore, &cli.remote, args).await,
            Command::Pools(args) => pools::run(&cli.datastore, &cli.remote, args).await,
            Command::Audit(args) => audit::run(&cli.datastore, &cli.remote, args).await,
            Command::Secrets(cmd) => secrets::run(&cli.datastore, cmd).await,
            Command::Tokens(cmd) => tokens::run(&cli.datastore, cmd).await,
            Command::Server(args) => server::run(&cli.datastore, *args, log_format).await,
            Command::Demo(args) => demo::run(&cli.datastore, args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Triggerer(args) => triggerer::run(args).await,
        }
    });
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            remote::Refused::exit_code(&e)
        }
    }
}

/// Diagnostics of every command but the server: an agent reports warnings only; Lite and
/// agents export spans when `LEOFLOW_OTLP_ENDPOINT` names a collector.
fn init_logging(
    format: logging::LogFormat,
    command: &Command,
) -> anyhow::Result<logging::Telemetry> {
    let (default_filter, service) = match command {
        Command::Agent(_) => (Some(logging::AGENT_FILTER), "leoflow-agent"),
        Command::Triggerer(_) => (None, "leoflow-triggerer"),
        Command::Lite(_) => (None, "leoflow-lite"),
        _ => (None, "leoflow"),
    };
    let endpoint = std::env::var(logging::OTLP_ENDPOINT_ENV)
        .ok()
        .filter(|e| !e.trim().is_empty());
    logging::init(format, default_filter, endpoint.as_deref(), service)
}
