//! Seeding the read models with DAGs that name assets, as `DagParsed` records them (the asset
//! tests' DAGs are hand-built: what matters is what their parse records).

use leoflow_events::catalog::{AliasReference, AssetReference, DagParsed};
use leoflow_events::{AppendBatch, Metadata};
use serde_json::{Value, json};

use super::TestApi;

/// A DAG of `tenant`, version `version`, with `tasks` (dag.json tasks), naming `references`
/// and `aliases`, scheduled on `expression` when it has one.
pub struct AssetDag<'a> {
    pub dag_id: &'a str,
    pub tenant: &'a str,
    pub version: &'a str,
    pub paused: bool,
    pub tasks: Vec<Value>,
    pub expression: Option<Value>,
    pub references: Vec<AssetReference>,
    pub aliases: Vec<AliasReference>,
}

/// A dag.json task `id` downstream of `upstream`.
pub fn task(id: &str, upstream: &[&str]) -> Value {
    json!({"task_id": id, "operator": "@task", "upstream": upstream,
           "trigger_rule": "all_success", "retries": 0, "retry_delay": 1.0,
           "retry_exponential_backoff": false, "max_retry_delay": null,
           "execution_timeout": null, "pool": "default_pool", "pool_slots": 1,
           "priority_weight": 1, "queue": "default"})
}

/// Records `dag`'s parse (its document stored as the blob the scheduler and the graph read).
pub async fn parse(api: &TestApi, dag: AssetDag<'_>) {
    let document = json!({"dag_id": dag.dag_id, "tasks": dag.tasks});
    let document_hash = api
        .store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let parsed = DagParsed {
        dag_id: dag.dag_id.to_owned(),
        fileloc: format!("{}/dag.py", dag.dag_id),
        bundle_name: dag.dag_id.to_owned(),
        version_hash: dag.version.to_owned(),
        source_hash: None,
        document_hash: Some(document_hash),
        description: None,
        owners: Vec::new(),
        tags: Vec::new(),
        timetable_summary: dag.expression.is_some().then(|| "Asset".to_owned()),
        max_active_runs: 16,
        max_active_tasks: 16,
        catchup: false,
        is_paused_upon_creation: dag.paused,
        access_control: Default::default(),
        tenant: dag.tenant.to_owned(),
        provenance: None,
        asset_expression: dag.expression,
        asset_references: dag.references,
        alias_references: dag.aliases,
    };
    api.store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
        .await
        .unwrap();
}
