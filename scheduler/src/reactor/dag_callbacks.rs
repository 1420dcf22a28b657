//! Callbacks the DAG processor runs in Airflow: a DAG's own (`on_success_callback` /
//! `on_failure_callback` of the DAG), and a task's `on_failure_callback` / `on_retry_callback`
//! for a try that ended without its runner (which runs them otherwise): killed, lost with its
//! agent or pod, stopped past its `execution_timeout`.
//!
//! The core appends `DagCallbackRequested` with the end of a run whose DAG has the callback of
//! that end, and `TaskCallbackRequested` with such a try's end when its task has the callback;
//! `DagCallbackRan` / `TaskCallbackRan` answer them. What is asked and not answered is a fold of
//! the log, so a control plane stopped before a callback ran runs it when it leads again (a
//! callback stopped half-way runs again: at least once, never lost).
//!
//! The triggerer runs them (`leoflow.dag_callbacks.DagCallbackTrigger` and
//! `TaskCallbackTrigger`), as Airflow's DAG processor does: the DAG file runs again and each
//! function gets the template context of a task instance (for a DAG's, the run's task instance
//! that last ended in the run's state, and Airflow's `reason`; for a task's, its own try). What
//! they print or log goes to that try's log.

use leoflow_events::catalog::{
    DagCallback, DagCallbackRan, DagCallbackRequested, TaskCallback, TaskCallbackRan,
    TaskCallbackRequested,
};
use leoflow_executors::triggerer::TriggerSpec;
use serde_json::{Value, json};

use super::triggers::TriggerOwner;
use super::*;
use crate::run_inputs::{self, InputError};

/// A callback the log asks for: a run's (its DAG's own), or a try's (its task's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum CallbackKey {
    /// A DAG's callback of its run's end.
    Dag {
        dag_id: String,
        run_id: String,
        callback: DagCallback,
    },
    /// A task's callback of its try's end.
    Task {
        ti: TaskInstanceKey,
        try_number: i32,
        callback: TaskCallback,
    },
}

impl CallbackKey {
    /// The DAG whose code it is.
    pub(super) fn dag_id(&self) -> &str {
        match self {
            CallbackKey::Dag { dag_id, .. } => dag_id,
            CallbackKey::Task { ti, .. } => &ti.dag_id,
        }
    }

    /// The run it is of.
    pub(super) fn run_id(&self) -> &str {
        match self {
            CallbackKey::Dag { run_id, .. } => run_id,
            CallbackKey::Task { ti, .. } => &ti.run_id,
        }
    }

    /// Its name in dag.py (`on_failure_callback`).
    fn name(&self) -> &'static str {
        match self {
            CallbackKey::Dag { callback, .. } => callback.name(),
            CallbackKey::Task { callback, .. } => callback.name(),
        }
    }

    /// For people: `the on_failure_callback of etl/r1`, `… of task load of etl/r1 (try 2)`.
    pub(super) fn describe(&self) -> String {
        match self {
            CallbackKey::Dag { dag_id, run_id, .. } => {
                format!("the {} of {dag_id}/{run_id}", self.name())
            }
            CallbackKey::Task { ti, try_number, .. } => format!(
                "the {} of task {} of {}/{} (try {try_number})",
                self.name(),
                ti.task_id,
                ti.dag_id,
                ti.run_id
            ),
        }
    }

    /// How its output is marked in the try's log.
    pub(super) fn log_mark(&self) -> &'static str {
        match self {
            CallbackKey::Dag { .. } => "[dag callback]",
            CallbackKey::Task { .. } => "[task callback]",
        }
    }
}

/// A callback the log asks for and has not seen run.
#[derive(Debug, Clone)]
pub(super) struct PendingCallback {
    /// Airflow's reason (`success`, `task_failure`).
    reason: String,
    /// This scheduler appended its `DagCallbackRan`, not folded yet: not to be appended twice.
    answered: bool,
}

/// The Python classes running a DAG's callbacks, and a task's, in the triggerer.
const CALLBACK_TRIGGER: &str = "leoflow.dag_callbacks.DagCallbackTrigger";
const TASK_CALLBACK_TRIGGER: &str = "leoflow.dag_callbacks.TaskCallbackTrigger";

/// How soon a callback whose run the read models do not show ended yet is looked at again.
const NOT_YET: chrono::Duration = chrono::Duration::milliseconds(200);

/// The triggerer's id for a callback.
pub(super) fn callback_id(key: &CallbackKey) -> String {
    match key {
        CallbackKey::Dag { dag_id, run_id, .. } => {
            format!("callback:{dag_id}/{run_id}/{}", key.name())
        }
        CallbackKey::Task { ti, try_number, .. } => format!(
            "callback:{}/{}/{}/{}/{try_number}/{}",
            ti.dag_id,
            ti.run_id,
            ti.task_id,
            ti.map_index,
            key.name()
        ),
    }
}

/// A callback started in the triggerer: which, and the try whose log its output goes to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StartedCallback {
    pub key: CallbackKey,
    pub log: Option<(TaskInstanceKey, i32)>,
}

/// A callback's trigger, ready to start, or why it cannot be.
enum Job {
    Ready(Box<(TriggerSpec, StartedCallback)>),
    /// The read models do not show the run ended yet (or it runs again after a clear).
    NotYet,
    /// It cannot run: said in its `DagCallbackRan`.
    Impossible(String),
}

impl Reactor {
    pub(super) fn dag_callback_requested(&mut self, e: &DagCallbackRequested) {
        let key = CallbackKey::Dag {
            dag_id: e.dag_id.clone(),
            run_id: e.run_id.clone(),
            callback: e.callback,
        };
        self.callback_requested(key, &e.reason);
    }

    pub(super) fn dag_callback_ran(&mut self, e: &DagCallbackRan) {
        self.callbacks.remove(&CallbackKey::Dag {
            dag_id: e.dag_id.clone(),
            run_id: e.run_id.clone(),
            callback: e.callback,
        });
    }

    pub(super) fn task_callback_requested(&mut self, e: &TaskCallbackRequested) {
        let key = CallbackKey::Task {
            ti: e.ti.clone(),
            try_number: e.try_number,
            callback: e.callback,
        };
        self.callback_requested(key, &e.reason);
    }

    pub(super) fn task_callback_ran(&mut self, e: &TaskCallbackRan) {
        self.callbacks.remove(&CallbackKey::Task {
            ti: e.ti.clone(),
            try_number: e.try_number,
            callback: e.callback,
        });
    }

    fn callback_requested(&mut self, key: CallbackKey, reason: &str) {
        let pending = PendingCallback {
            reason: reason.to_owned(),
            answered: false,
        };
        self.callbacks.insert(key, pending);
    }

    /// The ids of the callbacks still to run (their triggers are not stopped).
    pub(super) fn pending_callback_ids(&self) -> BTreeSet<String> {
        self.callbacks.keys().map(callback_id).collect()
    }

    /// Starts the callbacks the log asks for and the triggerer does not run yet; returns when
    /// to look again for one whose run the read models do not show ended yet.
    pub(super) async fn sync_callbacks(&mut self) -> Option<DateTime<Utc>> {
        let waiting: Vec<(CallbackKey, String)> = self
            .callbacks
            .iter()
            .filter(|(key, pending)| {
                !pending.answered
                    && !self
                        .triggers
                        .as_ref()
                        .is_some_and(|t| t.runs(&callback_id(key)))
            })
            .map(|(key, pending)| (key.clone(), pending.reason.clone()))
            .collect();
        let mut again = None;
        for (key, reason) in waiting {
            if self.triggers.is_none() {
                let why = "callbacks run in the triggerer, which this control plane does not run";
                self.record_callback_ran(&key, Some(why.to_owned())).await;
                continue;
            }
            let home = self.trigger_home(key.dag_id());
            match callback_job(&self.store, &self.specs, &key, &reason, home).await {
                Job::Ready(job) => {
                    let (spec, started) = *job;
                    if let Some(triggers) = self.triggers.as_mut() {
                        triggers.start_own(spec, started.into());
                    }
                }
                Job::NotYet => again = Some(Utc::now() + NOT_YET),
                Job::Impossible(why) => self.record_callback_ran(&key, Some(why)).await,
            }
        }
        again
    }

    /// Records that a callback ran (or could not), in its DAG's tenant, as the triggerer.
    pub(super) async fn record_callback_ran(&mut self, key: &CallbackKey, error: Option<String>) {
        if let Some(why) = &error {
            tracing::warn!("{}: {why}", key.describe());
        }
        let tenant = self.dags.get(key.dag_id()).map(|dag| dag.tenant.clone());
        let metadata = Metadata {
            tenant,
            ..Metadata::actor("triggerer")
        };
        let batch = match key.clone() {
            CallbackKey::Dag {
                dag_id,
                run_id,
                callback,
            } => AppendBatch::new().push(
                DagCallbackRan {
                    dag_id,
                    run_id,
                    callback,
                    error,
                },
                &metadata,
            ),
            CallbackKey::Task {
                ti,
                try_number,
                callback,
            } => AppendBatch::new().push(
                TaskCallbackRan {
                    ti,
                    try_number,
                    callback,
                    error,
                },
                &metadata,
            ),
        };
        match self.store.append(batch).await {
            Ok(_) => {
                if let Some(pending) = self.callbacks.get_mut(key) {
                    pending.answered = true;
                }
            }
            // Asked again at the next pass (or by the next leader).
            Err(error) => tracing::warn!("a callback's end is not recorded yet: {error}"),
        }
    }
}

/// What `DagCallbackRan` says of a callback trigger's event (`{"failed": [...], "error"}`).
pub(super) fn ran_error(payload: &Value) -> Option<String> {
    if let Some(error) = payload["error"].as_str() {
        return Some(error.to_owned());
    }
    let failed: Vec<&str> = payload["failed"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    (!failed.is_empty()).then(|| format!("{} raised (its traceback is logged)", failed.join(", ")))
}

/// The trigger running a callback; `home`: where its DAG's triggers run (its tenant and image).
async fn callback_job(
    store: &EventStore,
    specs: &Specs,
    key: &CallbackKey,
    reason: &str,
    home: (String, Option<String>),
) -> Job {
    let inputs = match key {
        CallbackKey::Dag {
            dag_id,
            run_id,
            callback,
        } => dag_callback_inputs(store, specs, (dag_id, run_id, *callback)).await,
        CallbackKey::Task { ti, try_number, .. } => {
            task_callback_inputs(store, specs, ti, *try_number).await
        }
    };
    match inputs {
        Ok(Some(inputs)) => Job::Ready(Box::new(inputs.job(key, reason, home))),
        Ok(None) => Job::NotYet,
        Err(InputError::Unavailable(why)) => {
            tracing::warn!("a callback waits for the database: {why}");
            Job::NotYet
        }
        Err(InputError::Missing(why)) => Job::Impossible(why),
    }
}

/// What a callback's trigger is given: the DAG file, the run's context, the task instance
/// whose context the functions get (and whose try's log takes their output).
struct CallbackInputs {
    file: run_inputs::DagFile,
    run: Value,
    ti: Option<(TaskInstanceKey, i32, Value)>,
}

impl CallbackInputs {
    fn job(
        self,
        key: &CallbackKey,
        reason: &str,
        (tenant, image): (String, Option<String>),
    ) -> (TriggerSpec, StartedCallback) {
        let (ti, log) = match self.ti {
            Some((ti, try_number, task)) => {
                let json = json!({
                    "task_id": ti.task_id, "map_index": ti.map_index, "try_number": try_number,
                    "task": task,
                });
                (json, Some((ti, try_number)))
            }
            None => (Value::Null, None),
        };
        let classpath = match key {
            CallbackKey::Dag { .. } => CALLBACK_TRIGGER,
            CallbackKey::Task { .. } => TASK_CALLBACK_TRIGGER,
        };
        let dag_id = key.dag_id().to_owned();
        let kwargs = json!({
            // The DAG file knows the DAG by its name, not its key.
            "dag_id": leoflow_events::dag_name(&dag_id), "run_id": key.run_id(), "callback": key.name(),
            "reason": reason, "fileloc": self.file.fileloc, "source": self.file.source,
            "run": self.run, "ti": ti,
        });
        let spec = TriggerSpec {
            id: callback_id(key),
            classpath: classpath.to_owned(),
            kwargs,
            repeat: false,
            dag_id,
            tenant,
            image,
            paths: Vec::new(),
        };
        let started = StartedCallback {
            key: key.clone(),
            log,
        };
        (spec, started)
    }
}

/// A run's callback's inputs, with the context of the task instance that last ended in the
/// run's state; `None` while the read models do not show the run ended that way.
async fn dag_callback_inputs(
    store: &EventStore,
    specs: &Specs,
    (dag_id, run_id, callback): (&String, &String, DagCallback),
) -> Result<Option<CallbackInputs>, InputError> {
    let pool = store.pool();
    let unavailable = |e: sqlx::Error| InputError::Unavailable(e.to_string());
    let ended = match callback {
        DagCallback::OnSuccess => "success",
        DagCallback::OnFailure => "failed",
    };
    let Some(run) = read::runs::find(pool, dag_id, run_id)
        .await
        .map_err(unavailable)?
    else {
        return Err(InputError::Missing(format!(
            "the run {dag_id}/{run_id} is gone"
        )));
    };
    if run.state != ended {
        return Ok(None);
    }
    let (file, context) = run_of(store, specs, dag_id, run_id).await?;
    let last = read::task_instances::last_ended(pool, dag_id, run_id, ended)
        .await
        .map_err(unavailable)?;
    let ti = match last {
        Some((task_id, map_index, try_number)) => {
            let task = run_inputs::task(&file.document, &task_id)?.clone();
            let key = TaskInstanceKey {
                dag_id: dag_id.clone(),
                run_id: run_id.clone(),
                task_id,
                map_index,
            };
            Some((key, try_number, task))
        }
        None => None,
    };
    Ok(Some(CallbackInputs {
        file,
        run: context,
        ti,
    }))
}

/// A try's callback's inputs: its run, its task instance.
async fn task_callback_inputs(
    store: &EventStore,
    specs: &Specs,
    ti: &TaskInstanceKey,
    try_number: i32,
) -> Result<Option<CallbackInputs>, InputError> {
    let (file, context) = run_of(store, specs, &ti.dag_id, &ti.run_id).await?;
    let task = run_inputs::task(&file.document, &ti.task_id)?.clone();
    Ok(Some(CallbackInputs {
        file,
        run: context,
        ti: Some((ti.clone(), try_number, task)),
    }))
}

/// The DAG file of a run's version, and the run as the task context describes it.
async fn run_of(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
) -> Result<(run_inputs::DagFile, Value), InputError> {
    let row = read::runs::context(store.pool(), dag_id, run_id)
        .await
        .map_err(|e| InputError::Unavailable(e.to_string()))?
        .ok_or_else(|| InputError::Missing(format!("the run {dag_id}/{run_id} is gone")))?;
    let version = row.dag_version_hash.clone().unwrap_or_default();
    let file = run_inputs::dag_file(store, specs, dag_id, &version).await?;
    let context = run_inputs::run_context(store, dag_id, run_id, &row, &file.document).await?;
    Ok((file, context))
}

/// Who a started callback trigger is for.
impl From<StartedCallback> for TriggerOwner {
    fn from(started: StartedCallback) -> Self {
        TriggerOwner::Callback(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callbacks_record_names_what_went_wrong() {
        assert_eq!(ran_error(&json!({"failed": [], "error": null})), None);
        assert_eq!(
            ran_error(&json!({"failed": ["page", "mail"], "error": null})).as_deref(),
            Some("page, mail raised (its traceback is logged)")
        );
        assert_eq!(
            ran_error(&json!({"failed": [], "error": "the DAG file dag.py failed to load"}))
                .as_deref(),
            Some("the DAG file dag.py failed to load")
        );
        let key = CallbackKey::Dag {
            dag_id: "d".to_owned(),
            run_id: "r".to_owned(),
            callback: DagCallback::OnFailure,
        };
        assert_eq!(callback_id(&key), "callback:d/r/on_failure_callback");
        let key = CallbackKey::Task {
            ti: TaskInstanceKey::mapped("d", "r", "t", 2),
            try_number: 3,
            callback: TaskCallback::OnRetry,
        };
        assert_eq!(callback_id(&key), "callback:d/r/t/2/3/on_retry_callback");
        assert_eq!(
            key.describe(),
            "the on_retry_callback of task t of d/r (try 3)"
        );
    }
}
