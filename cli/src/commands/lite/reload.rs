//! Hot reload: a change to the project's files (dag.py, leoflow.yaml, modules next to them)
//! compiles and registers the project again, so a new version — or the import error of a
//! broken file — reaches the UI within a second of saving. A changed `dependencies` list is
//! installed into the project's venv first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leoflow_authoring::ingest::register;
use leoflow_authoring::python::PythonRuntime;
use leoflow_authoring::{compile_project, project_name};
use leoflow_events::{DEFAULT_TENANT, EventStore};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::python_env::{ProjectVenv, VenvOutcome, project_dependencies};

/// What a reload needs.
pub struct Reload {
    /// The project directory (canonical).
    pub project: PathBuf,
    /// The Python that compiles dag.py.
    pub python: PythonRuntime,
    /// Where new versions are registered.
    pub store: EventStore,
    /// How long compiling may take.
    pub compile_timeout: Duration,
    /// The project's venv, when it has dependencies.
    pub venv: Option<ProjectVenv>,
}

impl Reload {
    /// Installs a changed `dependencies` list, then compiles and registers the project.
    async fn once(&self, dependencies: &mut Vec<String>) {
        let now = project_dependencies(&self.project);
        if now != *dependencies {
            match &self.venv {
                Some(venv) => match venv.ensure(&now).await {
                    Ok(VenvOutcome::Installed) => {
                        println!("  reload    dependencies installed: {}", now.join(", "));
                        *dependencies = now;
                    }
                    Ok(VenvOutcome::UpToDate) => *dependencies = now,
                    Err(error) => tracing::warn!("{error:#}"),
                },
                None => println!(
                    "  reload    leoflow.yaml now lists dependencies: restart Lite to install \
                     them into the project's venv"
                ),
            }
        }
        let compiled = compile_project(&self.project, &self.python, self.compile_timeout).await;
        let project = project_name(&self.project);
        // Lite has no tenants of its own: everything it registers is the default tenant's.
        match register(&self.store, &project, DEFAULT_TENANT, &compiled, "lite").await {
            Ok(registration) => {
                for dag_id in &registration.parsed {
                    println!("  reload    {dag_id}: new version registered");
                }
                if let Some(error) = &registration.import_error {
                    println!("  reload    import error: {error}");
                }
                if registration.parsed.is_empty() && registration.import_error.is_none() {
                    println!("  reload    no DAG changed");
                }
            }
            Err(error) => tracing::warn!("reloading {}: {error}", self.project.display()),
        }
    }
}

/// Editors save in bursts (a temp file, a rename, a chmod): changes within this quiet period
/// are one reload.
const SETTLE: Duration = Duration::from_millis(150);

/// Whether a changed path is part of the project (not a cache, a venv or an editor's scratch).
pub(super) fn matters(project: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(project) else {
        return false;
    };
    let hidden = relative.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.') || name == "__pycache__"
    });
    let name = relative
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let scratch = name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp");
    !hidden && !scratch
}

/// Watches the project and reloads it after every change, until the returned watcher is
/// dropped. What happened is printed like Lite's other lines.
pub fn watch(reload: Reload) -> notify::Result<notify::RecommendedWatcher> {
    let (changed, mut changes) = mpsc::unbounded_channel::<()>();
    let root = reload.project.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| matters(&root, p))
        {
            let _ = changed.send(());
        }
    })?;
    watcher.watch(&reload.project, RecursiveMode::Recursive)?;
    let mut dependencies = project_dependencies(&reload.project);
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Let the burst finish, then take everything it sent.
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reload.once(&mut dependencies).await;
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_venvs_and_scratch_files_do_not_trigger_a_reload() {
        let project = Path::new("/p");
        assert!(matters(project, Path::new("/p/dag.py")));
        assert!(matters(project, Path::new("/p/leoflow.yaml")));
        assert!(matters(project, Path::new("/p/helpers/util.py")));
        assert!(!matters(
            project,
            Path::new("/p/__pycache__/dag.cpython-311.pyc")
        ));
        assert!(!matters(project, Path::new("/p/.venv/lib/x.py")));
        assert!(!matters(project, Path::new("/p/.dag.py.swp")));
        assert!(!matters(project, Path::new("/p/dag.py~")));
        assert!(!matters(project, Path::new("/elsewhere/dag.py")));
    }
}
