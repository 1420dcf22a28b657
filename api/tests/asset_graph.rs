//! The graph view's external dependencies over a real Postgres
//! (`/ui/structure/structure_data?external_dependencies=true`): a DAG scheduled on an asset
//! condition draws its gates, assets and aliases into its first task; a DAG whose tasks update
//! assets draws an edge from each task to its asset; an alias a task updates is drawn as the
//! assets it stands for, each from the tasks that added an event through it in runs of the
//! version shown. The expected answers are what Airflow 3.2's `structure_data`
//! (`get_upstream_assets`, `bind_output_assets_to_tasks`) builds from the same DAGs; each is
//! checked against Airflow's OpenAPI document.

mod common;

use common::TestApi;
use common::asset_dags::{self, AssetDag};
use leoflow_events::catalog::{
    AliasReference, AssetEventRecorded, AssetKey, AssetReference, AssetRole, RunQueued, RunType,
};
use leoflow_events::{AppendBatch, DEFAULT_TENANT, Event, Metadata, TaskInstanceKey};
use serde_json::{Value, json};

fn asset(name: &str) -> AssetKey {
    AssetKey {
        name: name.to_owned(),
        uri: format!("s3://lake/{name}"),
    }
}

fn id_of(name: &str) -> String {
    asset(name).id().to_string()
}

/// `{"asset": {...}}` of Airflow's `asset_expression` (as the DAG processor stores it, without
/// the id it adds).
fn condition(name: &str) -> Value {
    let key = asset(name);
    json!({"asset": {"name": key.name, "uri": key.uri, "group": "asset"}})
}

fn reference(name: &str, role: AssetRole, task_id: Option<&str>) -> AssetReference {
    AssetReference {
        asset: asset(name),
        group: "asset".to_owned(),
        extra: "{}".to_owned(),
        role,
        task_id: task_id.map(str::to_owned),
    }
}

fn alias(name: &str, role: AssetRole, task_id: Option<&str>) -> AliasReference {
    AliasReference {
        name: name.to_owned(),
        group: "routing".to_owned(),
        role,
        task_id: task_id.map(str::to_owned),
    }
}

/// A DAG of the default tenant, version `version`, with `tasks` (id, upstream).
struct Dag<'a> {
    dag_id: &'a str,
    version: &'a str,
    tasks: &'a [(&'a str, &'a [&'a str])],
    expression: Option<Value>,
    references: Vec<AssetReference>,
    aliases: Vec<AliasReference>,
}

async fn parse(api: &TestApi, dag: Dag<'_>) {
    let dag = AssetDag {
        dag_id: dag.dag_id,
        tenant: DEFAULT_TENANT,
        version: dag.version,
        paused: false,
        tasks: dag
            .tasks
            .iter()
            .map(|(t, up)| asset_dags::task(t, up))
            .collect(),
        expression: dag.expression,
        references: dag.references,
        aliases: dag.aliases,
    };
    asset_dags::parse(api, dag).await;
}

async fn append(api: &TestApi, event: impl Into<Event>) {
    let metadata = Metadata {
        tenant: Some(DEFAULT_TENANT.into()),
        ..Metadata::actor("scheduler")
    };
    api.store
        .append(AppendBatch::new().push(event, &metadata))
        .await
        .unwrap();
}

/// A manual run `run_id` of `dag_id` queued with version `version`.
async fn run(api: &TestApi, dag_id: &str, run_id: &str, version: &str, tasks: &[&str]) {
    let run = RunQueued {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
        run_type: RunType::Manual,
        logical_date: None,
        data_interval_start: None,
        data_interval_end: None,
        run_after: chrono::Utc::now(),
        conf: json!({}),
        triggered_by: "rest_api".into(),
        dag_version_hash: Some(version.into()),
        task_ids: tasks.iter().map(|t| t.to_string()).collect(),
        consumed_asset_events: Vec::new(),
    };
    append(api, run).await;
}

/// What the scheduler records when `source` adds an event of `name` through `alias`.
async fn added_through(api: &TestApi, name: &str, source: TaskInstanceKey, alias: &str) {
    let event = AssetEventRecorded {
        asset: asset(name),
        group: "asset".into(),
        extra: json!({}),
        source: Some(source),
        source_aliases: vec![alias.to_owned()],
        queued: Vec::new(),
    };
    append(api, event).await;
}

/// A node of Airflow's `NodeResponse`: a task (`@task`) or an external one.
fn task_node(id: &str) -> Value {
    json!({"id": id, "label": id, "type": "task", "children": null, "is_mapped": null,
           "tooltip": null, "setup_teardown_type": null, "operator": "@task",
           "asset_condition_type": null})
}

fn external(id: &str, label: &str, kind: &str) -> Value {
    json!({"id": id, "label": label, "type": kind, "children": null, "is_mapped": null,
           "tooltip": null, "setup_teardown_type": null, "operator": null,
           "asset_condition_type": null})
}

fn gate(id: &str, kind: &str) -> Value {
    json!({"id": id, "label": id, "type": "asset-condition", "children": null,
           "is_mapped": null, "tooltip": null, "setup_teardown_type": null, "operator": null,
           "asset_condition_type": kind})
}

/// An edge of Airflow's `EdgeResponse`.
fn edge(source: &str, target: &str) -> Value {
    json!({"source_id": source, "target_id": target, "is_setup_teardown": null,
           "label": null, "is_source_asset": null})
}

fn gate_edge(source: &str, target: &str, is_source_asset: bool) -> Value {
    json!({"source_id": source, "target_id": target, "is_setup_teardown": null,
           "label": null, "is_source_asset": is_source_asset})
}

async fn structure(api: &TestApi, dag_id: &str, query: &str) -> Value {
    api.get(&format!(
        "/ui/structure/structure_data?dag_id={dag_id}{query}"
    ))
    .await
}

/// Without `external_dependencies` (or with it false) the graph is the DAG's own.
async fn assert_own_graph(api: &TestApi, dag_id: &str, own: &Value) {
    for query in ["", "&external_dependencies=false"] {
        assert_eq!(&structure(api, dag_id, query).await, own, "{dag_id}{query}");
    }
}

#[tokio::test]
async fn a_dag_scheduled_on_a_condition_draws_its_gates_assets_and_aliases() {
    use AssetRole::*;
    let api = TestApi::without_scheduler().await;
    // a & (b | routed)
    let expression = json!({"all": [
        condition("a"),
        {"any": [condition("b"), {"alias": {"name": "routed", "group": "routing"}}]},
    ]});
    parse(
        &api,
        Dag {
            dag_id: "consumer",
            version: "v1",
            tasks: &[("report", &[]), ("notify", &["report"])],
            expression: Some(expression),
            references: vec![
                reference("a", Schedule, None),
                reference("b", Schedule, None),
            ],
            aliases: vec![alias("routed", Schedule, None)],
        },
    )
    .await;
    let own = json!({
        "edges": [edge("report", "notify")],
        "nodes": [task_node("report"), task_node("notify")],
    });
    assert_own_graph(&api, "consumer", &own).await;
    let (a, b) = (id_of("a"), id_of("b"));
    assert_eq!(
        structure(&api, "consumer", "&external_dependencies=true").await,
        json!({
            "edges": [
                edge("report", "notify"),
                gate_edge("and-gate-0", "report", true),
                edge(&a, "and-gate-0"),
                gate_edge("or-gate-1", "and-gate-0", false),
                edge(&b, "or-gate-1"),
                edge("routed", "or-gate-1"),
            ],
            "nodes": [
                task_node("report"),
                task_node("notify"),
                gate("and-gate-0", "and-gate"),
                external(&a, "a", "asset"),
                gate("or-gate-1", "or-gate"),
                external(&b, "b", "asset"),
                external("routed", "routed", "asset-alias"),
            ],
        })
    );
}

#[tokio::test]
async fn a_dag_whose_tasks_update_assets_draws_an_edge_from_each_task() {
    use AssetRole::*;
    let api = TestApi::without_scheduler().await;
    parse(
        &api,
        Dag {
            dag_id: "producer",
            version: "v1",
            tasks: &[("extract", &[]), ("load", &["extract"])],
            expression: None,
            references: vec![
                reference("raw", Outlet, Some("extract")),
                reference("raw", Inlet, Some("load")),
                reference("clean", Outlet, Some("load")),
            ],
            aliases: Vec::new(),
        },
    )
    .await;
    let own = json!({
        "edges": [edge("extract", "load")],
        "nodes": [task_node("extract"), task_node("load")],
    });
    assert_own_graph(&api, "producer", &own).await;
    let (raw, clean) = (
        format!("asset:{}", id_of("raw")),
        format!("asset:{}", id_of("clean")),
    );
    // Airflow's order of the DAG's dependencies: by asset name; what a task reads is none.
    assert_eq!(
        structure(&api, "producer", "&external_dependencies=true").await,
        json!({
            "edges": [
                edge("extract", "load"),
                edge("load", &clean),
                edge("extract", &raw),
            ],
            "nodes": [
                task_node("extract"),
                task_node("load"),
                external(&clean, "clean", "asset"),
                external(&raw, "raw", "asset"),
            ],
        })
    );
}

#[tokio::test]
async fn an_alias_a_task_updates_is_drawn_as_its_assets_from_the_tasks_that_added_them() {
    use AssetRole::*;
    let api = TestApi::without_scheduler().await;
    // route updates the alias `routed`, publish the alias `pending` (standing for nothing).
    for version in ["v0", "v1"] {
        parse(
            &api,
            Dag {
                dag_id: "router",
                version,
                tasks: &[("route", &[]), ("publish", &["route"])],
                expression: None,
                references: Vec::new(),
                aliases: vec![
                    alias("routed", Outlet, Some("route")),
                    alias("pending", Outlet, Some("publish")),
                ],
            },
        )
        .await;
    }
    // In a run of v0, route added `late` through `routed`; in one of v1, route and publish
    // added `dynamic` through it.
    run(&api, "router", "manual__0", "v0", &["route", "publish"]).await;
    run(&api, "router", "manual__1", "v1", &["route", "publish"]).await;
    let ti = |run_id: &str, task_id: &str| TaskInstanceKey::new("router", run_id, task_id);
    added_through(&api, "late", ti("manual__0", "route"), "routed").await;
    added_through(&api, "dynamic", ti("manual__1", "route"), "routed").await;
    added_through(&api, "dynamic", ti("manual__1", "publish"), "routed").await;

    let own = json!({
        "edges": [edge("route", "publish")],
        "nodes": [task_node("route"), task_node("publish")],
    });
    assert_own_graph(&api, "router", &own).await;
    let (dynamic, late) = (
        format!("asset:{}", id_of("dynamic")),
        format!("asset:{}", id_of("late")),
    );
    let nodes = json!([
        task_node("route"),
        task_node("publish"),
        external("asset-alias:pending", "pending", "asset-alias"),
        external(&dynamic, "dynamic", "asset"),
        external(&late, "late", "asset"),
    ]);
    // The latest version: `dynamic` from both tasks that added it (by task id; Airflow's order
    // is a set's, the second edge last); `late`, added in no run of v1, from the DAG's last
    // node, as is the alias standing for nothing.
    assert_eq!(
        structure(&api, "router", "&external_dependencies=true").await,
        json!({
            "edges": [
                edge("route", "publish"),
                edge("publish", "asset-alias:pending"),
                edge("publish", &dynamic),
                edge("publish", &late),
                edge("route", &dynamic),
            ],
            "nodes": nodes,
        })
    );
    // Version 1 (v0): `late` from route, `dynamic` from the last node.
    assert_eq!(
        structure(
            &api,
            "router",
            "&external_dependencies=true&version_number=1"
        )
        .await,
        json!({
            "edges": [
                edge("route", "publish"),
                edge("publish", "asset-alias:pending"),
                edge("publish", &dynamic),
                edge("route", &late),
            ],
            "nodes": nodes,
        })
    );
}
