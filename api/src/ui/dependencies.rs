//! `GET /ui/dependencies`: how DAGs depend on each other through the assets and asset aliases
//! they name, as Airflow's dependency graph draws it — `scheduling` (the default): an edge from
//! each asset or alias to the DAGs scheduled on it and from each DAG to the assets and aliases
//! its tasks update, an alias drawn between its DAG and each asset it stands for in the DAG's
//! tenant, all of it or the part connected to `node_id`; `data`: one asset's lineage through
//! the tasks that update and read it. Drawn from the asset and alias references of the DAGs the
//! caller sees. Leoflow records no other cross-DAG dependency (triggers, sensors), so assets
//! and aliases are its only edges.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use axum::Json;
use axum::extract::State;
use leoflow_projector::read;
use leoflow_projector::read::assets::{AliasReferenceRecord, ReferenceFilter, ReferenceRecord};
use serde::Serialize;
use serde_json::json;

use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::ApiState;

/// A node (Airflow's `BaseNodeResponse`).
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// An edge (Airflow's `BaseEdgeResponse`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    pub source_id: String,
    pub target_id: String,
}

/// Airflow's `BaseGraphResponse`.
#[derive(Debug, Default, Serialize)]
pub struct Graph {
    pub edges: Vec<Edge>,
    pub nodes: Vec<Node>,
}

/// A graph being drawn: nodes in the order they are first met, edges once each, sorted.
#[derive(Default)]
struct Drawing {
    nodes: Vec<Node>,
    seen: HashSet<String>,
    edges: BTreeSet<Edge>,
}

impl Drawing {
    fn node(&mut self, id: &str, label: &str, kind: &'static str) {
        if self.seen.insert(id.to_owned()) {
            self.nodes.push(Node {
                id: id.to_owned(),
                label: label.to_owned(),
                kind,
            });
        }
    }

    fn edge(&mut self, source: &str, target: &str) {
        self.edges.insert(Edge {
            source_id: source.to_owned(),
            target_id: target.to_owned(),
        });
    }

    fn finish(self) -> Graph {
        Graph {
            edges: self.edges.into_iter().collect(),
            nodes: self.nodes,
        }
    }
}

/// `GET /ui/dependencies?node_id=&dependency_type=scheduling|data`.
pub async fn dependencies(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<Graph>> {
    let data = match params.str("dependency_type").unwrap_or("scheduling") {
        "scheduling" => false,
        "data" => true,
        other => {
            return Err(ApiError::invalid(
                &["query", "dependency_type"],
                "literal_error",
                "Input should be 'scheduling' or 'data'",
                json!(other),
            ));
        }
    };
    let node_id = params.str("node_id");
    // The scope's DAG ids are looked up for this list (a narrowed caller's only).
    let filter = ReferenceFilter {
        tenant: scope.tenant.as_deref(),
        dag_ids: scope.dag_ids.as_deref(),
        asset_ids: None,
    };
    let pool = state.store.pool();
    let references = read::assets::references(pool, filter).await?;
    if data {
        let asset_id = asset_of(node_id)?;
        let name = start_name(&state, &scope, &references, asset_id).await?;
        return Ok(Json(lineage(asset_id, &name, &references)));
    }
    let aliases = read::assets::alias_references(pool, filter.tenant, filter.dag_ids).await?;
    let graph = scheduling(&references, &aliases);
    Ok(Json(match node_id {
        Some(node_id) => component_of(graph, node_id)?,
        None => graph,
    }))
}

/// The asset a `data` graph starts from (`asset:<id>`). Airflow answers 400, which its
/// document does not list for this route; a 422 naming the parameter says as much.
fn asset_of(node_id: Option<&str>) -> ApiResult<i64> {
    node_id
        .and_then(|id| id.strip_prefix("asset:"))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                &["query", "node_id"],
                "value_error",
                "Value error, data dependencies require an asset node_id (e.g., 'asset:123')",
                json!(node_id),
            )
        })
}

/// The name of the asset a lineage starts from, or Airflow's 404: a caller who sees every DAG
/// sees every asset; one whose DAGs are narrowed sees only those their DAGs name.
async fn start_name(
    state: &ApiState,
    scope: &DagScope,
    references: &[ReferenceRecord],
    asset_id: i64,
) -> ApiResult<String> {
    let name = match scope.dag_ids {
        Some(_) => references
            .iter()
            .find(|r| r.asset_id == asset_id)
            .map(|r| r.asset_name.clone()),
        None => read::assets::find(state.store.pool(), asset_id, None)
            .await?
            .map(|asset| asset.name),
    };
    name.ok_or_else(|| ApiError::not_found(format!("Asset with id {asset_id} was not found")))
}

/// The assets an alias stands for: id and name of each.
type Standing<'a> = Vec<(i64, &'a str)>;

/// One scheduling dependency of a DAG, as Airflow serializes it: on an asset (a reference to
/// it), or on an alias with the assets it stands for in the DAG's tenant (id and name).
enum Dependency<'a> {
    Asset(&'a ReferenceRecord),
    Alias {
        name: &'a str,
        schedule: bool,
        assets: Standing<'a>,
    },
}

impl Dependency<'_> {
    /// Airflow's order of a DAG's dependencies: by source, target, label, type, then id (`asset`
    /// and `asset-alias` standing for the other end of a reference).
    fn sort_key(&self, dag_id: &str) -> (String, String, String, &'static str, i64) {
        let ends = |schedule: bool, kind: &str| {
            if schedule {
                (kind.to_owned(), dag_id.to_owned())
            } else {
                (dag_id.to_owned(), kind.to_owned())
            }
        };
        match self {
            Dependency::Asset(r) => {
                let (source, target) = ends(r.role == "schedule", "asset");
                (source, target, r.asset_name.clone(), "asset", r.asset_id)
            }
            Dependency::Alias { name, schedule, .. } => {
                let (source, target) = ends(*schedule, "asset-alias");
                (source, target, (*name).to_owned(), "asset-alias", 0)
            }
        }
    }
}

/// The scheduling dependencies of each DAG still defined, by DAG id: the assets and aliases it
/// is scheduled on and those its tasks update (what tasks read is no scheduling dependency).
fn dependencies_by_dag<'a>(
    references: &'a [ReferenceRecord],
    aliases: &'a [AliasReferenceRecord],
) -> BTreeMap<&'a str, Vec<Dependency<'a>>> {
    let mut by_dag: BTreeMap<&str, Vec<Dependency>> = BTreeMap::new();
    for reference in references
        .iter()
        .filter(|r| !r.is_stale && r.role != "inlet")
    {
        by_dag
            .entry(&reference.dag_id)
            .or_default()
            .push(Dependency::Asset(reference));
    }
    // An alias once per DAG and use, whichever tasks update it; its rows come one per asset.
    let mut alias_assets: BTreeMap<(&str, &str, bool), Standing> = BTreeMap::new();
    for reference in aliases.iter().filter(|r| !r.is_stale && r.role != "inlet") {
        let key = (
            reference.dag_id.as_str(),
            reference.alias_name.as_str(),
            reference.role == "schedule",
        );
        let assets = alias_assets.entry(key).or_default();
        if let (Some(id), Some(name)) = (reference.asset_id, reference.asset_name.as_deref())
            && !assets.iter().any(|(known, _)| *known == id)
        {
            assets.push((id, name));
        }
    }
    for ((dag_id, name, schedule), assets) in alias_assets {
        by_dag.entry(dag_id).or_default().push(Dependency::Alias {
            name,
            schedule,
            assets,
        });
    }
    by_dag
}

/// Airflow's scheduling dependencies: per DAG still defined (by id), an edge from each asset it
/// is scheduled on and to each asset a task of it updates; an alias it is scheduled on is drawn
/// from each asset it stands for to the alias to the DAG, an alias a task updates from the DAG
/// to the alias to each asset (the alias alone while it stands for none). A DAG that names no
/// asset or alias so has no node.
fn scheduling(references: &[ReferenceRecord], aliases: &[AliasReferenceRecord]) -> Graph {
    let mut drawing = Drawing::default();
    for (dag_id, mut dependencies) in dependencies_by_dag(references, aliases) {
        dependencies.sort_by_cached_key(|d| d.sort_key(dag_id));
        let dag_node = format!("dag:{dag_id}");
        drawing.node(&dag_node, dag_id, "dag");
        for dependency in dependencies {
            match dependency {
                Dependency::Asset(reference) => {
                    let asset_node = format!("asset:{}", reference.asset_id);
                    drawing.node(&asset_node, &reference.asset_name, "asset");
                    match reference.role.as_str() {
                        "schedule" => drawing.edge(&asset_node, &dag_node),
                        _ => drawing.edge(&dag_node, &asset_node),
                    }
                }
                Dependency::Alias {
                    name,
                    schedule,
                    assets,
                } => {
                    let alias_node = format!("asset-alias:{name}");
                    for (asset_id, asset_name) in &assets {
                        let asset_node = format!("asset:{asset_id}");
                        drawing.node(&asset_node, asset_name, "asset");
                        drawing.node(&alias_node, name, "asset-alias");
                        if schedule {
                            drawing.edge(&asset_node, &alias_node);
                        } else {
                            drawing.edge(&alias_node, &asset_node);
                        }
                    }
                    drawing.node(&alias_node, name, "asset-alias");
                    if schedule {
                        drawing.edge(&alias_node, &dag_node);
                    } else {
                        drawing.edge(&dag_node, &alias_node);
                    }
                }
            }
        }
    }
    drawing.finish()
}

/// The part of `graph` connected to `node_id`, or Airflow's 404 when no edge reaches it.
fn component_of(graph: Graph, node_id: &str) -> ApiResult<Graph> {
    let mut neighbours: HashMap<&str, Vec<&str>> = HashMap::new();
    for edge in &graph.edges {
        neighbours
            .entry(&edge.source_id)
            .or_default()
            .push(&edge.target_id);
        neighbours
            .entry(&edge.target_id)
            .or_default()
            .push(&edge.source_id);
    }
    if !neighbours.contains_key(node_id) {
        return Err(ApiError::not_found(format!(
            "Unique connected component not found, got [] for connected components of node \
             {node_id}, expected only 1 connected component."
        )));
    }
    let mut component: HashSet<&str> = HashSet::from([node_id]);
    let mut next = VecDeque::from([node_id]);
    while let Some(node) = next.pop_front() {
        for neighbour in &neighbours[node] {
            if component.insert(neighbour) {
                next.push_back(neighbour);
            }
        }
    }
    let inside = |id: &str| component.contains(id);
    Ok(Graph {
        edges: graph
            .edges
            .iter()
            .filter(|e| inside(&e.source_id) && inside(&e.target_id))
            .cloned()
            .collect(),
        nodes: graph.nodes.into_iter().filter(|n| inside(&n.id)).collect(),
    })
}

/// Airflow's data dependencies of asset `start`: from each asset, the tasks that update it
/// (and, upstream, the assets those tasks read) and the tasks that read it (and, downstream,
/// the assets those tasks update), breadth first.
fn lineage(start: i64, start_name: &str, references: &[ReferenceRecord]) -> Graph {
    let mut drawing = Drawing::default();
    let mut names: HashMap<i64, &str> = HashMap::from([(start, start_name)]);
    names.extend(
        references
            .iter()
            .map(|r| (r.asset_id, r.asset_name.as_str())),
    );
    let (mut assets_done, mut tasks_done) = (HashSet::new(), HashSet::new());
    let mut next = VecDeque::from([start]);
    while let Some(asset_id) = next.pop_front() {
        if !assets_done.insert(asset_id) {
            continue;
        }
        let asset_node = format!("asset:{asset_id}");
        drawing.node(&asset_node, names[&asset_id], "asset");
        for reference in references.iter().filter(|r| r.asset_id == asset_id) {
            let (Some(task_id), dag_id) = (reference.task_id.as_deref(), &reference.dag_id) else {
                continue;
            };
            // Airflow's separator keeps a DAG id and a task id apart in one node id.
            let task_node = format!("task:{dag_id}__SEPARATOR__{task_id}");
            drawing.node(&task_node, &format!("{dag_id}.{task_id}"), "task");
            let further = match reference.role.as_str() {
                "outlet" => {
                    drawing.edge(&task_node, &asset_node);
                    "inlet"
                }
                _ => {
                    drawing.edge(&asset_node, &task_node);
                    "outlet"
                }
            };
            if tasks_done.insert((dag_id.clone(), task_id.to_owned())) {
                let assets = assets_of_task(references, dag_id, task_id, further);
                next.extend(assets.filter(|a| !assets_done.contains(a)));
            }
        }
    }
    drawing.finish()
}

/// The assets task `task_id` of `dag_id` names as `role` (`inlet` or `outlet`).
fn assets_of_task<'a>(
    references: &'a [ReferenceRecord],
    dag_id: &'a str,
    task_id: &'a str,
    role: &'a str,
) -> impl Iterator<Item = i64> + 'a {
    references
        .iter()
        .filter(move |r| r.role == role && r.dag_id == dag_id)
        .filter(move |r| r.task_id.as_deref() == Some(task_id))
        .map(|r| r.asset_id)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn reference(
        asset_id: i64,
        dag_id: &str,
        role: &str,
        task_id: Option<&str>,
    ) -> ReferenceRecord {
        ReferenceRecord {
            asset_id,
            asset_name: format!("a{asset_id}"),
            dag_id: dag_id.to_owned(),
            role: role.to_owned(),
            task_id: task_id.map(str::to_owned),
            is_stale: false,
            last_parsed_time: Utc::now(),
        }
    }

    fn edges(graph: &Graph) -> Vec<String> {
        graph
            .edges
            .iter()
            .map(|e| format!("{} -> {}", e.source_id, e.target_id))
            .collect()
    }

    #[test]
    fn lineage_follows_tasks_up_and_down_stream() {
        // raw -(clean.t)-> tidy -(report.r)-> out; report also schedules on tidy.
        let references = [
            reference(1, "clean", "inlet", Some("t")),
            reference(2, "clean", "outlet", Some("t")),
            reference(2, "report", "inlet", Some("r")),
            reference(2, "report", "schedule", None),
            reference(3, "report", "outlet", Some("r")),
        ];
        let graph = lineage(2, "a2", &references);
        assert_eq!(
            edges(&graph),
            [
                "asset:1 -> task:clean__SEPARATOR__t",
                "asset:2 -> task:report__SEPARATOR__r",
                "task:clean__SEPARATOR__t -> asset:2",
                "task:report__SEPARATOR__r -> asset:3",
            ]
        );
        assert_eq!(graph.nodes.len(), 5);
        // An asset no task names is a graph of itself.
        assert_eq!(lineage(9, "lonely", &references).nodes[0].label, "lonely");
    }

    fn alias(
        name: &str,
        dag_id: &str,
        role: &str,
        task_id: Option<&str>,
        asset_id: Option<i64>,
    ) -> AliasReferenceRecord {
        AliasReferenceRecord {
            alias_name: name.to_owned(),
            dag_id: dag_id.to_owned(),
            role: role.to_owned(),
            task_id: task_id.map(str::to_owned),
            is_stale: false,
            asset_id,
            asset_name: asset_id.map(|id| format!("a{id}")),
        }
    }

    #[test]
    fn aliases_stand_between_their_dags_and_their_assets() {
        // producer.t updates through `out` (standing for assets 1 and 2); consumer is scheduled
        // on `out`, on `none` (standing for nothing) and on asset 3; reader only reads `out`.
        let references = [reference(3, "consumer", "schedule", None)];
        let aliases = [
            alias("out", "producer", "outlet", Some("t"), Some(2)),
            alias("out", "producer", "outlet", Some("t"), Some(1)),
            alias("out", "consumer", "schedule", None, Some(1)),
            alias("out", "consumer", "schedule", None, Some(2)),
            alias("none", "consumer", "schedule", None, None),
            alias("out", "reader", "inlet", Some("r"), Some(1)),
        ];
        let graph = scheduling(&references, &aliases);
        assert_eq!(
            edges(&graph),
            [
                "asset-alias:none -> dag:consumer",
                "asset-alias:out -> asset:1",
                "asset-alias:out -> asset:2",
                "asset-alias:out -> dag:consumer",
                "asset:1 -> asset-alias:out",
                "asset:2 -> asset-alias:out",
                "asset:3 -> dag:consumer",
                "dag:producer -> asset-alias:out",
            ]
        );
        let nodes: Vec<(&str, &str)> = graph
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.kind))
            .collect();
        // consumer's dependencies in Airflow's order: `asset` < `asset-alias` as sources.
        assert_eq!(
            nodes,
            [
                ("dag:consumer", "dag"),
                ("asset:3", "asset"),
                ("asset-alias:none", "asset-alias"),
                ("asset:1", "asset"),
                ("asset-alias:out", "asset-alias"),
                ("asset:2", "asset"),
                ("dag:producer", "dag"),
            ]
        );
        let part = component_of(scheduling(&references, &aliases), "asset-alias:none").unwrap();
        assert_eq!(
            part.nodes.len(),
            7,
            "consumer joins it to the rest: {:?}",
            part.nodes
        );
    }

    #[test]
    fn a_component_is_what_edges_reach() {
        let references = [
            reference(1, "producer", "outlet", Some("t")),
            reference(1, "consumer", "schedule", None),
            reference(2, "other", "schedule", None),
        ];
        let graph = component_of(scheduling(&references, &[]), "dag:consumer").unwrap();
        assert_eq!(
            edges(&graph),
            ["asset:1 -> dag:consumer", "dag:producer -> asset:1"]
        );
        assert!(component_of(scheduling(&references, &[]), "dag:nobody").is_err());
    }
}
