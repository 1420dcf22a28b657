//! Lite's executor on a folder of projects: a subprocess executor per project — the project's
//! own Python (its venv's, when it has one), its directory as the tasks' working directory and
//! import path, its own zygote — and each try dispatched to the project its DAG was last
//! registered from. A DAG no loaded project declares (its project was removed) runs in the base
//! Python outside any project.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use leoflow_authoring::python::PythonRuntime;
use leoflow_executors::subprocess::SubprocessExecutor;
use leoflow_executors::triggerer::{
    Homes, SubprocessTriggerer, TriggerReport, TriggerSpec, Triggerer, TriggererConfig,
};
use leoflow_executors::{AgentConfig, Attempt, AttemptExit, AttemptKey, Executor};
use tokio::sync::mpsc;

/// The executors of a folder's projects, shared by Lite (which adds projects and routes DAGs as
/// it loads them) and the control plane (which dispatches through it).
#[derive(Clone, Default)]
pub struct ProjectExecutors {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// What every project's agents share (the program, the control plane's endpoint, the SDK)
    /// and where their exits are reported: known once the control plane starts.
    started: Option<(AgentConfig, mpsc::UnboundedSender<AttemptExit>)>,
    /// Each project's directory and Python, with its executor once started.
    projects: HashMap<String, ProjectExecutor>,
    /// DAG id → the project it was last registered from.
    routes: HashMap<String, String>,
    /// For the tries of DAGs no loaded project declares.
    fallback: Option<Arc<SubprocessExecutor>>,
    /// Executors replaced by a project's new venv: their tries may still need stopping.
    retired: Vec<Arc<SubprocessExecutor>>,
    /// The projects' triggerers, once the control plane made them.
    triggerers: Option<Arc<Mutex<Triggerers>>>,
}

struct ProjectExecutor {
    dir: PathBuf,
    python: PythonRuntime,
    executor: Option<Arc<SubprocessExecutor>>,
}

impl fmt::Debug for ProjectExecutors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().expect("not poisoned");
        f.debug_struct("ProjectExecutors")
            .field("projects", &inner.projects.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An executor for the tries of one project (`project_dir: None` for the fallback), its zygote
/// started when asked for.
async fn executor(
    base: &AgentConfig,
    exits: mpsc::UnboundedSender<AttemptExit>,
    project: Option<(&Path, &PythonRuntime)>,
) -> Arc<SubprocessExecutor> {
    let mut config = base.clone();
    if let Some((dir, python)) = project {
        config.python = python.interpreter.clone();
        config.sdk_path = python.sdk_path.clone();
        config.project_dir = Some(dir.to_owned());
    }
    let mut executor = SubprocessExecutor::new(config, exits);
    if let Some((dir, _)) = project
        && let Err(error) = executor.start_zygote().await
    {
        tracing::warn!(
            "{error}; every try of {} starts its own Python (slower)",
            dir.display()
        );
    }
    Arc::new(executor)
}

impl ProjectExecutors {
    /// Records `project` (its directory and the Python its tasks run with); once the control
    /// plane runs, starts its executor — again when its Python changed (a venv made for new
    /// dependencies).
    pub async fn set(&self, project: &str, dir: &Path, python: &PythonRuntime) {
        let started = {
            let mut inner = self.inner.lock().expect("not poisoned");
            if let Some(known) = inner.projects.get(project)
                && known.dir == dir
                && known.python.interpreter == python.interpreter
                && known.executor.is_some()
            {
                return;
            }
            inner.projects.insert(
                project.to_owned(),
                ProjectExecutor {
                    dir: dir.to_owned(),
                    python: python.clone(),
                    executor: None,
                },
            );
            inner.started.clone()
        };
        if let Some((base, exits)) = started {
            let started = executor(&base, exits, Some((dir, python))).await;
            self.install(project, started);
        }
    }

    /// Makes `started` the executor of `project`, keeping the one it replaces for stopping its
    /// tries.
    fn install(&self, project: &str, started: Arc<SubprocessExecutor>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        let Inner {
            projects, retired, ..
        } = &mut *inner;
        if let Some(known) = projects.get_mut(project)
            && let Some(old) = known.executor.replace(started)
        {
            retired.push(old);
        }
    }

    /// The tries of `dag_ids` run in `project` from now on (it was just registered: loaded, or
    /// reloaded). Its triggerer, if it has one, starts again, so its triggers run the project's
    /// code as it is now, as its tries do.
    pub fn route(&self, project: &str, dag_ids: &[String]) {
        let triggerers = {
            let mut inner = self.inner.lock().expect("not poisoned");
            for dag_id in dag_ids {
                inner.routes.insert(dag_id.clone(), project.to_owned());
            }
            inner.triggerers.clone()
        };
        let Some(triggerers) = triggerers else {
            return;
        };
        let Some((_, config)) = dag_ids.first().and_then(|id| self.triggerer_config(id)) else {
            return;
        };
        if let Some(process) = triggerers
            .lock()
            .expect("not poisoned")
            .of(&Some(project.to_owned()))
        {
            process.restart(config);
        }
    }

    /// `project` was removed: its DAGs' tries run outside any project from now on (its
    /// executor stays, for the tries it already started).
    pub fn forget(&self, project: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.routes.retain(|_, routed| routed != project);
    }

    /// Called by the control plane as it starts: `agent` is what every project's agents share.
    /// Starts the executors of the projects recorded so far.
    pub async fn start(
        &self,
        agent: AgentConfig,
        exits: mpsc::UnboundedSender<AttemptExit>,
    ) -> Arc<dyn Executor> {
        let fallback = executor(&agent, exits.clone(), None).await;
        let projects: Vec<(String, PathBuf, PythonRuntime)> = {
            let mut inner = self.inner.lock().expect("not poisoned");
            inner.started = Some((agent.clone(), exits.clone()));
            inner.fallback = Some(fallback);
            inner
                .projects
                .iter()
                .map(|(name, p)| (name.clone(), p.dir.clone(), p.python.clone()))
                .collect()
        };
        let started = futures_util::future::join_all(projects.iter().map(|(_, dir, python)| {
            executor(&agent, exits.clone(), Some((dir.as_path(), python)))
        }))
        .await;
        for ((name, _, _), started) in projects.iter().zip(started) {
            self.install(name, started);
        }
        Arc::new(self.clone())
    }

    /// The executor of `dag_id`'s project, else the fallback.
    fn of(&self, dag_id: &str) -> Option<Arc<SubprocessExecutor>> {
        let inner = self.inner.lock().expect("not poisoned");
        inner
            .routes
            .get(dag_id)
            .and_then(|project| inner.projects.get(project))
            .and_then(|project| project.executor.clone())
            .or_else(|| inner.fallback.clone())
    }
}

impl Executor for ProjectExecutors {
    fn name(&self) -> &str {
        "subprocess"
    }

    fn dispatch(&self, attempt: Attempt) {
        match self.of(&attempt.ti.dag_id) {
            Some(executor) => executor.dispatch(attempt),
            None => tracing::error!("no executor for {}: not started", attempt.ti.dag_id),
        }
    }

    /// Each executor stops only the tries it started: asking all of them finds the one.
    fn terminate(&self, attempt: &AttemptKey, reason: &str) {
        let all: Vec<Arc<SubprocessExecutor>> = {
            let inner = self.inner.lock().expect("not poisoned");
            inner
                .projects
                .values()
                .filter_map(|p| p.executor.clone())
                .chain(inner.fallback.clone())
                .chain(inner.retired.iter().cloned())
                .collect()
        };
        for executor in all {
            executor.terminate(attempt, reason);
        }
    }
}

/// Lite's triggerer on a folder of projects: a triggerer process per project with triggers to
/// run (its Python, its directory as import path), each trigger sent to the project of the DAG
/// it runs for, as tries are.
#[derive(Clone)]
pub struct ProjectTriggerers {
    executors: ProjectExecutors,
    reports: mpsc::UnboundedSender<TriggerReport>,
    running: Arc<Mutex<Triggerers>>,
}

/// The projects' triggerer processes, by project (`None`: outside any project).
type Triggerers = Homes<Option<String>, TriggererConfig>;

impl ProjectExecutors {
    /// The triggerers of these projects, reporting on `reports` (once the control plane
    /// started them: they share its SDK).
    pub fn triggerers(&self, reports: mpsc::UnboundedSender<TriggerReport>) -> ProjectTriggerers {
        let running: Arc<Mutex<Triggerers>> = Arc::default();
        self.inner.lock().expect("not poisoned").triggerers = Some(running.clone());
        ProjectTriggerers {
            executors: self.clone(),
            reports,
            running,
        }
    }

    /// The project `dag_id` runs in and how its Python starts (outside any project: the base
    /// Python's); `None` before the control plane started.
    fn triggerer_config(&self, dag_id: &str) -> Option<(Option<String>, TriggererConfig)> {
        let inner = self.inner.lock().expect("not poisoned");
        let (base, _) = inner.started.as_ref()?;
        let project = inner
            .routes
            .get(dag_id)
            .and_then(|name| Some((name.clone(), inner.projects.get(name)?)));
        Some(match project {
            Some((name, project)) => (
                Some(name),
                TriggererConfig {
                    python: project.python.interpreter.clone(),
                    sdk_path: project.python.sdk_path.clone(),
                    project_dir: Some(project.dir.clone()),
                },
            ),
            None => (
                None,
                TriggererConfig {
                    python: base.python.clone(),
                    sdk_path: base.sdk_path.clone(),
                    project_dir: None,
                },
            ),
        })
    }
}

impl Triggerer for ProjectTriggerers {
    fn start(&self, trigger: TriggerSpec) {
        let Some((project, config)) = self.executors.triggerer_config(&trigger.dag_id) else {
            tracing::error!("no triggerer for {}: not started", trigger.dag_id);
            return;
        };
        let reports = self.reports.clone();
        self.running
            .lock()
            .expect("not poisoned")
            .start(project, trigger, || {
                SubprocessTriggerer::new(config, reports)
            });
    }

    fn cancel(&self, id: &str) {
        self.running.lock().expect("not poisoned").cancel(id);
    }

    fn answer(&self, id: &str, ask: u64, reply: serde_json::Value) {
        self.running
            .lock()
            .expect("not poisoned")
            .answer(id, ask, reply);
    }
}
