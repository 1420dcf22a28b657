//! `leoflow compile`: a project into dag.json (and optionally an image, and the control plane).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use leoflow_authoring::ingest::{Origin, register_from};
use leoflow_authoring::{ProjectDocument, compile_project, project_name};
use leoflow_events::Metadata;
use leoflow_events::catalog::Provenance;
use leoflow_events::{DEFAULT_TENANT, EventStore, check_tenant};
use leoflow_postgres::datastore::docker_engine_answers;
use leoflow_projector::ReadModels;

use crate::datastore::DatastoreArgs;
use crate::python_env::project_python;

/// `leoflow compile`
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The project directory (holding its DAG file — dag.py, the file leoflow.yaml's `dag_file`
    /// names, or its single *.py file — and optionally leoflow.yaml).
    project: PathBuf,
    /// Where to write the document (`-` for standard output). Default: <project>/dag.json.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds dag.py may take to parse before it is stopped.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
    /// Also write <project>/Dockerfile.leoflow for the Pro image, tagged NAME.
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Build the image (needs a container builder that answers).
    #[arg(long, requires = "image")]
    build: bool,
    /// The task image the project's image builds on (docker/task.Dockerfile). Default:
    /// leoflow/leoflow-task:<this version>-python<the project's python_version>.
    #[arg(long, requires = "image", value_name = "REF")]
    base_image: Option<String>,
    /// Register the result in the control plane's database (new DAG versions or the import error).
    #[arg(long)]
    register: bool,
    /// The tenant the registered DAGs belong to. Default: `default`.
    #[arg(long, requires = "register", value_name = "TENANT", value_parser = tenant)]
    tenant: Option<String>,
}

/// `--tenant`'s value, refused with `check_tenant`'s reason before anything runs.
fn tenant(name: &str) -> Result<String, String> {
    check_tenant(name).map(|()| name.to_owned())
}

/// Runs `leoflow compile`.
pub async fn run(datastore: &DatastoreArgs, args: CompileArgs) -> Result<ExitCode> {
    // The Python Lite would use for this project (the managed venv `leoflow setup` made).
    let (python, _) = project_python(&datastore.home(), &args.project, true).await?;
    let compiled = compile_project(&args.project, &python, Duration::from_secs(args.timeout)).await;
    if args.register {
        let database = datastore.open().await?;
        let store =
            EventStore::new(database.pool.clone()).with_projection(std::sync::Arc::new(ReadModels));
        let tenant = args.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
        let project = project_name(&args.project);
        // With --image, the registered versions run in that image on Pro, as a push's do.
        let origin = Origin {
            metadata: Metadata::actor("cli"),
            provenance: args.image.as_ref().map(|image| Provenance {
                image: Some(image.clone()),
                git_commit: super::push::head_commit(&args.project),
            }),
        };
        let registration = register_from(&store, &project, tenant, &compiled, &origin).await?;
        for dag_id in &registration.parsed {
            eprintln!("registered a new version of {dag_id}");
        }
        for dag_id in &registration.unchanged {
            eprintln!("{dag_id} is unchanged");
        }
        if registration.import_error.is_some() {
            eprintln!("recorded the import error (shown in the UI's banner)");
        }
    }
    let document = match compiled {
        Ok(document) => document,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.project.join("dag.json"));
    if output == Path::new("-") {
        print!("{}", document.to_pretty_json());
    } else {
        std::fs::write(&output, document.to_pretty_json())
            .with_context(|| format!("writing {}", output.display()))?;
        eprintln!("{}", summary(&document, &output));
    }
    if let Some(image) = &args.image {
        let base = args
            .base_image
            .clone()
            .unwrap_or_else(|| task_base(&document));
        image_step(&args.project, &document, image, &base, args.build)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(document: &ProjectDocument, output: &Path) -> String {
    let mut lines = vec![format!("wrote {}", output.display())];
    for dag in document.dags() {
        let hash = dag["version_hash"].as_str().unwrap_or_default();
        let tasks = dag["tasks"].as_array().map_or(0, Vec::len);
        lines.push(format!(
            "  {}: {tasks} task(s), version {}",
            dag["dag_id"].as_str().unwrap_or_default(),
            &hash[..hash.len().min(12)]
        ));
        for o in dag["overrides"].as_array().into_iter().flatten() {
            lines.push(format!(
                "    leoflow.yaml sets {} = {} (dag.py: {})",
                o["field"].as_str().unwrap_or_default(),
                o["leoflow_yaml"],
                o["dag_py"]
            ));
        }
    }
    lines.join("\n")
}

/// Leoflow's task image for the project's Python: the agent, that Python and the SDK.
fn task_base(document: &ProjectDocument) -> String {
    let python = document.json["config"]["python_version"]
        .as_str()
        .unwrap_or("3.11");
    format!(
        "leoflow/leoflow-task:{}-python{python}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The user the task image runs as (docker/task.Dockerfile's `USER`).
const TASK_USER: &str = "65532:65532";

/// Writes the Pro image's Dockerfile, and builds it when asked and a builder answers.
fn image_step(
    project: &Path,
    document: &ProjectDocument,
    image: &str,
    base: &str,
    build: bool,
) -> Result<()> {
    let dependencies: Vec<&str> = document.json["config"]["dependencies"]
        .as_array()
        .map(|d| d.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    // The task image has the agent, Python and the SDK where the pod executor starts them;
    // this adds the project's dependencies and the project at /opt/leoflow/project.
    let mut dockerfile = format!(
        "# Generated by `leoflow compile --image {image}`: the project's tasks and their dependencies,\n\
         # on Leoflow's task image.\n\
         FROM {base}\n\
         WORKDIR /opt/leoflow/project\n"
    );
    if !dependencies.is_empty() {
        let quoted: Vec<String> = dependencies.iter().map(|d| format!("{d:?}")).collect();
        dockerfile.push_str(&format!(
            "USER root\nRUN pip install --no-cache-dir --disable-pip-version-check {}\nUSER {TASK_USER}\n",
            quoted.join(" ")
        ));
    }
    dockerfile.push_str(&format!(
        "COPY . .\nLABEL io.leoflow.project={:?}\n",
        document.json["project"].as_str().unwrap_or_default()
    ));
    let path = project.join("Dockerfile.leoflow");
    std::fs::write(&path, dockerfile).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    if !build {
        return Ok(());
    }
    if let Err(why) = docker_engine_answers() {
        bail!(
            "--build needs a container builder, but `docker info` failed: {why}. The Dockerfile is at {}; \
             build it where Docker runs: docker build -t {image} -f {} {}",
            path.display(),
            path.display(),
            project.display()
        );
    }
    let status = std::process::Command::new("docker")
        .args(["build", "-t", image, "-f"])
        .arg(&path)
        .arg(project)
        .status()
        .context("running docker build")?;
    if !status.success() {
        bail!("docker build failed ({status})");
    }
    eprintln!("built {image}");
    Ok(())
}
