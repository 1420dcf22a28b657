//! Which file is a project's DAG file: the one rule every part of Leoflow asks.
//!
//! 1. `dag.py`, when the project has one;
//! 2. else the file leoflow.yaml's `dag_file` names (a `*.py` file at the project's top level);
//! 3. else the project's single top-level `*.py` file (`__init__.py` aside).
//!
//! So an Airflow DAG file keeps its name, and with it `__file__` and the DAG ids derived from
//! `Path(__file__).stem`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ProjectConfig};

/// The DAG file's name when the project names none and has no single `*.py` file either.
pub use leoflow_events::catalog::DEFAULT_DAG_FILE;

/// Why a directory has no DAG file.
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectError {
    /// No `*.py` file at all.
    NoDagFile(PathBuf),
    /// Several `*.py` files, no `dag.py`, and leoflow.yaml names none.
    SeveralFiles {
        /// The project.
        dir: PathBuf,
        /// The candidates' names, sorted.
        files: Vec<String>,
    },
    /// leoflow.yaml could not be read, or its `dag_file` is wrong.
    Config(ConfigError),
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectError::NoDagFile(dir) => write!(
                f,
                "{} is not a Leoflow project: it has no dag.py, nor any other *.py file to be its \
                 DAG file (`leoflow init {}` creates one)",
                dir.display(),
                dir.display()
            ),
            ProjectError::SeveralFiles { dir, files } => write!(
                f,
                "{} has several Python files ({}) and no dag.py: name the DAG file in \
                 leoflow.yaml (`dag_file: {}`) or rename it dag.py",
                dir.display(),
                files.join(", "),
                files[0]
            ),
            ProjectError::Config(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ProjectError {}

/// The DAG file of the project in `dir`, by the rule of this module.
pub fn dag_file(dir: &Path) -> Result<PathBuf, ProjectError> {
    let dag_py = dir.join(DEFAULT_DAG_FILE);
    if dag_py.is_file() {
        return Ok(dag_py);
    }
    let config_file = dir.join("leoflow.yaml");
    // A leoflow.yaml that does not parse names no file; its error is the compiler's to report
    // (against the DAG file) unless the project's DAG file cannot be found without it.
    let mut unparsed = None;
    match std::fs::read_to_string(&config_file) {
        Ok(text) => {
            let named = match ProjectConfig::parse(&text) {
                Ok(config) => named_dag_file(&text, config.dag_file)?,
                Err(error) => {
                    unparsed = Some(error);
                    None
                }
            };
            if let Some(name) = named {
                let path = dir.join(&name);
                if !path.is_file() {
                    return Err(ProjectError::Config(ConfigError {
                        line: ProjectConfig::task_line(&text, "dag_file"),
                        message: format!(
                            "dag_file: the project has no file {name:?} (it is looked for next \
                             to leoflow.yaml)"
                        ),
                    }));
                }
                return Ok(path);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ProjectError::Config(ConfigError {
                line: None,
                message: format!("cannot read {}: {e}", config_file.display()),
            }));
        }
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|kind| !kind.is_dir()))
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| candidate(name) && dir.join(name).is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    match (files.len(), unparsed) {
        (1, _) => Ok(dir.join(&files[0])),
        (_, Some(error)) => Err(ProjectError::Config(error)),
        (0, None) => Err(ProjectError::NoDagFile(dir.to_owned())),
        _ => Err(ProjectError::SeveralFiles {
            dir: dir.to_owned(),
            files,
        }),
    }
}

/// Whether `dir` is a project: it has a DAG file by the rule of this module.
pub fn is_project(dir: &Path) -> bool {
    dag_file(dir).is_ok()
}

/// A top-level file that may be the DAG file: `*.py`, neither hidden nor `__init__.py`.
fn candidate(name: &str) -> bool {
    name.ends_with(".py") && name.len() > 3 && !name.starts_with('.') && name != "__init__.py"
}

/// leoflow.yaml's `dag_file`, checked: a `*.py` file name at the project's top level.
fn named_dag_file(text: &str, named: Option<String>) -> Result<Option<String>, ProjectError> {
    let Some(name) = named else {
        return Ok(None);
    };
    let wrong = |why: &str| {
        ProjectError::Config(ConfigError {
            line: ProjectConfig::task_line(text, "dag_file"),
            message: format!(
                "dag_file: {name:?} {why}; name a *.py file at the project's top level, e.g. \
                 `dag_file: my_dag.py`"
            ),
        })
    };
    if name.contains('/') || name.contains('\\') {
        return Err(wrong("is a path"));
    }
    if name == ".." || name == "." || name.starts_with('.') {
        return Err(wrong("is hidden or not a file name"));
    }
    if !candidate(&name) {
        return Err(wrong("is not a Python file (*.py)"));
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch project directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn project(files: &[(&str, &str)]) -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "leoflow-project-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn name(dir: &Scratch) -> String {
        let file = dag_file(dir.path()).unwrap();
        assert_eq!(file.parent(), Some(dir.path()));
        file.file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn dag_py_wins_over_everything() {
        let dir = project(&[
            ("dag.py", ""),
            ("helpers.py", ""),
            ("leoflow.yaml", "dag_file: helpers.py\n"),
        ]);
        assert_eq!(name(&dir), "dag.py");
    }

    #[test]
    fn leoflow_yaml_names_the_dag_file() {
        let dir = project(&[
            ("example_params_ui_tutorial.py", ""),
            ("helpers.py", ""),
            (
                "leoflow.yaml",
                "owner: me\ndag_file: example_params_ui_tutorial.py\n",
            ),
        ]);
        assert_eq!(name(&dir), "example_params_ui_tutorial.py");
    }

    #[test]
    fn a_single_python_file_is_the_dag_file() {
        let dir = project(&[
            ("example_params_trigger_ui.py", ""),
            ("__init__.py", ""),
            ("README.md", ""),
            ("lib/module.py", ""),
            ("leoflow.yaml", "owner: me\n"),
        ]);
        assert_eq!(name(&dir), "example_params_trigger_ui.py");
        assert!(is_project(dir.path()));
    }

    #[test]
    fn a_leoflow_yaml_that_does_not_parse_leaves_the_single_file_rule_and_else_is_the_error() {
        let single = project(&[("only.py", ""), ("leoflow.yaml", "owner: [\n")]);
        assert_eq!(name(&single), "only.py");
        let several = project(&[("a.py", ""), ("b.py", ""), ("leoflow.yaml", "nope: 1\n")]);
        let error = dag_file(several.path()).unwrap_err();
        assert!(matches!(error, ProjectError::Config(_)), "{error:?}");
        assert!(error.to_string().starts_with("leoflow.yaml:1:"), "{error}");
    }

    #[test]
    fn several_python_files_and_no_dag_py_are_an_error_naming_them_and_the_fix() {
        let dir = project(&[("b.py", ""), ("a.py", "")]);
        let error = dag_file(dir.path()).unwrap_err();
        assert!(
            matches!(&error, ProjectError::SeveralFiles { files, .. } if files == &["a.py", "b.py"])
        );
        let message = error.to_string();
        assert!(message.contains("a.py, b.py"), "{message}");
        assert!(message.contains("dag_file: a.py"), "{message}");
        assert!(!is_project(dir.path()));
    }

    #[test]
    fn no_python_file_is_not_a_project() {
        let dir = project(&[("leoflow.yaml", "owner: me\n"), ("__init__.py", "")]);
        let error = dag_file(dir.path()).unwrap_err();
        assert_eq!(error, ProjectError::NoDagFile(dir.path().to_owned()));
        assert!(
            error
                .to_string()
                .contains("has no dag.py, nor any other *.py file"),
            "{error}"
        );
    }

    #[test]
    fn bad_dag_file_values_are_errors_on_their_line() {
        for (value, why) in [
            ("../other/dag.py", "is a path"),
            ("/etc/dag.py", "is a path"),
            ("sub/dag.py", "is a path"),
            ("notes.txt", "is not a Python file"),
            (".hidden.py", "is hidden"),
            ("__init__.py", "is not a Python file"),
            ("missing.py", "has no file \"missing.py\""),
        ] {
            let dir = project(&[
                ("a.py", ""),
                ("leoflow.yaml", &format!("owner: me\ndag_file: {value:?}\n")),
            ]);
            let error = dag_file(dir.path()).unwrap_err();
            let ProjectError::Config(config) = &error else {
                panic!("{value}: {error:?}");
            };
            assert_eq!(config.line, Some(2), "{value}: {error}");
            assert!(error.to_string().contains(why), "{value}: {error}");
        }
    }
}
