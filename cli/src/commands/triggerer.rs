//! `leoflow triggerer`: a triggerer pod's program (started by the Kubernetes executor's
//! scheduler, not by hand). It calls the scheduler, runs the image's `leoflow.triggerer` and
//! relays between the two until either ends.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use leoflow_executors::agent::{self, AgentError};
use leoflow_executors::triggerer::TriggererConfig;
use leoflow_executors::triggerer_link::{self, PodTriggererConfig};

use super::agent::RuntimeArgs;

/// `leoflow triggerer`
#[derive(Debug, Args)]
pub struct TriggererArgs {
    /// The scheduler's gRPC endpoint (as task agents call it).
    #[arg(long)]
    endpoint: String,
    /// The pod's token (from the environment, so `ps` does not show it).
    #[arg(long, env = triggerer_link::TOKEN_ENV, hide_env_values = true)]
    token: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Relays until the link or the process ends; the exit code says which ended it.
pub async fn run(args: TriggererArgs) -> Result<ExitCode> {
    let runtime = args.runtime;
    let config = PodTriggererConfig {
        endpoint: args.endpoint,
        token: args.token,
        triggerer: TriggererConfig {
            sdk_path: runtime.sdk_path(),
            python: runtime.python.clone(),
            project_dir: runtime.project_dir.clone(),
        },
        retry_budget: runtime.retry_budget(),
        ca_file: runtime.ca_file,
    };
    match triggerer_link::serve(config).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The scheduler ended the link (it no longer needs this pod): nothing failed.
        Err(AgentError::Terminated(why)) if why == triggerer_link::ENDED_BY_SCHEDULER => {
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            agent::note(&format!("triggerer: {error}"));
            Ok(ExitCode::from(3))
        }
    }
}
