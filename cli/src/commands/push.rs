//! `leoflow push`: ships a compiled project (its dag.json, which holds the DAG source) to a
//! server, which registers it with its provenance; the same artifact twice is no new version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use leoflow_authoring::compile_project;
use reqwest::Method;
use serde_json::{Value, json};

use crate::datastore::DatastoreArgs;
use crate::python_env::project_python;
use crate::remote::{RemoteArgs, needs_server, path_under};

/// `leoflow push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// A project directory (compiled first, as `leoflow compile` does) or a compiled dag.json.
    artifact: PathBuf,
    /// The task image built for it (`registry/name:tag@sha256:…`), recorded with it.
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// The git commit it comes from (default: the project's `git rev-parse HEAD`, if a repo).
    #[arg(long, value_name = "SHA")]
    git_commit: Option<String>,
    /// The tenant to register into, for a caller of every tenant (default: the caller's own).
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Seconds the compile may take.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
}

/// Runs `leoflow push`.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    args: PushArgs,
) -> Result<ExitCode> {
    let Some(server) = remote.remote(datastore)? else {
        return Err(needs_server("push"));
    };
    let (document, dir) = artifact(datastore, &args).await?;
    let project = document["project"]
        .as_str()
        .context("the dag.json names no project")?
        .to_owned();
    let git_commit = args
        .git_commit
        .clone()
        .or_else(|| dir.as_deref().and_then(head_commit));
    let body = json!({"document": document, "image": args.image, "git_commit": git_commit});
    let mut path = path_under("/leoflow/api/projects", &[&project]);
    if let Some(tenant) = &args.tenant {
        path = format!("{path}?tenant={tenant}");
    }
    let pushed: Value = server
        .send(Method::PUT, &path, Some(&body))
        .await?
        .json()
        .await?;
    let names = |field: &str| -> Vec<String> {
        pushed[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for dag_id in names("parsed") {
        println!("{dag_id}: a new version");
    }
    for dag_id in names("unchanged") {
        println!("{dag_id}: unchanged (this artifact is its current version)");
    }
    println!(
        "Pushed project {project} into tenant {} on {}.",
        pushed["tenant"].as_str().unwrap_or_default(),
        server.server()
    );
    Ok(ExitCode::SUCCESS)
}

/// The dag.json to push, and the project directory when one was given.
async fn artifact(datastore: &DatastoreArgs, args: &PushArgs) -> Result<(Value, Option<PathBuf>)> {
    let path = &args.artifact;
    if path.is_dir() {
        let (python, _) = project_python(&datastore.home(), path, true).await?;
        let compiled = compile_project(path, &python, Duration::from_secs(args.timeout))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} does not compile, nothing was pushed: {e}",
                    path.display()
                )
            })?;
        return Ok((compiled.json, Some(path.clone())));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let document: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON (a compiled dag.json is)", path.display()))?;
    if !document.is_object() || document.get("dags").is_none() {
        bail!(
            "{} is not a compiled dag.json: `leoflow compile` writes one",
            path.display()
        );
    }
    Ok((document, path.parent().map(Path::to_path_buf)))
}

/// The commit `dir` is checked out at, if it is in a git repository.
pub(crate) fn head_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}
