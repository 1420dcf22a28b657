//! `leoflow init`: a new project with a DAG that runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use leoflow_authoring::project_name;

/// `leoflow init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the project in (created if missing).
    path: PathBuf,
}

/// Runs `leoflow init`.
pub fn run(args: InitArgs) -> Result<ExitCode> {
    let dag_file = args.path.join("dag.py");
    if dag_file.exists() {
        bail!(
            "{} already exists; `leoflow init` does not overwrite a project",
            dag_file.display()
        );
    }
    if let Ok(existing) = leoflow_authoring::dag_file(&args.path) {
        bail!(
            "{} is already a project (its DAG file is {}); `leoflow init` does not overwrite a \
             project",
            args.path.display(),
            existing.display()
        );
    }
    let dag_id: String = project_name(&args.path)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::create_dir_all(&args.path)
        .with_context(|| format!("creating {}", args.path.display()))?;
    std::fs::write(&dag_file, DAG_TEMPLATE.replace("{dag_id}", &dag_id))
        .with_context(|| format!("writing {}", dag_file.display()))?;
    let config = args.path.join("leoflow.yaml");
    if !config.exists() {
        std::fs::write(&config, CONFIG_TEMPLATE.replace("{dag_id}", &dag_id))
            .with_context(|| format!("writing {}", config.display()))?;
    }
    println!(
        "Created {} and {}. Compile it with `leoflow compile {}`.",
        dag_file.display(),
        config.display(),
        args.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

const DAG_TEMPLATE: &str = r#""""{dag_id}: a starting point. Written exactly as for Airflow 3.2."""

import datetime

from airflow.sdk import DAG, task
from airflow.providers.standard.operators.bash import BashOperator

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    tags=["example"],
):

    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    report = BashOperator(task_id="report", bash_command="echo 'done on {{ ds }}'")

    total(extract()) >> report
"#;

const CONFIG_TEMPLATE: &str = "# Project settings; what is set here wins over dag.py.\n\
dag_id: {dag_id}\n\
description: A starting point.\n\
defaults:\n  retries: 1\n  retry_delay: 30s\n";
