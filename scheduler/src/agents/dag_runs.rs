//! What a try asks of other DAG runs: triggering one (TriggerDagRunOperator) and reading one
//! with its task instances' states (its `wait_for_completion`, ExternalTaskSensor). A try acts
//! in its own DAG's tenant: a DAG of another tenant is one it cannot see.

use chrono::{DateTime, Utc};
use leoflow_core::commands::{TriggerRejection, TriggerRequest};
use leoflow_events::{Event, dag_key};
use leoflow_executors::proto::{JsonValue, ReadDagRunRequest, TriggerDagRunRequest};
use leoflow_projector::read;
use serde_json::{Map, Value, json};
use tonic::Status;

use super::{AgentService, Need, unavailable};
use crate::control::{self, ControlError};

impl AgentService {
    /// Triggers the run the request names, in the try's tenant; a run id that exists is
    /// cleared with `reset_dag_run`, else answered as existing.
    pub(super) async fn trigger_for(
        &self,
        request: TriggerDagRunRequest,
    ) -> Result<JsonValue, Status> {
        let verified = self
            .verify(request.attempt.as_ref(), "trigger_dag_run", Need::InFlight)
            .await?;
        let tenant = self.tenant(&verified.key, verified.run.generation).await?;
        // The try names a DAG of its tenant as its file does; the log keys it in the tenant.
        let key = dag_key(&tenant, &request.dag_id);
        self.visible_dag(&tenant, &key).await?;
        if request.fail_when_dag_is_paused
            && read::dags::is_paused(self.store.pool(), &key)
                .await
                .map_err(unavailable)?
                == Some(true)
        {
            // Airflow's words.
            return Err(Status::invalid_argument(format!(
                "Dag {} is paused",
                request.dag_id
            )));
        }
        let conf: Value = serde_json::from_str(&request.conf_json)
            .map_err(|e| Status::invalid_argument(format!("the run's conf is not JSON: {e}")))?;
        let trigger = TriggerRequest {
            run_id: request.run_id.clone(),
            logical_date: instant(request.logical_date.as_deref())?,
            conf: Some(conf),
            triggered_by: "operator".into(),
        };
        let actor = Self::agent(&tenant);
        let (run_id, existed) = match control::trigger_dag(&self.store, &key, trigger, &actor).await
        {
            Ok(recorded) => match recorded.decode() {
                Ok(Event::RunQueued(queued)) => (queued.run_id, false),
                _ => {
                    return Err(Status::internal(
                        "a trigger recorded something else than RunQueued",
                    ));
                }
            },
            Err(ControlError::Trigger(TriggerRejection::DuplicateRunId(_))) => {
                let run_id = request
                    .run_id
                    .clone()
                    .expect("only a given run id can exist");
                if request.reset_dag_run {
                    control::clear_run(&self.store, &self.specs, &key, &run_id, false, &actor)
                        .await
                        .map_err(control_status)?;
                }
                (run_id, true)
            }
            Err(error) => return Err(control_status(error)),
        };
        if let (Some(note), false) = (&request.note, existed) {
            control::set_run_note(&self.store, &key, &run_id, Some(note.clone()), &actor)
                .await
                .map_err(control_status)?;
        }
        let run = json!({"dag_id": request.dag_id, "run_id": run_id, "existed": existed});
        Ok(JsonValue {
            found: true,
            json: run.to_string(),
        })
    }

    /// The task ids of the DAG's latest version.
    async fn task_ids(&self, dag_id: &str) -> Result<Vec<String>, Status> {
        let latest = read::dags::latest_versions(self.store.pool(), &[dag_id.to_owned()])
            .await
            .map_err(unavailable)?;
        let Some(version) = latest.into_iter().next() else {
            return Ok(Vec::new());
        };
        let spec = self
            .specs
            .get(&self.store, dag_id, &version.version_hash)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(spec.tasks.keys().cloned().collect())
    }

    /// The run the request names (by run id, else by logical date) with its task instances'
    /// states by task id (a list of the map indexes' states for a mapped task).
    pub(super) async fn read_run_for(
        &self,
        request: ReadDagRunRequest,
    ) -> Result<JsonValue, Status> {
        let verified = self
            .verify(request.attempt.as_ref(), "read_dag_run", Need::InFlight)
            .await?;
        let tenant = self.tenant(&verified.key, verified.run.generation).await?;
        let pool = self.store.pool();
        let key = dag_key(&tenant, &request.dag_id);
        let owner = read::dags::owner(pool, &key).await.map_err(unavailable)?;
        if owner.is_none_or(|owner| owner.tenant != tenant) {
            return Ok(JsonValue {
                found: false,
                json: "null".into(),
            });
        }
        let run = match (&request.run_id, instant(request.logical_date.as_deref())?) {
            (Some(run_id), _) => read::runs::find(pool, &key, run_id).await,
            (None, Some(at)) => read::runs::by_logical_date(pool, &key, at).await,
            (None, None) => {
                return Err(Status::invalid_argument(
                    "name the run by run_id or logical_date",
                ));
            }
        }
        .map_err(unavailable)?;
        let Some(run) = run else {
            // The DAG is there without such a run: what it holds, for a sensor that checks.
            let dag = json!({"dag_id": request.dag_id, "task_ids": self.task_ids(&key).await?});
            return Ok(JsonValue {
                found: false,
                json: dag.to_string(),
            });
        };
        let tis = read::task_instances::of_run(pool, &key, &run.run_id, &[])
            .await
            .map_err(unavailable)?;
        let mut tasks: Map<String, Value> = Map::new();
        for ti in tis {
            let state = ti.state.map_or(Value::Null, Value::String);
            match tasks.get_mut(&ti.task_id) {
                Some(Value::Array(states)) => states.push(state),
                Some(single) if ti.map_index >= 0 => *single = json!([single.take(), state]),
                _ if ti.map_index >= 0 => {
                    tasks.insert(ti.task_id, json!([state]));
                }
                _ => {
                    tasks.insert(ti.task_id, state);
                }
            }
        }
        let answer = json!({
            "dag_id": request.dag_id,
            "run_id": run.run_id,
            "state": run.state,
            "logical_date": run.logical_date.map(|t| t.to_rfc3339()),
            "tasks": tasks,
        });
        Ok(JsonValue {
            found: true,
            json: answer.to_string(),
        })
    }

    /// Refuses a DAG the try's tenant does not own, as if it did not exist.
    async fn visible_dag(&self, tenant: &str, key: &str) -> Result<(), Status> {
        let owner = read::dags::owner(self.store.pool(), key)
            .await
            .map_err(unavailable)?;
        match owner {
            Some(owner) if owner.tenant == tenant => Ok(()),
            _ => Err(Status::invalid_argument(format!(
                "no DAG {:?} to trigger",
                leoflow_events::dag_name(key)
            ))),
        }
    }
}

fn instant(text: Option<&str>) -> Result<Option<DateTime<Utc>>, Status> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Status::invalid_argument(format!("{t:?} is not an ISO 8601 date: {e}")))
    })
    .transpose()
}

/// The answer to a refused trigger: the agent passes an invalid argument on to the task as a
/// refusal (a failed precondition would stop the try, a not-found be retried).
fn control_status(error: ControlError) -> Status {
    match error {
        ControlError::UnknownDag(dag_id) => {
            Status::invalid_argument(format!("no DAG {dag_id:?} to trigger"))
        }
        ControlError::Store(_) | ControlError::Conflict(_) => unavailable(error),
        other => Status::invalid_argument(other.to_string()),
    }
}
