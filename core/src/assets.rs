//! Airflow's assets as the scheduler sees them: the condition a DAG scheduled on assets waits
//! for, and the assets a task updates when it succeeds.
//!
//! dag.json names an asset as `{"name", "uri", "group", "extra"}` and an alias as `{"name",
//! "group"}`; a condition is `{"asset": <asset>}`, `{"alias": <alias>}`, `{"all": [<condition>,
//! ...]}` or `{"any": [<condition>, ...]}`, the shape of Airflow's `as_expression` (which leaves
//! `extra` out).

use std::collections::BTreeSet;

use leoflow_events::catalog::{AliasReference, AssetKey, AssetReference, AssetRole};
use serde::Deserialize;
use serde_json::{Map, Value};

/// An asset as dag.json names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Asset {
    /// Its name.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// Its group.
    #[serde(default = "default_group")]
    pub group: String,
    /// Its `extra` (a JSON object).
    #[serde(default)]
    pub extra: Map<String, Value>,
}

fn default_group() -> String {
    "asset".to_owned()
}

impl Asset {
    /// What identifies it.
    pub fn key(&self) -> AssetKey {
        AssetKey {
            name: self.name.clone(),
            uri: self.uri.clone(),
        }
    }

    /// The DAG's reference to it, as `DagParsed` records it.
    fn reference(&self, role: AssetRole, task_id: Option<&str>) -> AssetReference {
        AssetReference {
            asset: self.key(),
            group: self.group.clone(),
            extra: Value::Object(self.extra.clone()).to_string(),
            role,
            task_id: task_id.map(str::to_owned),
        }
    }
}

/// An asset alias as dag.json names it (Airflow's `AssetAlias`): a name tasks add asset events
/// through, standing for the assets they added.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Alias {
    /// Its name.
    pub name: String,
    /// Its group.
    #[serde(default = "default_group")]
    pub group: String,
}

impl Alias {
    fn reference(&self, role: AssetRole, task_id: Option<&str>) -> AliasReference {
        AliasReference {
            name: self.name.clone(),
            group: self.group.clone(),
            role,
            task_id: task_id.map(str::to_owned),
        }
    }
}

/// What a DAG's queue holds, as its condition reads it: the assets updated, and the aliases
/// those updates count for (those they came through, and those that stand for their assets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queued {
    /// The assets.
    pub assets: BTreeSet<AssetKey>,
    /// The aliases, by name.
    pub aliases: BTreeSet<String>,
}

/// What a DAG scheduled on assets waits for (Airflow's `AssetAll` / `AssetAny` tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetCondition {
    /// An update of this asset.
    Asset(Asset),
    /// An update of an asset this alias stands for.
    Alias(Alias),
    /// Every one of these.
    All(Vec<AssetCondition>),
    /// Any one of these.
    Any(Vec<AssetCondition>),
}

/// A condition dag.json cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dag.json asset condition: {0}")]
pub struct ConditionError(String);

impl AssetCondition {
    /// Reads a dag.json condition.
    pub fn from_dag_json(condition: &Value) -> Result<Self, ConditionError> {
        let shape = || ConditionError(condition.to_string());
        let object = condition
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(shape)?;
        let (kind, inner) = object.iter().next().expect("one entry");
        let each = |inner: &Value| -> Result<Vec<Self>, ConditionError> {
            inner
                .as_array()
                .ok_or_else(shape)?
                .iter()
                .map(Self::from_dag_json)
                .collect()
        };
        match kind.as_str() {
            "asset" => serde_json::from_value(inner.clone())
                .map(Self::Asset)
                .map_err(|e| ConditionError(format!("{condition}: {e}"))),
            "alias" => serde_json::from_value(inner.clone())
                .map(Self::Alias)
                .map_err(|e| ConditionError(format!("{condition}: {e}"))),
            "all" => each(inner).map(Self::All),
            "any" => each(inner).map(Self::Any),
            _ => Err(shape()),
        }
    }

    /// Whether the updates in `queued` satisfy it.
    pub fn is_met(&self, queued: &Queued) -> bool {
        match self {
            Self::Asset(asset) => queued.assets.contains(&asset.key()),
            Self::Alias(alias) => queued.aliases.contains(&alias.name),
            Self::All(all) => all.iter().all(|c| c.is_met(queued)),
            Self::Any(any) => any.iter().any(|c| c.is_met(queued)),
        }
    }

    /// Every asset it names, in order.
    pub fn assets(&self) -> Vec<&Asset> {
        match self {
            Self::Asset(asset) => vec![asset],
            Self::Alias(_) => Vec::new(),
            Self::All(inner) | Self::Any(inner) => inner.iter().flat_map(Self::assets).collect(),
        }
    }

    /// Every alias it names, in order.
    pub fn aliases(&self) -> Vec<&Alias> {
        match self {
            Self::Alias(alias) => vec![alias],
            Self::Asset(_) => Vec::new(),
            Self::All(inner) | Self::Any(inner) => inner.iter().flat_map(Self::aliases).collect(),
        }
    }

    /// Airflow's `asset_expression` of it (the API's `asset_expression`): `extra` left out.
    pub fn expression(&self) -> Value {
        let each = |inner: &[Self]| Value::Array(inner.iter().map(Self::expression).collect());
        match self {
            Self::Asset(a) => {
                serde_json::json!({"asset": {"uri": a.uri, "name": a.name, "group": a.group}})
            }
            Self::Alias(a) => serde_json::json!({"alias": {"name": a.name, "group": a.group}}),
            Self::All(inner) => serde_json::json!({ "all": each(inner) }),
            Self::Any(inner) => serde_json::json!({ "any": each(inner) }),
        }
    }
}

/// The asset condition of a dag.json DAG: `None` unless its schedule is on assets (`assets`,
/// or `asset_or_time`).
pub fn condition_of(dag: &Value) -> Result<Option<AssetCondition>, ConditionError> {
    let schedule = &dag["schedule"];
    match schedule["type"].as_str() {
        Some("assets" | "asset_or_time") => {
            AssetCondition::from_dag_json(&schedule["condition"]).map(Some)
        }
        _ => Ok(None),
    }
}

/// An asset watcher as dag.json names it (Airflow's `AssetWatcher`): a trigger the triggerer
/// runs while the DAG is scheduled on the asset, each of its events an update of the asset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watcher {
    /// The asset it watches.
    pub asset: AssetKey,
    /// Its name.
    pub name: String,
    /// Its trigger.
    pub trigger: WatcherTrigger,
}

/// A watcher's trigger: a `BaseEventTrigger`'s class and arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatcherTrigger {
    /// `module.Class`.
    pub classpath: String,
    /// Its keyword arguments.
    pub kwargs: Map<String, Value>,
}

/// The asset watchers of a dag.json DAG's schedule (none unless it is on assets).
pub fn watchers_of(dag: &Value) -> Result<Vec<Watcher>, ConditionError> {
    let schedule = &dag["schedule"];
    match schedule["type"].as_str() {
        Some("assets" | "asset_or_time") => list_in(schedule, "watchers"),
        _ => Ok(Vec::new()),
    }
}

fn assets_in(task: &Value, key: &str) -> Result<Vec<Asset>, ConditionError> {
    list_in(task, key)
}

fn aliases_in(task: &Value, key: &str) -> Result<Vec<Alias>, ConditionError> {
    list_in(task, key)
}

/// A task's list `key` in dag.json (empty when absent).
fn list_in<T: serde::de::DeserializeOwned>(
    task: &Value,
    key: &str,
) -> Result<Vec<T>, ConditionError> {
    match task.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list.clone())
            .map_err(|e| ConditionError(format!("{key} {list}: {e}"))),
    }
}

/// Every asset alias a dag.json DAG names, as `DagParsed` records them: sorted, each once per
/// use.
pub fn alias_references_of(dag: &Value) -> Result<Vec<AliasReference>, ConditionError> {
    let mut references: BTreeSet<AliasReference> = BTreeSet::new();
    if let Some(condition) = condition_of(dag)? {
        for alias in condition.aliases() {
            references.insert(alias.reference(AssetRole::Schedule, None));
        }
    }
    for task in dag["tasks"].as_array().into_iter().flatten() {
        let task_id = task["task_id"].as_str();
        let uses = [
            ("outlet_aliases", AssetRole::Outlet),
            ("inlet_aliases", AssetRole::Inlet),
        ];
        for (key, role) in uses {
            for alias in aliases_in(task, key)? {
                references.insert(alias.reference(role, task_id));
            }
        }
    }
    Ok(references.into_iter().collect())
}

/// Every asset a dag.json DAG names, as `DagParsed` records them: sorted, each once per use.
pub fn references_of(dag: &Value) -> Result<Vec<AssetReference>, ConditionError> {
    let mut references: BTreeSet<AssetReference> = BTreeSet::new();
    if let Some(condition) = condition_of(dag)? {
        for asset in condition.assets() {
            references.insert(asset.reference(AssetRole::Schedule, None));
        }
    }
    for task in dag["tasks"].as_array().into_iter().flatten() {
        let task_id = task["task_id"].as_str();
        for (key, role) in [("outlets", AssetRole::Outlet), ("inlets", AssetRole::Inlet)] {
            for asset in assets_in(task, key)? {
                references.insert(asset.reference(role, task_id));
            }
        }
    }
    Ok(references.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asset(name: &str) -> Value {
        json!({"asset": {"name": name, "uri": format!("s3://b/{name}"), "group": "asset", "extra": {}}})
    }

    fn keys(names: &[&str]) -> Queued {
        Queued {
            assets: names
                .iter()
                .map(|n| AssetKey {
                    name: (*n).to_owned(),
                    uri: format!("s3://b/{n}"),
                })
                .collect(),
            aliases: BTreeSet::new(),
        }
    }

    #[test]
    fn an_alias_is_met_by_the_updates_it_counts_for() {
        let condition = AssetCondition::from_dag_json(
            &json!({"all": [{"alias": {"name": "daily", "group": "asset"}}, asset("a")]}),
        )
        .unwrap();
        let mut queued = keys(&["a"]);
        assert!(!condition.is_met(&queued));
        queued.aliases.insert("daily".into());
        assert!(condition.is_met(&queued));
        assert_eq!(
            condition.expression(),
            json!({"all": [{"alias": {"name": "daily", "group": "asset"}},
                           {"asset": {"uri": "s3://b/a", "name": "a", "group": "asset"}}]})
        );
        let dag = json!({
            "schedule": {"type": "assets", "condition": condition_json()},
            "tasks": [{"task_id": "t", "outlet_aliases": [{"name": "out", "group": "asset"}]}]
        });
        let names: Vec<(String, AssetRole)> = alias_references_of(&dag)
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.role))
            .collect();
        assert_eq!(
            names,
            [
                ("daily".into(), AssetRole::Schedule),
                ("out".into(), AssetRole::Outlet)
            ]
        );
    }

    fn condition_json() -> Value {
        json!({"any": [{"alias": {"name": "daily", "group": "asset"}}]})
    }

    #[test]
    fn a_condition_is_met_as_airflow_evaluates_all_and_any() {
        // a | (b & c), as example_assets' consume_1_or_both_2_and_3_with_asset_expressions.
        let condition = AssetCondition::from_dag_json(
            &json!({"any": [asset("a"), {"all": [asset("b"), asset("c")]}]}),
        )
        .unwrap();
        assert!(condition.is_met(&keys(&["a"])));
        assert!(!condition.is_met(&keys(&["b"])));
        assert!(condition.is_met(&keys(&["b", "c"])));
        assert!(!condition.is_met(&keys(&[])));
        let both =
            AssetCondition::from_dag_json(&json!({"all": [asset("a"), asset("b")]})).unwrap();
        assert!(!both.is_met(&keys(&["a"])));
        assert!(both.is_met(&keys(&["a", "b", "z"])));
    }

    #[test]
    fn the_expression_is_airflows_without_extra() {
        let condition = AssetCondition::from_dag_json(&json!({"all": [asset("a")]})).unwrap();
        assert_eq!(
            condition.expression(),
            json!({"all": [{"asset": {"uri": "s3://b/a", "name": "a", "group": "asset"}}]})
        );
    }

    #[test]
    fn a_malformed_condition_is_refused() {
        for bad in [
            json!({"asset": {"name": "a"}}),
            json!({"every": [asset("a")]}),
            json!({"all": asset("a")}),
            json!({"all": [], "any": []}),
            json!("s3://b/a"),
        ] {
            assert!(AssetCondition::from_dag_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_name_the_schedule_and_each_tasks_outlets_and_inlets() {
        let dag = json!({
            "schedule": {"type": "assets", "condition": {"all": [asset("a")]}},
            "tasks": [
                {"task_id": "t", "outlets": [{"name": "b", "uri": "s3://b/b", "group": "asset", "extra": {"k": 1}}],
                 "inlets": [{"name": "a", "uri": "s3://b/a", "group": "asset", "extra": {}}]},
                {"task_id": "u"}
            ]
        });
        let references = references_of(&dag).unwrap();
        let summary: Vec<(String, AssetRole, Option<String>)> = references
            .iter()
            .map(|r| (r.asset.name.clone(), r.role, r.task_id.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a".into(), AssetRole::Schedule, None),
                ("a".into(), AssetRole::Inlet, Some("t".into())),
                ("b".into(), AssetRole::Outlet, Some("t".into())),
            ]
        );
        assert_eq!(references[2].extra, r#"{"k":1}"#);
    }

    #[test]
    fn a_schedules_watchers_are_read_and_a_bad_one_is_refused() {
        let watcher = json!({"asset": {"name": "a", "uri": "s3://b/a"}, "name": "w",
                             "trigger": {"classpath": "m.T", "kwargs": {"filepath": "/tmp/x"}}});
        let dag = json!({"schedule": {"type": "assets", "condition": asset("a"),
                                      "watchers": [watcher]}});
        let watchers = watchers_of(&dag).unwrap();
        assert_eq!(watchers.len(), 1);
        assert_eq!(watchers[0].asset.uri, "s3://b/a");
        assert_eq!(watchers[0].trigger.classpath, "m.T");
        assert_eq!(watchers[0].trigger.kwargs["filepath"], "/tmp/x");
        let unwatched = json!({"schedule": {"type": "assets", "condition": asset("a")}});
        assert!(watchers_of(&unwatched).unwrap().is_empty());
        let bad = json!({"schedule": {"type": "assets", "condition": asset("a"),
                                      "watchers": [{"name": "w"}]}});
        assert!(
            watchers_of(&bad)
                .unwrap_err()
                .to_string()
                .contains("watchers")
        );
    }
}
