//! A DAG's own callbacks (Airflow's DAG-level `on_success_callback` / `on_failure_callback`).
//!
//! The core appends `DagCallbackRequested` with the end of a run whose DAG has the callback of
//! that end; `DagCallbackRan` answers it. What is asked and not answered is a fold of the log,
//! so a control plane stopped before a callback ran runs it when it leads again (a callback
//! stopped half-way runs again: at least once, never lost).
//!
//! The triggerer runs them (`leoflow.dag_callbacks.DagCallbackTrigger`), as Airflow's DAG
//! processor does: the DAG file runs again and each function gets the template context of the
//! run's task instance that last ended in the run's state, and Airflow's `reason`. What they
//! print or log goes to that try's log.

use leoflow_events::catalog::{DagCallback, DagCallbackRan, DagCallbackRequested};
use leoflow_executors::triggerer::TriggerSpec;
use serde_json::{Value, json};

use super::triggers::TriggerOwner;
use super::*;
use crate::run_inputs::{self, InputError};

/// A run's callback, by DAG, run and which.
pub(super) type CallbackKey = (String, String, DagCallback);

/// A callback the log asks for and has not seen run.
#[derive(Debug, Clone)]
pub(super) struct PendingCallback {
    /// Airflow's reason (`success`, `task_failure`).
    reason: String,
    /// This scheduler appended its `DagCallbackRan`, not folded yet: not to be appended twice.
    answered: bool,
}

/// The Python class running a DAG's callbacks in the triggerer.
const CALLBACK_TRIGGER: &str = "leoflow.dag_callbacks.DagCallbackTrigger";

/// How soon a callback whose run the read models do not show ended yet is looked at again.
const NOT_YET: chrono::Duration = chrono::Duration::milliseconds(200);

/// The triggerer's id for a run's callback.
pub(super) fn callback_id((dag_id, run_id, callback): &CallbackKey) -> String {
    format!("callback:{dag_id}/{run_id}/{}", callback.name())
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
        let key = (e.dag_id.clone(), e.run_id.clone(), e.callback);
        let pending = PendingCallback {
            reason: e.reason.clone(),
            answered: false,
        };
        self.dag_callbacks.insert(key, pending);
    }

    pub(super) fn dag_callback_ran(&mut self, e: &DagCallbackRan) {
        self.dag_callbacks
            .remove(&(e.dag_id.clone(), e.run_id.clone(), e.callback));
    }

    /// The ids of the callbacks still to run (their triggers are not stopped).
    pub(super) fn pending_callback_ids(&self) -> BTreeSet<String> {
        self.dag_callbacks.keys().map(callback_id).collect()
    }

    /// Starts the callbacks the log asks for and the triggerer does not run yet; returns when
    /// to look again for one whose run the read models do not show ended yet.
    pub(super) async fn sync_dag_callbacks(&mut self) -> Option<DateTime<Utc>> {
        let waiting: Vec<(CallbackKey, String)> = self
            .dag_callbacks
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
                let why = "DAG callbacks run in the triggerer, which this control plane does not \
                           run (leoflow server with the Kubernetes executor)";
                self.record_callback_ran(&key, Some(why.to_owned())).await;
                continue;
            }
            match callback_job(&self.store, &self.specs, &key, &reason).await {
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
        let (dag_id, run_id, callback) = key.clone();
        if let Some(why) = &error {
            tracing::warn!("the {} of {dag_id}/{run_id}: {why}", callback.name());
        }
        let tenant = self.dags.get(&dag_id).map(|dag| dag.tenant.clone());
        let event = DagCallbackRan {
            dag_id,
            run_id,
            callback,
            error,
        };
        let metadata = Metadata {
            tenant,
            ..Metadata::actor("triggerer")
        };
        match self
            .store
            .append(AppendBatch::new().push(event, &metadata))
            .await
        {
            Ok(_) => {
                if let Some(pending) = self.dag_callbacks.get_mut(key) {
                    pending.answered = true;
                }
            }
            // Asked again at the next pass (or by the next leader).
            Err(error) => tracing::warn!("a DAG callback's end is not recorded yet: {error}"),
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

/// The trigger running a run's callback, with the context of the task instance that last ended
/// in the run's state.
async fn callback_job(store: &EventStore, specs: &Specs, key: &CallbackKey, reason: &str) -> Job {
    match callback_inputs(store, specs, key, reason).await {
        Ok(job) => job,
        Err(InputError::Unavailable(why)) => {
            tracing::warn!("a DAG callback waits for the database: {why}");
            Job::NotYet
        }
        Err(InputError::Missing(why)) => Job::Impossible(why),
    }
}

async fn callback_inputs(
    store: &EventStore,
    specs: &Specs,
    key: &CallbackKey,
    reason: &str,
) -> Result<Job, InputError> {
    let (dag_id, run_id, callback) = key;
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
        return Ok(Job::Impossible(format!(
            "the run {dag_id}/{run_id} is gone"
        )));
    };
    if run.state != ended {
        return Ok(Job::NotYet);
    }
    let row = read::runs::context(pool, dag_id, run_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| InputError::Missing(format!("the run {dag_id}/{run_id} is gone")))?;
    let version = row.dag_version_hash.clone().unwrap_or_default();
    let file = run_inputs::dag_file(store, specs, dag_id, &version).await?;
    let context = run_inputs::run_context(store, dag_id, run_id, &row, &file.document).await?;
    let last = read::task_instances::last_ended(pool, dag_id, run_id, ended)
        .await
        .map_err(unavailable)?;
    let (ti, log) = match last {
        Some((task_id, map_index, try_number)) => {
            let task = run_inputs::task(&file.document, &task_id)?;
            let ti = json!({
                "task_id": task_id, "map_index": map_index, "try_number": try_number, "task": task,
            });
            let key = TaskInstanceKey {
                dag_id: dag_id.clone(),
                run_id: run_id.clone(),
                task_id,
                map_index,
            };
            (ti, Some((key, try_number)))
        }
        None => (Value::Null, None),
    };
    let kwargs = json!({
        "dag_id": dag_id, "run_id": run_id, "callback": callback.name(), "reason": reason,
        "fileloc": file.fileloc, "source": file.source, "run": context, "ti": ti,
    });
    let spec = TriggerSpec {
        id: callback_id(key),
        classpath: CALLBACK_TRIGGER.to_owned(),
        kwargs,
        repeat: false,
        dag_id: dag_id.clone(),
        paths: Vec::new(),
    };
    let started = StartedCallback {
        key: key.clone(),
        log,
    };
    Ok(Job::Ready(Box::new((spec, started))))
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
        let key = ("d".to_owned(), "r".to_owned(), DagCallback::OnFailure);
        assert_eq!(callback_id(&key), "callback:d/r/on_failure_callback");
    }
}
