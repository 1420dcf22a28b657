//! `leoflow agent`: the task agent of one attempt (started by the executor, not by hand).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use leoflow_executors::agent::{self, AgentConfig, AgentError};
use leoflow_executors::proto::AttemptRef;

/// `leoflow agent`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The control plane's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9099")]
    endpoint: String,
    /// The DAG.
    #[arg(long)]
    dag_id: String,
    /// The dag run.
    #[arg(long)]
    run_id: String,
    /// The task.
    #[arg(long)]
    task_id: String,
    /// The map index (-1 when unmapped).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    map_index: i32,
    /// The try.
    #[arg(long)]
    try_number: i32,
    /// The attempt token (from the environment, so `ps` does not show it).
    #[arg(long, env = "LEOFLOW_ATTEMPT_TOKEN", hide_env_values = true)]
    token: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// The zygote's socket, to fork the Python runner from.
    #[arg(long, env = "LEOFLOW_ZYGOTE")]
    zygote: Option<PathBuf>,
    /// The W3C trace context of the dispatch (set by the control plane when it exports traces).
    #[arg(long, env = "TRACEPARENT", hide = true)]
    trace_parent: Option<String>,
}

/// What an agent and a triggerer pod's program both take: where the SDK's Python and the
/// project are, how the control plane is verified and how long it is waited for.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// The Python interpreter that runs the task (or the triggers).
    #[arg(long, env = "LEOFLOW_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// The directory holding the SDK's `leoflow` package.
    #[arg(long, env = "LEOFLOW_SDK_PATH")]
    sdk_path: Option<PathBuf>,
    /// The project directory the task runs in.
    #[arg(long, env = "LEOFLOW_PROJECT_DIR")]
    pub project_dir: Option<PathBuf>,
    /// The CA (PEM) an `https://` control plane is verified with (default: the system's
    /// trusted roots).
    #[arg(long, env = "LEOFLOW_AGENT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds to keep retrying while the control plane is unreachable.
    #[arg(long, env = "LEOFLOW_AGENT_RETRY_SECONDS", default_value_t = 120)]
    retry_seconds: u64,
}

impl RuntimeArgs {
    /// The SDK's directory: given, else the checkout's.
    pub fn sdk_path(&self) -> PathBuf {
        self.sdk_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(leoflow_authoring::python::CHECKOUT_SDK))
    }

    /// How long the control plane is waited for.
    pub fn retry_budget(&self) -> Duration {
        Duration::from_secs(self.retry_seconds)
    }
}

/// Runs the attempt; the exit code says whether an outcome was reported.
pub async fn run(args: AgentArgs) -> Result<ExitCode> {
    let config = AgentConfig {
        endpoint: args.endpoint,
        attempt: AttemptRef {
            dag_id: args.dag_id,
            run_id: args.run_id,
            task_id: args.task_id,
            map_index: args.map_index,
            try_number: args.try_number,
            attempt_token: args.token,
        },
        sdk_path: args.runtime.sdk_path(),
        retry_budget: args.runtime.retry_budget(),
        python: args.runtime.python,
        project_dir: args.runtime.project_dir,
        zygote: args.zygote,
        trace_parent: args.trace_parent,
        ca_file: args.runtime.ca_file,
    };
    match agent::run(config).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // Stopped on purpose: the try's outcome is already recorded by whoever stopped it.
        Err(AgentError::Terminated(reason)) => {
            agent::note(&format!("agent: stopped: {reason}"));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            agent::note(&format!("agent: {error}"));
            Ok(ExitCode::from(3))
        }
    }
}
