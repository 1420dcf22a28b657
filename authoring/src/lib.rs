//! Turns a Leoflow project — its DAG file (`dag.py`, or the file [`project::dag_file`] finds)
//! plus an optional `leoflow.yaml` — into versioned dag.json documents, and registers them in
//! the event log.
//!
//! * [`project`] answers which file is a project's DAG file.
//! * [`python`] runs the SDK's compiler (`sdk/python`) on dag.py in a child process under a
//!   time limit: the DAG file's module-level code runs, its tasks do not.
//! * [`config`] parses and validates leoflow.yaml.
//! * [`document`] applies leoflow.yaml (it wins over dag.py, and the document lists what it
//!   changed) and gives each DAG its version hash: SHA-256 of its canonical JSON, which
//!   includes the hash of the source.
//! * [`ingest`] appends `DagParsed` (only when a DAG's hash changed) or `DagImportFailed`.
#![warn(missing_docs)]

pub mod config;
pub mod document;
pub mod ingest;
pub mod project;
pub mod python;
pub mod rollback;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{ConfigError, ProjectConfig};
pub use document::ProjectDocument;
pub use project::{ProjectError, dag_file, is_project};
pub use python::PythonRuntime;

/// How long a DAG file may take to parse before it is stopped.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a project did not compile.
#[derive(Debug, Clone, PartialEq)]
pub enum CompileError {
    /// The directory has no DAG file (no `*.py` file at all).
    NotAProject(PathBuf),
    /// The directory has several `*.py` files and names none of them its DAG file.
    AmbiguousDagFile(ProjectError),
    /// dag.py could not be read.
    Unreadable(String),
    /// dag.py is wrong: a located error from the compiler.
    Dag {
        /// The file.
        file: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The kind (`SyntaxError`, `UnsupportedConstruct`, `ImportError`, …).
        kind: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// leoflow.yaml is wrong; with the project's DAG file when it was found.
    Config(ConfigError, Option<String>),
    /// dag.py did not finish parsing in time.
    Timeout {
        /// The file.
        file: String,
        /// The limit.
        seconds: f64,
    },
    /// Python or the SDK is missing or broke: not the project's fault.
    Environment(String),
}

impl CompileError {
    /// Whether the error is the project's (recorded as an import error) rather than the machine's.
    pub fn is_project_error(&self) -> bool {
        !matches!(
            self,
            CompileError::Environment(_) | CompileError::NotAProject(_)
        )
    }
}

impl CompileError {
    /// The name of the project's DAG file, when the error knows it (what its import error is
    /// recorded against).
    pub fn file(&self) -> Option<&str> {
        match self {
            CompileError::Dag { file, .. } | CompileError::Timeout { file, .. } => Some(file),
            CompileError::Config(_, file) => file.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::NotAProject(dir) => ProjectError::NoDagFile(dir.clone()).fmt(f),
            CompileError::AmbiguousDagFile(error) => error.fmt(f),
            CompileError::Unreadable(message) => f.write_str(message),
            CompileError::Dag {
                file,
                line: Some(line),
                kind,
                message,
            } => {
                write!(f, "{file}:{line}: {kind}: {message}")
            }
            CompileError::Dag {
                file,
                line: None,
                kind,
                message,
            } => write!(f, "{file}: {kind}: {message}"),
            CompileError::Config(error, _) => error.fmt(f),
            CompileError::Timeout { file, seconds } => write!(
                f,
                "{file}: parsing did not finish within {seconds:.0} s and was stopped; does the file \
                 wait on the network, a lock or a loop at module level? Move such work into a task"
            ),
            CompileError::Environment(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CompileError {}

/// Compiles the project in `dir` into its dag.json document.
pub async fn compile_project(
    dir: &Path,
    python: &PythonRuntime,
    timeout: Duration,
) -> Result<ProjectDocument, CompileError> {
    let dag_file = project::dag_file(dir).map_err(|error| match error {
        ProjectError::NoDagFile(dir) => CompileError::NotAProject(dir),
        ProjectError::Config(error) => CompileError::Config(error, None),
        several @ ProjectError::SeveralFiles { .. } => CompileError::AmbiguousDagFile(several),
    })?;
    let source = tokio::fs::read_to_string(&dag_file).await.map_err(|e| {
        CompileError::Unreadable(format!("cannot read {}: {e}", dag_file.display()))
    })?;
    let config_file = dir.join("leoflow.yaml");
    let config_text = match tokio::fs::read_to_string(&config_file).await {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CompileError::Unreadable(format!(
                "cannot read {}: {e}",
                config_file.display()
            )));
        }
    };
    let file = python::file_name(&dag_file);
    let in_file = |error| CompileError::Config(error, Some(file.clone()));
    let config = match &config_text {
        Some(text) => ProjectConfig::parse(text).map_err(in_file)?,
        None => ProjectConfig::default(),
    };
    let compiled = python.compile(&dag_file, timeout).await?;
    document::build(
        &project_name(dir),
        &file,
        &source,
        compiled,
        &config,
        config_text.as_deref(),
    )
    .map_err(in_file)
}

/// The project's name: its directory's name.
pub fn project_name(dir: &Path) -> String {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    absolute
        .components()
        .rev()
        .find_map(|c| match c {
            std::path::Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "project".to_owned())
}
