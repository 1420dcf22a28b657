//! What code in the triggerer asks the control plane (a DAG callback reading a Variable, a
//! Connection or an XCom of its run), answered as the task agent protocol answers a try: in the
//! tenant of the DAG the code belongs to, secrets opened with the vault.

use leoflow_executors::triggerer::Triggerer;
use serde_json::{Value, json};

use super::triggers::TriggerOwner;
use super::*;
use crate::lookups::{self, LookupError, XComPull};
use crate::xcom_values::XComValues;

/// A question, as the SDK's runner asks its agent (`leoflow.protocol`).
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Ask {
    Variable {
        key: String,
    },
    Connection {
        key: String,
    },
    XcomPull {
        task_id: String,
        key: String,
        #[serde(default)]
        map_index: Option<i32>,
    },
}

impl Reactor {
    /// Replies to question `ask` of trigger `id`.
    pub(super) async fn answer_ask(
        &self,
        triggerer: &dyn Triggerer,
        id: &str,
        owner: &TriggerOwner,
        ask: u64,
        request: Value,
    ) {
        let reply = match self.reply(owner, request).await {
            Ok((found, value)) => json!({"ok": true, "found": found, "value": value}),
            Err(why) => json!({"ok": false, "error": why}),
        };
        triggerer.answer(id, ask, reply);
    }

    async fn reply(&self, owner: &TriggerOwner, request: Value) -> Result<(bool, Value), String> {
        let ask: Ask = serde_json::from_value(request.clone())
            .map_err(|_| format!("the triggerer cannot answer {request}"))?;
        let (tenant, run) = match owner {
            TriggerOwner::Try { key, .. } => (
                self.tenant_of(&key.dag_id).to_owned(),
                Some((key.dag_id.clone(), key.run_id.clone())),
            ),
            TriggerOwner::Callback(started) => {
                let key = &started.key;
                let run = Some((key.dag_id().to_owned(), key.run_id().to_owned()));
                (self.tenant_of(key.dag_id()).to_owned(), run)
            }
            TriggerOwner::Watcher { tenant, .. } => (tenant.clone(), None),
            TriggerOwner::Timetable { dag_id } => (self.tenant_of(dag_id).to_owned(), None),
        };
        let vault = self.triggers.as_ref().and_then(|t| t.vault());
        let found = |value: Option<Value>| (value.is_some(), value.unwrap_or(Value::Null));
        let answered = match ask {
            Ask::Variable { key } => lookups::variable(&self.store, vault, &tenant, &key)
                .await
                .map(found),
            Ask::Connection { key } => lookups::connection(&self.store, vault, &tenant, &key)
                .await
                .map(found),
            Ask::XcomPull {
                task_id,
                key,
                map_index,
            } => {
                let Some((dag_id, run_id)) = run else {
                    return Err(
                        "an asset watcher or a timetable has no run to pull XComs of".to_owned(),
                    );
                };
                let spec = self.run_spec(&dag_id, &run_id).await?;
                let pull = XComPull {
                    dag_id: &dag_id,
                    run_id: &run_id,
                    task_id: &task_id,
                    key: &key,
                    map_index,
                };
                lookups::xcom(&self.store, &XComValues::default(), &spec, pull).await
            }
        };
        answered.map_err(|error| match error {
            LookupError::Unavailable(why) => format!("the control plane's database failed: {why}"),
            LookupError::Refused(why) => why,
        })
    }

    /// The spec of the DAG version a run executes.
    async fn run_spec(&self, dag_id: &str, run_id: &str) -> Result<Arc<DagSpec>, String> {
        let version = read::runs::context(self.store.pool(), dag_id, run_id)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|row| row.dag_version_hash)
            .ok_or_else(|| format!("the run {dag_id}/{run_id} is gone"))?;
        self.specs
            .get(&self.store, dag_id, &version)
            .await
            .map_err(|e| e.to_string())
    }
}
