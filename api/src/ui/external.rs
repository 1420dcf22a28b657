//! The graph view's external dependencies (`structure_data?external_dependencies=true`), as
//! Airflow 3.2 draws them: for a DAG scheduled on assets, its condition's and/or gates with the
//! assets and aliases feeding each, the outermost gate pointing at the DAG's first node; for the
//! assets its tasks update, an edge from each task to the asset (an alias a task updates drawn
//! as the assets it stands for, each from the tasks that added an event of it through the alias
//! in runs of the version shown, or the alias alone while it stands for none).
//!
//! Airflow also draws the DAGs a `TriggerDagRunOperator` triggers and those an
//! `ExternalTaskSensor` waits on; Leoflow records no such cross-DAG dependency, so assets and
//! aliases are its only external nodes.

use std::collections::{BTreeMap, HashMap};

use leoflow_projector::read;
use leoflow_projector::read::assets::ReferenceFilter;
use serde_json::Value;

use super::grid::{Graph, GraphEdge, GraphNode};
use crate::error::ApiResult;
use crate::state::ApiState;

/// A node outside the DAG: an asset, an alias or a gate of the asset condition.
fn node(id: String, label: String, kind: &'static str, gate: Option<&str>) -> GraphNode {
    GraphNode {
        id,
        label,
        kind,
        children: None,
        is_mapped: None,
        tooltip: None,
        setup_teardown_type: None,
        operator: Value::Null,
        asset_condition_type: gate.map(str::to_owned),
    }
}

fn edge(source: &str, target: &str, is_source_asset: Option<bool>) -> GraphEdge {
    GraphEdge {
        source_id: source.to_owned(),
        target_id: target.to_owned(),
        is_setup_teardown: None,
        label: None,
        is_source_asset,
    }
}

/// The assets an alias stands for: id and name of each.
type Standing<'a> = Vec<(i64, &'a str)>;

/// What a task of the DAG updates, as Airflow serializes it among the DAG's dependencies.
enum Outlet<'a> {
    /// An asset (id, name).
    Asset(i64, &'a str),
    /// An alias with the assets it stands for in the DAG's tenant (id, name of each).
    Alias(&'a str, Standing<'a>),
}

impl Outlet<'_> {
    /// Airflow's order of a DAG's dependencies (source, target, label, …): the DAG being the
    /// source of each, assets (target `asset`) before aliases (`asset-alias`), then by label.
    fn sort_key(&self) -> (u8, &str, i64) {
        match self {
            Outlet::Asset(id, name) => (0, name, *id),
            Outlet::Alias(name, _) => (1, name, 0),
        }
    }
}

/// Adds the external dependencies of `dag_id` (version `version_hash` drawn in `graph`).
pub async fn add(
    state: &ApiState,
    dag_id: &str,
    version_hash: &str,
    graph: &mut Graph,
) -> ApiResult<()> {
    let pool = state.store.pool();
    let entry = graph.nodes.first().map(|n| n.id.clone());
    let exit = graph.nodes.last().map(|n| n.id.clone());
    let dag_ids = [dag_id.to_owned()];
    let filter = ReferenceFilter {
        tenant: None,
        dag_ids: Some(&dag_ids),
        asset_ids: None,
    };
    let references = read::assets::references(pool, filter).await?;
    let aliases = read::assets::alias_references(pool, None, Some(&dag_ids)).await?;

    // One dependency per task and outlet (Airflow keeps a task's duplicates too); a stale DAG
    // has none.
    let mut outlets: Vec<Outlet> = references
        .iter()
        .filter(|r| !r.is_stale && r.role == "outlet")
        .map(|r| Outlet::Asset(r.asset_id, &r.asset_name))
        .collect();
    let mut by_alias: BTreeMap<(Option<&str>, &str), Standing> = BTreeMap::new();
    for reference in aliases.iter().filter(|r| !r.is_stale && r.role == "outlet") {
        let assets = by_alias
            .entry((reference.task_id.as_deref(), &reference.alias_name))
            .or_default();
        if let (Some(id), Some(name)) = (reference.asset_id, reference.asset_name.as_deref()) {
            assets.push((id, name));
        }
    }
    outlets.extend(
        by_alias
            .into_iter()
            .map(|((_, name), assets)| Outlet::Alias(name, assets)),
    );
    outlets.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));

    // Each edge from the DAG's last node, with the alias an asset was resolved from.
    let mut ends: Vec<(GraphEdge, Option<&str>)> = Vec::new();
    for outlet in &outlets {
        match outlet {
            Outlet::Asset(id, name) => {
                let asset_node = format!("asset:{id}");
                if let Some(exit) = &exit {
                    ends.push((edge(exit, &asset_node, None), None));
                }
                graph
                    .nodes
                    .push(node(asset_node, (*name).to_owned(), "asset", None));
            }
            Outlet::Alias(alias, assets) if !assets.is_empty() => {
                for (id, name) in assets {
                    let asset_node = format!("asset:{id}");
                    if let Some(exit) = &exit {
                        ends.push((edge(exit, &asset_node, None), Some(*alias)));
                    }
                    graph
                        .nodes
                        .push(node(asset_node, (*name).to_owned(), "asset", None));
                }
            }
            Outlet::Alias(alias, _) => {
                let alias_node = format!("asset-alias:{alias}");
                if let Some(exit) = &exit {
                    ends.push((edge(exit, &alias_node, None), None));
                }
                graph
                    .nodes
                    .push(node(alias_node, (*alias).to_owned(), "asset-alias", None));
            }
        }
    }

    if let Some(entry) = &entry {
        let expression = read::assets::expressions(pool, &dag_ids).await?.pop();
        if let Some((_, expression)) = expression {
            let expression = crate::v2::assets::with_asset_ids(expression);
            upstream(&expression, entry, 0, graph);
        }
    }

    // Each asset edge from the task updating it (the first naming it, as Airflow binds it);
    // an alias-resolved one from each task that added an event through an alias, by task id
    // (Airflow's order is a set's), the second and later appended last.
    let first_task: HashMap<i64, &str> = references
        .iter()
        .rev()
        .filter(|r| r.role == "outlet")
        .filter_map(|r| Some((r.asset_id, r.task_id.as_deref()?)))
        .collect();
    let alias_names: Vec<String> = {
        let mut names: Vec<String> = ends
            .iter()
            .filter_map(|(_, alias)| alias.map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let mut added_by: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    if !alias_names.is_empty() {
        for (asset_id, task_id) in
            read::assets::added_through_by_tasks(pool, dag_id, version_hash, &alias_names).await?
        {
            added_by.entry(asset_id).or_default().push(task_id);
        }
    }
    let mut copies = Vec::new();
    for (mut end, alias) in ends {
        let asset_id = end
            .target_id
            .strip_prefix("asset:")
            .and_then(|id| id.parse::<i64>().ok());
        match (asset_id, alias) {
            (Some(asset_id), None) => {
                if let Some(task) = first_task.get(&asset_id) {
                    end.source_id = (*task).to_owned();
                }
            }
            (Some(asset_id), Some(_)) => {
                let tasks = added_by.get(&asset_id).map(Vec::as_slice).unwrap_or(&[]);
                for (index, task) in tasks.iter().enumerate() {
                    if index == 0 {
                        end.source_id = task.clone();
                    } else {
                        copies.push(edge(task, &end.target_id, None));
                    }
                }
            }
            (None, _) => {}
        }
        graph.edges.push(end);
    }
    graph.edges.extend(copies);
    Ok(())
}

/// Airflow's upstream assets of an `asset_expression` (its `get_upstream_assets`): at each
/// level, an `and-gate-<level>` or `or-gate-<level>` node pointing at `target`, the assets and
/// aliases among its operands pointing at the gate (an asset by its id, an alias by its name),
/// then the level below for its last nested condition. A level with no asset or alias operand
/// is drawn with nothing below it, as Airflow draws it.
fn upstream(expression: &Value, target: &str, level: usize, graph: &mut Graph) {
    let Some(map) = expression.as_object().filter(|m| m.len() == 1) else {
        return;
    };
    let (gate, operands) = match (map.get("any"), map.get("all")) {
        (Some(Value::Array(operands)), _) => ("or-gate", operands),
        (_, Some(Value::Array(operands))) => ("and-gate", operands),
        _ => return,
    };
    let mut leaves: Vec<(String, String, &'static str)> = Vec::new();
    let mut nested = None;
    for operand in operands {
        let Some((key, leaf)) = operand.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let text = |field: &str| leaf[field].as_str().unwrap_or_default().to_owned();
        match key.as_str() {
            "any" | "all" => nested = Some(operand),
            "asset" => {
                let id = match &leaf["id"] {
                    Value::Number(id) => id.to_string(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                };
                leaves.push((id, text("name"), "asset"));
            }
            "alias" => leaves.push((text("name"), text("name"), "asset-alias")),
            "asset-name-ref" => leaves.push((text("name"), text("name"), "asset-name-ref")),
            "asset-uri-ref" => leaves.push((text("uri"), text("uri"), "asset-uri-ref")),
            _ => {}
        }
    }
    if leaves.is_empty() {
        return;
    }
    let gate_id = format!("{gate}-{level}");
    graph.edges.push(edge(&gate_id, target, Some(level == 0)));
    graph.nodes.push(node(
        gate_id.clone(),
        gate_id.clone(),
        "asset-condition",
        Some(gate),
    ));
    for (id, label, kind) in leaves {
        graph.edges.push(edge(&id, &gate_id, None));
        graph.nodes.push(node(id, label, kind, None));
    }
    if let Some(nested) = nested {
        upstream(nested, &gate_id, level + 1, graph);
    }
}
