//! The DAG as the scheduler sees it: tasks, their upstream, trigger rules and retry policy,
//! read from a DAG of dag.json.

use std::collections::{BTreeMap, BTreeSet};

use leoflow_events::catalog::{DagCallback, TaskCallback};
use serde::Deserialize;
use serde_json::Value;

use crate::assets::{Alias, Asset};
use crate::retry::RetryPolicy;
use crate::setup_teardown::{SetupLinks, TaskRole};
use crate::trigger::TriggerRule;

/// What a task does with its result, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Runs; its success or failure is all that matters.
    Plain,
    /// Returns the task ids to follow; other direct downstream tasks are skipped.
    Branch,
    /// A falsy result skips downstream tasks (all of them, or only the direct ones when
    /// `ignore_downstream_trigger_rules` is false).
    ShortCircuit {
        /// Skip everything downstream, whatever its trigger rule.
        ignore_downstream_trigger_rules: bool,
    },
}

/// How a task's priority among waiting task instances is reckoned (Airflow's `weight_rule`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightRule {
    /// Its weight plus every downstream task's (Airflow's default).
    #[default]
    Downstream,
    /// Its weight plus every upstream task's.
    Upstream,
    /// Its own weight.
    Absolute,
}

/// Where the length of one mapped argument comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapLength {
    /// A literal list or dict in dag.json: its length is known.
    Literal(usize),
    /// A task's result: known when that task has run.
    FromTask(String),
}

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task's id.
    pub task_id: String,
    /// Direct upstream task ids.
    pub upstream: Vec<String>,
    /// Direct downstream task ids.
    pub downstream: Vec<String>,
    /// When it may run.
    pub trigger_rule: TriggerRule,
    /// Retries and their timing.
    pub retry: RetryPolicy,
    /// Seconds a try may run.
    pub execution_timeout: Option<f64>,
    /// Pool, slots, priority and queue, carried into `TaskQueued`.
    pub pool: String,
    /// Slots it holds in its pool.
    pub pool_slots: i32,
    /// Priority among queued task instances: its own `priority_weight` reckoned by its
    /// [`WeightRule`] over the DAG (done by [`DagSpec::link`]).
    pub priority_weight: i32,
    /// How its priority is reckoned.
    pub weight_rule: WeightRule,
    /// Executor queue.
    pub queue: String,
    /// Branch, short-circuit or plain.
    pub kind: TaskKind,
    /// For a mapped task, its mapped arguments: one instance per combination (Airflow's
    /// cartesian product of `.expand()` arguments; `.expand_kwargs()` is one argument).
    pub mapped: Option<Vec<MapLength>>,
    /// For a task of a mapped task group, the group: the task runs once per map index of the
    /// group (its `mapped` are the group's), and an instance waits only for the same map index
    /// of the group's other tasks.
    pub mapped_group: Option<String>,
    /// leoflow.yaml's `resources` for the task (CPU and memory), as dag.json carries them.
    pub resources: Option<Value>,
    /// leoflow.yaml's `pod` settings for the task (Kubernetes names), as dag.json carries them.
    pub pod: Option<Value>,
    /// How many of its task instances may run at once.
    pub concurrency: TaskConcurrency,
    /// Whether it waits for its previous run (Airflow's `depends_on_past`).
    pub past: PastDependency,
    /// For an `ExternalTaskMarker`, the task of another DAG it marks: a clear of it clears that
    /// task too.
    pub marks: Option<ExternalMarker>,
    /// Setup, teardown, or neither.
    pub role: TaskRole,
    /// The setups around it, as its role makes them matter (filled by [`DagSpec::link`]).
    pub setups: SetupLinks,
    /// The assets its success updates (Airflow's `outlets`).
    pub outlets: Vec<Asset>,
    /// The names of the asset aliases its success may add asset events through.
    pub outlet_aliases: Vec<String>,
    /// Its failure and retry callbacks (dag.json's task `callbacks`): asked of the triggerer
    /// for a try that ended without its runner, which runs them otherwise.
    pub callbacks: BTreeSet<TaskCallback>,
}

impl TaskSpec {
    /// The tasks whose results give its mapped arguments' lengths.
    pub fn length_sources(&self) -> impl Iterator<Item = &String> {
        self.mapped
            .iter()
            .flatten()
            .filter_map(|source| match source {
                MapLength::FromTask(from) => Some(from),
                MapLength::Literal(_) => None,
            })
    }
}

/// What an `ExternalTaskMarker` marks: a task of another DAG, in that DAG's run of the
/// marker's run's logical date (or of `logical_date`), cleared with everything downstream of it
/// when the marker is cleared, as Airflow clears it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExternalMarker {
    /// The other DAG (a template when it holds `{{`).
    pub external_dag_id: String,
    /// Its task (a template when it holds `{{`).
    pub external_task_id: String,
    /// The logical date of the run to clear, when not the marker's run's (a template when it
    /// holds `{{`).
    #[serde(default)]
    pub logical_date: Option<String>,
    /// How many markers a clear may follow from this one.
    #[serde(default = "default_recursion_depth")]
    pub recursion_depth: u32,
}

fn default_recursion_depth() -> u32 {
    10
}

impl ExternalMarker {
    /// Whether one of its fields is a template, known only once the marker rendered it.
    pub fn is_templated(&self) -> bool {
        [&self.external_dag_id, &self.external_task_id]
            .into_iter()
            .chain(&self.logical_date)
            .any(|field| field.contains("{{"))
    }
}

/// Airflow's `depends_on_past` and `wait_for_downstream`: a task instance is queued only when
/// every instance of its task in the DAG's previous run (by logical date) succeeded or was
/// skipped — and, with `wait_for_downstream`, those of its direct downstream tasks there too.
/// A run with no previous run goes; a previous run without the task holds it back, unless
/// `ignore_first_depends_on_past`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct PastDependency {
    /// Wait for the previous run's instances of this task.
    #[serde(default)]
    pub depends_on_past: bool,
    /// Also wait for the previous run's instances of its direct downstream tasks.
    #[serde(default)]
    pub wait_for_downstream: bool,
    /// A previous run without the task does not hold it back.
    #[serde(default)]
    pub ignore_first_depends_on_past: bool,
}

impl PastDependency {
    /// Whether the previous run matters at all.
    pub fn waits(&self) -> bool {
        self.depends_on_past || self.wait_for_downstream
    }
}

/// Airflow's `max_active_tis_per_dag` and `max_active_tis_per_dagrun`: at most this many of
/// a task's instances queued or running at once, across the DAG's runs and within one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct TaskConcurrency {
    /// Across all runs of the DAG.
    #[serde(default, rename = "max_active_tis_per_dag")]
    pub per_dag: Option<i32>,
    /// Within one run (a mapped task's instances).
    #[serde(default, rename = "max_active_tis_per_dagrun")]
    pub per_run: Option<i32>,
}

/// A DAG: its tasks in dag.json order (sorted by id).
#[derive(Debug, Clone, PartialEq)]
pub struct DagSpec {
    /// The DAG.
    pub dag_id: String,
    /// Its tasks by id.
    pub tasks: BTreeMap<String, TaskSpec>,
    /// The DAG's own callbacks (dag.json's `callbacks`): a run the scheduler ends asks for the
    /// one of its end.
    pub callbacks: BTreeSet<DagCallback>,
}

/// A DAG document the scheduler cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The document does not have the fields a DAG needs.
    #[error("not a dag.json DAG: {0}")]
    Shape(String),
    /// A task lists an upstream task that does not exist.
    #[error("task {task:?} has unknown upstream task {upstream:?}")]
    UnknownUpstream {
        /// The task.
        task: String,
        /// The missing upstream id.
        upstream: String,
    },
    /// A cycle (dag.json from the compiler has none; a hand-written one might).
    #[error("the DAG has a cycle through {0:?}")]
    Cycle(String),
}

#[derive(Deserialize)]
struct RawDag {
    dag_id: String,
    tasks: Vec<RawTask>,
    #[serde(default)]
    callbacks: Vec<DagCallbackName>,
}

/// A DAG callback as dag.json names it.
#[derive(Deserialize)]
enum DagCallbackName {
    #[serde(rename = "on_success_callback")]
    OnSuccess,
    #[serde(rename = "on_failure_callback")]
    OnFailure,
}

#[derive(Deserialize)]
struct RawTask {
    task_id: String,
    operator: String,
    upstream: Vec<String>,
    trigger_rule: TriggerRule,
    retries: u32,
    retry_delay: Option<f64>,
    retry_exponential_backoff: bool,
    max_retry_delay: Option<f64>,
    execution_timeout: Option<f64>,
    pool: String,
    pool_slots: i32,
    priority_weight: i32,
    queue: String,
    #[serde(default)]
    short_circuit: Option<RawShortCircuit>,
    #[serde(default)]
    custom: Option<RawCustom>,
    #[serde(default)]
    mapped: Option<RawMapped>,
    #[serde(default)]
    mapped_group: Option<RawMappedGroup>,
    #[serde(default)]
    weight_rule: WeightRule,
    #[serde(default)]
    resources: Option<Value>,
    #[serde(default)]
    pod: Option<Value>,
    #[serde(flatten)]
    concurrency: TaskConcurrency,
    #[serde(flatten)]
    past: PastDependency,
    #[serde(default)]
    is_setup: bool,
    #[serde(default)]
    is_teardown: bool,
    #[serde(default)]
    on_failure_fail_dagrun: bool,
    #[serde(default)]
    outlets: Vec<Asset>,
    #[serde(default)]
    outlet_aliases: Vec<Alias>,
    #[serde(default)]
    callbacks: Vec<String>,
}

impl RawTask {
    fn role(&self) -> TaskRole {
        match (self.is_setup, self.is_teardown) {
            (true, _) => TaskRole::Setup,
            (_, true) => TaskRole::Teardown {
                fails_run: self.on_failure_fail_dagrun,
            },
            _ => TaskRole::Work,
        }
    }
}

/// What a task of a mapped task group records of its group.
#[derive(Deserialize)]
struct RawMappedGroup {
    group_id: String,
    expand: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct RawMapped {
    expand: BTreeMap<String, Value>,
    expand_kwargs: Option<Value>,
}

fn map_length(value: &Value) -> Result<MapLength, SpecError> {
    match value {
        Value::Array(items) => Ok(MapLength::Literal(items.len())),
        Value::Object(map) => match map.get("__xcom__") {
            Some(reference) => reference["task_id"]
                .as_str()
                .map(|t| MapLength::FromTask(t.to_owned()))
                .ok_or_else(|| SpecError::Shape(format!("bad XCom reference {reference}"))),
            None => Ok(MapLength::Literal(map.len())),
        },
        other => Err(SpecError::Shape(format!("cannot map over {other}"))),
    }
}

/// A custom operator (a class of the project, or of the standard provider): whether it
/// branches, and what the scheduler reads of the standard provider's `ExternalTaskMarker`.
#[derive(Deserialize)]
struct RawCustom {
    #[serde(default)]
    branch: bool,
    #[serde(default)]
    module: String,
    #[serde(default, rename = "class")]
    class_name: String,
    #[serde(default)]
    arguments: Value,
}

impl RawCustom {
    /// What it marks, when it is the standard provider's `ExternalTaskMarker`.
    fn marks(&self) -> Option<ExternalMarker> {
        let standard = matches!(
            self.module.as_str(),
            "airflow.providers.standard.sensors.external_task" | "airflow.sensors.external_task"
        );
        (standard && self.class_name == "ExternalTaskMarker")
            .then(|| serde_json::from_value(self.arguments.clone()).ok())
            .flatten()
    }
}

#[derive(Deserialize)]
struct RawShortCircuit {
    ignore_downstream_trigger_rules: bool,
}

/// The task ids of one DAG object of a dag.json document, in its order: the instances a new run
/// of it starts with.
pub fn task_ids(dag: &Value) -> Vec<String> {
    dag["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|task| task["task_id"].as_str().map(str::to_owned))
        .collect()
}

impl DagSpec {
    /// Reads one DAG object of a dag.json document.
    pub fn from_dag_json(dag: &Value) -> Result<Self, SpecError> {
        let raw: RawDag =
            serde_json::from_value(dag.clone()).map_err(|e| SpecError::Shape(e.to_string()))?;
        let mut tasks: BTreeMap<String, TaskSpec> = BTreeMap::new();
        for t in raw.tasks {
            let custom_branch = t.custom.as_ref().is_some_and(|c| c.branch);
            let kind = match (t.operator.as_str(), &t.short_circuit) {
                _ if custom_branch => TaskKind::Branch,
                ("BranchPythonOperator" | "@task.branch", _) => TaskKind::Branch,
                (_, Some(sc)) => TaskKind::ShortCircuit {
                    ignore_downstream_trigger_rules: sc.ignore_downstream_trigger_rules,
                },
                _ => TaskKind::Plain,
            };
            let mapped = match (&t.mapped, &t.mapped_group) {
                (_, Some(group)) => Some(
                    group
                        .expand
                        .values()
                        .map(map_length)
                        .collect::<Result<_, _>>()?,
                ),
                (None, None) => None,
                (Some(m), None) => Some(match &m.expand_kwargs {
                    Some(kwargs) => vec![map_length(kwargs)?],
                    None => m
                        .expand
                        .values()
                        .map(map_length)
                        .collect::<Result<_, _>>()?,
                }),
            };
            if t.is_setup && t.is_teardown {
                return Err(SpecError::Shape(format!(
                    "task {:?} is both a setup and a teardown",
                    t.task_id
                )));
            }
            let role = t.role();
            tasks.insert(
                t.task_id.clone(),
                TaskSpec {
                    task_id: t.task_id,
                    upstream: t.upstream,
                    downstream: Vec::new(),
                    trigger_rule: t.trigger_rule,
                    retry: RetryPolicy {
                        retries: t.retries,
                        retry_delay: t.retry_delay.unwrap_or(300.0),
                        exponential_backoff: t.retry_exponential_backoff,
                        max_retry_delay: t.max_retry_delay,
                    },
                    execution_timeout: t.execution_timeout,
                    pool: t.pool,
                    pool_slots: t.pool_slots,
                    priority_weight: t.priority_weight,
                    weight_rule: t.weight_rule,
                    queue: t.queue,
                    kind,
                    mapped,
                    mapped_group: t.mapped_group.map(|g| g.group_id),
                    resources: t.resources,
                    pod: t.pod,
                    concurrency: t.concurrency,
                    past: t.past,
                    marks: t.custom.as_ref().and_then(RawCustom::marks),
                    role,
                    setups: SetupLinks::default(),
                    outlets: t.outlets,
                    outlet_aliases: t.outlet_aliases.into_iter().map(|a| a.name).collect(),
                    // The runner runs the others, whatever becomes of its try.
                    callbacks: t
                        .callbacks
                        .iter()
                        .filter_map(|name| match name.as_str() {
                            "on_failure_callback" => Some(TaskCallback::OnFailure),
                            "on_retry_callback" => Some(TaskCallback::OnRetry),
                            _ => None,
                        })
                        .collect(),
                },
            );
        }
        let mut spec = Self::link(raw.dag_id, tasks)?;
        spec.callbacks = raw
            .callbacks
            .into_iter()
            .map(|name| match name {
                DagCallbackName::OnSuccess => DagCallback::OnSuccess,
                DagCallbackName::OnFailure => DagCallback::OnFailure,
            })
            .collect();
        Ok(spec)
    }

    /// Fills in downstream lists and checks the graph.
    pub fn link(dag_id: String, mut tasks: BTreeMap<String, TaskSpec>) -> Result<Self, SpecError> {
        let edges: Vec<(String, String)> = tasks
            .values()
            .flat_map(|t| t.upstream.iter().map(|u| (u.clone(), t.task_id.clone())))
            .collect();
        for (up, down) in &edges {
            match tasks.get_mut(up) {
                Some(task) => task.downstream.push(down.clone()),
                None => {
                    return Err(SpecError::UnknownUpstream {
                        task: down.clone(),
                        upstream: up.clone(),
                    });
                }
            }
        }
        for task in tasks.values() {
            for from in task.length_sources() {
                // A task of a mapped group waits for what its group maps over (see
                // `RunState::verdict`), whether or not it depends on it.
                let known = match task.mapped_group {
                    Some(_) => tasks.contains_key(from),
                    None => task.upstream.iter().any(|u| u == from),
                };
                if !known {
                    return Err(SpecError::Shape(format!(
                        "task {:?} maps over {from:?}, which is not upstream of it",
                        task.task_id
                    )));
                }
            }
        }
        let mut spec = Self {
            dag_id,
            tasks,
            callbacks: BTreeSet::new(),
        };
        spec.check_acyclic()?;
        spec.reckon_priorities();
        spec.link_setups();
        Ok(spec)
    }

    /// Turns each task's own `priority_weight` into its priority by its weight rule, as
    /// Airflow's `priority_weight_total`: plus the own weights of every task downstream of it
    /// (`downstream`, the default), or upstream of it (`upstream`), or alone (`absolute`).
    fn reckon_priorities(&mut self) {
        let own: BTreeMap<String, i32> = self
            .tasks
            .values()
            .map(|t| (t.task_id.clone(), t.priority_weight))
            .collect();
        let totals: Vec<(String, i32)> = self
            .tasks
            .values()
            .map(|task| {
                let others = match task.weight_rule {
                    WeightRule::Downstream => self.all_downstream(&task.task_id),
                    WeightRule::Upstream => self.all_upstream(&task.task_id),
                    WeightRule::Absolute => BTreeSet::new(),
                };
                let total = others
                    .iter()
                    .fold(i64::from(own[&task.task_id]), |sum, id| {
                        sum + i64::from(own[id])
                    });
                // Airflow keeps the total within what its database column holds.
                let total = total.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
                (task.task_id.clone(), total)
            })
            .collect();
        for (task_id, total) in totals {
            self.tasks
                .get_mut(&task_id)
                .expect("listed")
                .priority_weight = total;
        }
    }

    fn check_acyclic(&self) -> Result<(), SpecError> {
        // Kahn's algorithm: whatever cannot be ordered is on a cycle.
        let mut indegree: BTreeMap<&str, usize> = self
            .tasks
            .values()
            .map(|t| (t.task_id.as_str(), t.upstream.len()))
            .collect();
        let mut ready: Vec<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(t, _)| *t)
            .collect();
        let mut ordered = BTreeSet::new();
        while let Some(task) = ready.pop() {
            ordered.insert(task);
            for down in &self.tasks[task].downstream {
                let d = indegree.get_mut(down.as_str()).expect("linked");
                *d -= 1;
                if *d == 0 {
                    ready.push(down);
                }
            }
        }
        match self.tasks.keys().find(|t| !ordered.contains(t.as_str())) {
            Some(task) => Err(SpecError::Cycle(task.clone())),
            None => Ok(()),
        }
    }

    /// Tasks with no downstream task: a run's outcome is theirs.
    pub fn leaves(&self) -> impl Iterator<Item = &TaskSpec> {
        self.tasks.values().filter(|t| t.downstream.is_empty())
    }

    /// Every task downstream of `task_id`, transitively.
    pub fn all_downstream(&self, task_id: &str) -> BTreeSet<String> {
        self.reachable(task_id, |task| &task.downstream)
    }

    /// Every task upstream of `task_id`, transitively.
    pub fn all_upstream(&self, task_id: &str) -> BTreeSet<String> {
        self.reachable(task_id, |task| &task.upstream)
    }

    fn reachable(
        &self,
        task_id: &str,
        next: impl Fn(&TaskSpec) -> &Vec<String>,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![task_id.to_owned()];
        while let Some(t) = stack.pop() {
            for d in next(&self.tasks[&t]) {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }
}
