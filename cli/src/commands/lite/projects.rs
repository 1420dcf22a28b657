//! The projects Lite runs: the one project `leoflow lite <dir>` names when `<dir>` has a DAG
//! file (`leoflow_authoring::project::dag_file`: a dag.py, the file leoflow.yaml names, or the
//! single `*.py` file), or else every project found under the folder `<dir>` — each directory
//! with a DAG file directly in it (hidden folders, caches and venvs skipped; a project's own folders are not
//! searched for more). Each project is compiled, registered and reloaded on its own, under its
//! own name (its path in the folder) and with its own venv; a broken one is an import error and
//! the others run.
//!
//! A DAG id belongs to one project of the folder: the one it was last registered from while
//! that project declares it, else the first (by name) to declare it. Another project declaring
//! it is refused as a whole, with an import error naming both; it is compiled again once the
//! owner lets go of the id (the DAG removed from its dag.py, or the project from the folder).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::{StreamExt, stream};
use leoflow_authoring::ingest::{RegisterError, Registration, register};
use leoflow_authoring::python::PythonRuntime;
use leoflow_authoring::{CompileError, ProjectDocument, compile_project, project_name};
use leoflow_events::{DEFAULT_TENANT, EventStore};
use leoflow_projector::read;
use leoflow_projector::read::filter::{Bind, Conditions};

use super::executors::ProjectExecutors;
use crate::python_env::{ProjectVenv, VenvOutcome, project_dependencies, with_project_venv};

/// How many projects compile at once.
const COMPILES_AT_ONCE: usize = 4;

/// What `leoflow lite <dir>` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `<dir>` has a DAG file: it is the one project.
    Project,
    /// `<dir>` is a folder of projects.
    Folder,
}

impl Layout {
    /// Judges `dir`: a project, or a folder holding at least one.
    pub(super) fn of(dir: &Path) -> Result<Self> {
        if leoflow_authoring::is_project(dir) {
            return Ok(Self::Project);
        }
        if find_projects(dir).is_empty() {
            // Several *.py files, or a wrong `dag_file`: say that rather than "no project".
            match leoflow_authoring::dag_file(dir) {
                Err(leoflow_authoring::ProjectError::NoDagFile(_)) | Ok(_) => {}
                Err(error) => bail!("{error}"),
            }
            bail!(
                "{} is not a Leoflow project: it has no dag.py, and neither has any folder under \
                 it (a project's DAG file is its dag.py, the file leoflow.yaml's `dag_file` \
                 names, or its single *.py file). Point `leoflow lite` at a project directory, \
                 e.g. `leoflow lite dags/hello`, or at a folder of projects, e.g. \
                 `leoflow lite dags`.",
                dir.display()
            );
        }
        Ok(Self::Folder)
    }
}

/// Whether a folder named `name` is never part of a project: hidden folders (`.git`,
/// `.venv`), Python's byte code, a venv called `venv`.
pub(super) fn skipped_folder(name: &str) -> bool {
    name.starts_with('.') || name == "__pycache__" || name == "venv"
}

/// Whether `dir` is a venv, whatever its name.
pub(super) fn is_venv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

/// The projects under `folder`, sorted: each directory with a DAG file directly in it (a
/// dag.py, the file its leoflow.yaml names, or its single `*.py` file). Skipped
/// folders and venvs are not searched, nor are a project's own folders, and folders reached
/// through a symbolic link are not entered.
pub(super) fn find_projects(folder: &Path) -> Vec<PathBuf> {
    let mut projects = Vec::new();
    let mut folders = vec![folder.to_owned()];
    while let Some(dir) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|kind| kind.is_dir())
                || skipped_folder(&entry.file_name().to_string_lossy())
                || is_venv(&path)
            {
                continue;
            }
            if leoflow_authoring::is_project(&path) {
                projects.push(path);
            } else {
                folders.push(path);
            }
        }
    }
    projects.sort();
    projects
}

/// A loaded project.
struct Project {
    dir: PathBuf,
    /// The Python that compiles its dag.py and runs its tasks: its venv's, else the base.
    python: PythonRuntime,
    venv: Option<ProjectVenv>,
    /// The `dependencies` its venv was last built for.
    dependencies: Vec<String>,
    /// Refused for a DAG id another project has.
    refused: bool,
}

/// What loading a project came to, for the banner.
pub(super) struct Loaded {
    /// `[name] ` on a folder, nothing for the one project.
    pub tag: String,
    /// Its registration, or why it has none.
    pub outcome: Result<Registration, String>,
}

/// The projects Lite runs, their venvs and which one has each DAG id.
pub(super) struct Projects {
    root: PathBuf,
    layout: Layout,
    home: PathBuf,
    base: PythonRuntime,
    compile_timeout: Duration,
    loaded: BTreeMap<String, Project>,
    /// DAG id → the project that has it.
    owners: HashMap<String, String>,
    /// Set when a project lets go of DAG ids: the refused ones may load now.
    released: bool,
    /// On a folder, the executors tasks run in, one per project.
    executors: Option<ProjectExecutors>,
    /// Counts the registrations of projects (each load and reload), for what must follow a
    /// project's code (the one project's triggerer).
    registered: tokio::sync::watch::Sender<u64>,
}

impl Projects {
    /// Finds the projects at `root` (canonical) and makes their venvs. On a folder, a venv that
    /// cannot be made is reported and its project compiled with the base Python; for the one
    /// project it stops Lite's start.
    pub(super) async fn open(
        home: &Path,
        root: PathBuf,
        layout: Layout,
        base: PythonRuntime,
        compile_timeout: Duration,
    ) -> Result<Self> {
        let mut projects = Self {
            layout,
            home: home.to_owned(),
            base,
            compile_timeout,
            loaded: BTreeMap::new(),
            owners: HashMap::new(),
            released: false,
            executors: (layout == Layout::Folder).then(ProjectExecutors::default),
            registered: tokio::sync::watch::channel(0).0,
            root,
        };
        let dirs = match layout {
            Layout::Project => vec![projects.root.clone()],
            Layout::Folder => find_projects(&projects.root),
        };
        for dir in dirs {
            projects.set_up(dir).await?;
        }
        Ok(projects)
    }

    /// The project or folder Lite runs.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Changes each time a project is registered again (a hot reload), from now on.
    pub(super) fn registrations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registered.subscribe()
    }

    /// The executors of a folder's projects (`None` for the one project).
    pub(super) fn executors(&self) -> Option<ProjectExecutors> {
        self.executors.clone()
    }

    /// The Python tasks run with when no project's executor takes them: the one project's.
    pub(super) fn tasks_python(&self) -> PythonRuntime {
        match self.layout {
            Layout::Project => self.loaded.values().next().map(|p| p.python.clone()),
            Layout::Folder => None,
        }
        .unwrap_or_else(|| self.base.clone())
    }

    /// The banner's line naming what runs.
    pub(super) fn summary(&self) -> String {
        match self.layout {
            Layout::Project => format!("  project   {}", self.root.display()),
            Layout::Folder => format!(
                "  projects  {} in {}: {}",
                self.loaded.len(),
                self.root.display(),
                self.loaded.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// A project's name: the directory's for the one project, its path in the folder else.
    fn name_of(&self, dir: &Path) -> String {
        match (self.layout, dir.strip_prefix(&self.root)) {
            (Layout::Folder, Ok(relative)) => relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
            _ => project_name(dir),
        }
    }

    /// What prefixes a project's lines: `[name] ` on a folder.
    fn tag(&self, name: &str) -> String {
        match self.layout {
            Layout::Project => String::new(),
            Layout::Folder => format!("[{name}] "),
        }
    }

    /// Adds the project in `dir` with its venv.
    async fn set_up(&mut self, dir: PathBuf) -> Result<String> {
        let name = self.name_of(&dir);
        let tag = self.tag(&name);
        // Lines are a 12-column label and the text: the tag goes before the text.
        let note = |line: String| match line.split_at_checked(12) {
            Some((label, text)) => println!("{label}{tag}{text}"),
            None => println!("{line}"),
        };
        let (python, venv, dependencies) =
            match with_project_venv(&self.home, &dir, self.base.clone(), &note).await {
                Ok((python, venv)) => (python, venv, project_dependencies(&dir)),
                Err(error) if self.layout == Layout::Folder => {
                    println!("  venv      {tag}not made, the project runs without it: {error:#}");
                    (self.base.clone(), None, Vec::new())
                }
                Err(error) => return Err(error),
            };
        if let Some(executors) = &self.executors {
            executors.set(&name, &dir, &python).await;
        }
        self.loaded.insert(
            name.clone(),
            Project {
                dir,
                python,
                venv,
                dependencies,
                refused: false,
            },
        );
        Ok(name)
    }

    /// Compiles and registers every project, at Lite's start. A project's failure to register
    /// stops the start for the one project (as it always did) and when the base Python itself
    /// is broken; on a folder it is reported and the others load.
    pub(super) async fn load_all(&mut self, store: &EventStore) -> Result<Vec<Loaded>> {
        self.remember_owners(store).await?;
        let names: Vec<String> = self.loaded.keys().cloned().collect();
        // A project loaded twice (refused, then not) shows its last outcome.
        let mut loaded = BTreeMap::new();
        for (name, outcome) in self.load(store, names).await {
            let outcome = match outcome {
                Ok(registration) => Ok(registration),
                Err(error) if self.stops_the_start(&name, &error) => return Err(error.into()),
                Err(error) => Err(error.to_string()),
            };
            let tag = self.tag(&name);
            loaded.insert(name, Loaded { tag, outcome });
        }
        Ok(loaded.into_values().collect())
    }

    fn stops_the_start(&self, name: &str, error: &RegisterError) -> bool {
        let base_python = self.loaded.get(name).is_none_or(|p| p.venv.is_none());
        self.layout == Layout::Project
            || (matches!(error, RegisterError::Environment(_)) && base_python)
    }

    /// Each DAG belongs to the project it was last registered from, when that project is here.
    async fn remember_owners(&mut self, store: &EventStore) -> Result<()> {
        for name in self.loaded.keys() {
            let mut registered = Conditions::new();
            registered
                .eq(read::dags::columns::BUNDLE_NAME, Bind::Text(name.clone()))
                .eq(
                    read::dags::columns::TENANT,
                    Bind::Text(DEFAULT_TENANT.to_owned()),
                );
            for dag_id in read::dags::ids(store.pool(), &registered).await? {
                self.owners.insert(dag_id, name.clone());
            }
        }
        Ok(())
    }

    /// Compiles and registers `names`, then once more the projects refused for a DAG id that
    /// another project let go of meanwhile. Returns each outcome, in order.
    async fn load(
        &mut self,
        store: &EventStore,
        names: Vec<String>,
    ) -> Vec<(String, Result<Registration, RegisterError>)> {
        let mut outcomes = Vec::new();
        let mut names = names;
        loop {
            let timeout = self.compile_timeout;
            let jobs: Vec<(PathBuf, PythonRuntime)> = names
                .iter()
                .map(|name| {
                    (
                        self.loaded[name].dir.clone(),
                        self.loaded[name].python.clone(),
                    )
                })
                .collect();
            let compiled: Vec<_> = stream::iter(jobs)
                .map(|(dir, python)| async move { compile_project(&dir, &python, timeout).await })
                .buffered(COMPILES_AT_ONCE)
                .collect()
                .await;
            for (name, compiled) in names.iter().zip(compiled) {
                let compiled = compiled.and_then(|document| {
                    self.claim(name, &document)?;
                    Ok(document)
                });
                let outcome = register(store, name, DEFAULT_TENANT, &compiled, "lite").await;
                if outcome.is_ok() {
                    self.registered.send_modify(|count| *count += 1);
                }
                outcomes.push((name.clone(), outcome));
            }
            // Only projects refused so far are tried again, and one that loads is not refused
            // again: a round in which no project lets go of an id is the last.
            if !std::mem::take(&mut self.released) {
                break;
            }
            names = self
                .loaded
                .iter()
                .filter(|(_, project)| project.refused)
                .map(|(name, _)| name.clone())
                .collect();
            if names.is_empty() {
                break;
            }
        }
        outcomes
    }

    /// Gives `project` the DAG ids its document declares — and lets go of those it no longer
    /// declares — unless another project has one of them: then the project is refused, as an
    /// import error naming both.
    fn claim(&mut self, project: &str, document: &ProjectDocument) -> Result<(), CompileError> {
        let ids: Vec<String> = document
            .dags()
            .iter()
            .filter_map(|dag| dag["dag_id"].as_str().map(str::to_owned))
            .collect();
        let taken = ids.iter().find_map(|id| {
            self.owners
                .get(id)
                .filter(|owner| *owner != project && self.loaded.contains_key(*owner))
                .map(|owner| (id, owner))
        });
        let refused = taken.map(|(dag_id, owner)| CompileError::Dag {
            file: document.source_file().to_owned(),
            line: None,
            kind: "DuplicateDagId".into(),
            message: format!(
                "the DAG id {dag_id:?} is declared by the projects {owner} and {project}; a DAG \
                 id belongs to one project, and {owner} has it: rename the DAG in one of them"
            ),
        });
        if let Some(loaded) = self.loaded.get_mut(project) {
            loaded.refused = refused.is_some();
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        let before = self.owners.len();
        self.owners
            .retain(|id, owner| owner != project || ids.contains(id));
        self.released |= self.owners.len() < before;
        for id in &ids {
            self.owners.insert(id.clone(), project.to_owned());
        }
        if let Some(executors) = &self.executors {
            executors.route(project, &ids);
        }
        Ok(())
    }

    /// Reloads after a burst of changes to `paths`: the project they are in (the one project;
    /// on a folder, each project they touch), the projects added to the folder and those
    /// removed from it.
    pub(super) async fn changed(&mut self, store: &EventStore, paths: &BTreeSet<PathBuf>) {
        let mut names = Vec::new();
        match self.layout {
            Layout::Project => names.extend(self.loaded.keys().cloned()),
            Layout::Folder => {
                let found = find_projects(&self.root);
                let gone: Vec<String> = self
                    .loaded
                    .iter()
                    .filter(|(_, project)| !found.contains(&project.dir))
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in gone {
                    self.remove(&name);
                }
                for dir in found {
                    let name = self.name_of(&dir);
                    if !self.loaded.contains_key(&name) {
                        println!("  reload    {}new project", self.tag(&name));
                        match self.set_up(dir).await {
                            Ok(name) => names.push(name),
                            Err(error) => tracing::warn!("{error:#}"),
                        }
                    } else if paths.iter().any(|path| path.starts_with(&dir)) {
                        names.push(name);
                    }
                }
            }
        }
        for name in &names {
            self.install_dependencies(name).await;
        }
        for (name, outcome) in self.load(store, names).await {
            let tag = self.tag(&name);
            match outcome {
                Ok(registration) => print_reloaded(&tag, &registration),
                Err(error) => {
                    tracing::warn!("reloading {}: {error}", self.loaded[&name].dir.display())
                }
            }
        }
    }

    /// A project gone from the folder: its DAGs stay as they were last registered (as a DAG
    /// gone from a dag.py does), free for another project to declare.
    fn remove(&mut self, name: &str) {
        self.loaded.remove(name);
        let before = self.owners.len();
        self.owners.retain(|_, owner| owner != name);
        self.released |= self.owners.len() < before;
        if let Some(executors) = &self.executors {
            executors.forget(name);
        }
        println!(
            "  reload    {}project removed: its DAGs stay as last registered",
            self.tag(name)
        );
    }

    /// Installs a changed `dependencies` list into the project's venv. On a folder a project
    /// without a venv gets one (its tasks move to it); the one project needs a restart for it.
    async fn install_dependencies(&mut self, name: &str) {
        let tag = self.tag(name);
        let Some(project) = self.loaded.get_mut(name) else {
            return;
        };
        let now = project_dependencies(&project.dir);
        if now == project.dependencies {
            return;
        }
        if project.venv.is_none() {
            if self.layout == Layout::Project {
                println!(
                    "  reload    leoflow.yaml now lists dependencies: restart Lite to install \
                     them into the project's venv"
                );
                return;
            }
            project.venv = Some(ProjectVenv::new(
                &self.home,
                &project.dir,
                self.base.clone(),
            ));
        }
        let venv = project.venv.as_ref().expect("made above");
        match venv.ensure(&now).await {
            Ok(outcome) => {
                if outcome == VenvOutcome::Installed {
                    println!(
                        "  reload    {tag}dependencies installed: {}",
                        now.join(", ")
                    );
                }
                project.dependencies = now;
                project.python = venv.runtime();
                if let Some(executors) = &self.executors {
                    executors.set(name, &project.dir, &project.python).await;
                }
            }
            Err(error) => tracing::warn!("{error:#}"),
        }
    }
}

/// The banner's lines about one project.
pub(super) fn print_loaded(loaded: &Loaded) {
    let tag = &loaded.tag;
    match &loaded.outcome {
        Ok(registration) => {
            for dag_id in &registration.parsed {
                println!("  dag       {tag}{dag_id}: new version registered");
            }
            for dag_id in &registration.unchanged {
                println!("  dag       {tag}{dag_id}: unchanged");
            }
            if let Some(error) = &registration.import_error {
                println!("  import error: {tag}{error}");
            }
        }
        Err(error) => println!("  error     {tag}{error}"),
    }
}

/// What a reload of one project did.
fn print_reloaded(tag: &str, registration: &Registration) {
    for dag_id in &registration.parsed {
        println!("  reload    {tag}{dag_id}: new version registered");
    }
    if let Some(error) = &registration.import_error {
        println!("  reload    {tag}import error: {error}");
    }
    if registration.parsed.is_empty() && registration.import_error.is_none() {
        println!("  reload    {tag}no DAG changed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_the_folders_with_a_dag_py_and_their_own_folders_are_not_searched() {
        let root = std::env::temp_dir().join(format!("leoflow-find-{}", std::process::id()));
        let file = |path: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        };
        file("alpha/dag.py");
        file("alpha/nested/dag.py");
        file("team/beta/dag.py");
        file("team/notes.md");
        file("airflow/example_params_ui_tutorial.py");
        file("airflow/lib/__init__.py");
        file("mixed/a.py");
        file("mixed/b.py");
        file("mixed/inner/dag.py");
        file("package/__init__.py");
        file(".hidden/dag.py");
        file("__pycache__/x/dag.py");
        file("venv/lib/dag.py");
        file("env/pyvenv.cfg");
        file("env/lib/dag.py");
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::os::unix::fs::symlink(root.join("alpha"), root.join("linked")).unwrap();
        assert_eq!(
            find_projects(&root),
            [
                root.join("airflow"),
                root.join("alpha"),
                root.join("mixed/inner"),
                root.join("team/beta")
            ]
        );
        assert_eq!(Layout::of(&root).unwrap(), Layout::Folder);
        assert_eq!(Layout::of(&root.join("alpha")).unwrap(), Layout::Project);
        let refused = Layout::of(&root.join("empty")).unwrap_err().to_string();
        assert!(refused.contains("has no dag.py"), "{refused}");
        assert_eq!(Layout::of(&root.join("airflow")).unwrap(), Layout::Project);
        std::fs::remove_dir_all(root.join("mixed/inner")).unwrap();
        let several = Layout::of(&root.join("mixed")).unwrap_err().to_string();
        assert!(
            several.contains("several Python files (a.py, b.py)"),
            "{several}"
        );
        std::fs::write(root.join("mixed/leoflow.yaml"), "dag_file: c.py\n").unwrap();
        let named = Layout::of(&root.join("mixed")).unwrap_err().to_string();
        assert!(named.contains("has no file \"c.py\""), "{named}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
