//! Hot reload: a change to a project's files (dag.py, leoflow.yaml, modules next to them)
//! compiles and registers that project again, so a new version — or the import error of a
//! broken file — reaches the UI within a second of saving. A changed `dependencies` list is
//! installed into the project's venv first. On a folder of projects, only the projects a change
//! touches are reloaded, and projects added to or removed from the folder are picked up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leoflow_events::EventStore;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::projects::{Projects, is_venv, skipped_folder};

/// Editors save in bursts (a temp file, a rename, a chmod): changes within this quiet period
/// are one reload.
const SETTLE: Duration = Duration::from_millis(150);

/// Whether a changed path is part of a project (not a cache, a venv, a hidden or an editor's
/// scratch file), `root` being the project or the folder of projects.
pub(super) fn matters(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let skipped = relative
        .components()
        .any(|c| skipped_folder(&c.as_os_str().to_string_lossy()));
    let in_venv = relative
        .ancestors()
        .skip(1)
        .filter(|folder| !folder.as_os_str().is_empty())
        .any(|folder| is_venv(&root.join(folder)));
    let name = relative
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let scratch = name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp");
    !skipped && !in_venv && !scratch
}

/// Watches the project (or the folder of projects) and reloads after every burst of changes,
/// until the returned watcher is dropped. What happened is printed like Lite's other lines.
pub fn watch(
    mut projects: Projects,
    store: EventStore,
) -> notify::Result<notify::RecommendedWatcher> {
    let (changed, mut changes) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let root = projects.root().to_owned();
    let watched = root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
        {
            let paths: Vec<PathBuf> = event
                .paths
                .into_iter()
                .filter(|p| matters(&watched, p))
                .collect();
            if !paths.is_empty() {
                let _ = changed.send(paths);
            }
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while let Some(first) = changes.recv().await {
            // Let the burst finish, then take everything it sent.
            let mut paths: BTreeSet<PathBuf> = first.into_iter().collect();
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(more)) => paths.extend(more),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            projects.changed(&store, &paths).await;
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
        assert!(!matters(project, Path::new("/p/venv/lib/x.py")));
        assert!(!matters(project, Path::new("/p/.dag.py.swp")));
        assert!(!matters(project, Path::new("/p/dag.py~")));
        assert!(!matters(project, Path::new("/elsewhere/dag.py")));
    }
}
