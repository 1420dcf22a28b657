//! Projecting assets: `asset` from the DAGs that name them, `asset_event` from their updates,
//! `asset_dag_run_queue` from the DAGs each update queues and the runs that consume them, and
//! `asset_event_dag_run` (which runs consumed which events).

use chrono::{DateTime, Utc};
use leoflow_events::catalog::{
    AliasReference, AssetEventRecorded, AssetKey, AssetQueueCleared, AssetReference, DagParsed,
    RunQueued, alias_id,
};

use leoflow_events::{DEFAULT_TENANT, RecordedEvent};

use crate::apply::{ApplyError, WorkingSet};
use crate::rows::*;

impl WorkingSet {
    /// Marks the `asset` and `asset_alias` rows a `DagParsed` updates.
    pub(crate) fn want_assets_of(&mut self, e: &DagParsed) {
        for reference in &e.asset_references {
            self.assets.want(asset_key(&reference.asset));
        }
        for reference in &e.alias_references {
            self.asset_aliases.want(AssetIdKey {
                id: alias_id(&reference.name),
            });
        }
    }

    /// Marks the rows an asset event reads: its DAGs' queue entries, and its asset and aliases
    /// when it came through aliases (the asset may be new).
    pub(crate) fn want_queue_of(&mut self, e: &AssetEventRecorded) {
        for dag_id in &e.queued {
            self.asset_queue.want(queue_key(&e.asset, dag_id));
        }
        if !e.source_aliases.is_empty() {
            self.assets.want(asset_key(&e.asset));
            for alias in &e.source_aliases {
                self.asset_aliases.want(AssetIdKey {
                    id: alias_id(alias),
                });
            }
        }
    }

    /// Registers the aliases a DAG names (a known one keeps its first group, as Airflow's
    /// alias table keeps its row).
    pub(crate) fn register_aliases(
        &mut self,
        references: &[AliasReference],
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        for reference in references {
            self.register_alias(&reference.name, &reference.group, at)?;
        }
        Ok(())
    }

    fn register_alias(
        &mut self,
        name: &str,
        group: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let key = AssetIdKey { id: alias_id(name) };
        if self.asset_aliases.get(&key)?.is_none() {
            self.asset_aliases.put(AssetAliasRow {
                id: key.id,
                name: name.to_owned(),
                alias_group: group.to_owned(),
                created_at: at,
            });
        }
        Ok(())
    }

    /// An event added through aliases: its asset is registered when new (with the event's
    /// group), its aliases too, and each alias stands for the asset in the tenant from now on.
    fn added_through_aliases(
        &mut self,
        e: &AssetEventRecorded,
        tenant: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let key = asset_key(&e.asset);
        if self.assets.get(&key)?.is_none() {
            self.assets.put(AssetRow {
                id: key.id,
                name: e.asset.name.clone(),
                uri: e.asset.uri.clone(),
                asset_group: e.group.clone(),
                extra: serde_json::json!({}),
                created_at: at,
                updated_at: at,
            });
        }
        for alias in &e.source_aliases {
            self.register_alias(alias, "asset", at)?;
            self.alias_assets.put(AliasAssetRow {
                tenant: tenant.to_owned(),
                alias_name: alias.clone(),
                asset_id: key.id,
            });
        }
        Ok(())
    }

    /// Registers the assets a DAG names: a new one as it is, a known one with its group and
    /// `extra` as this DAG now defines them (Airflow keeps the latest parse's).
    pub(crate) fn register_assets(
        &mut self,
        references: &[AssetReference],
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        for reference in references {
            let key = asset_key(&reference.asset);
            let extra = serde_json::from_str(&reference.extra).unwrap_or_default();
            let row = match self.assets.get(&key)? {
                Some(known) if known.asset_group == reference.group && known.extra == extra => {
                    continue;
                }
                Some(known) => AssetRow {
                    asset_group: reference.group.clone(),
                    extra,
                    updated_at: at,
                    ..known.clone()
                },
                None => AssetRow {
                    id: key.id,
                    name: reference.asset.name.clone(),
                    uri: reference.asset.uri.clone(),
                    asset_group: reference.group.clone(),
                    extra,
                    created_at: at,
                    updated_at: at,
                },
            };
            self.assets.put(row);
        }
        Ok(())
    }

    /// Records an asset's update and queues it for the DAGs it names, keeping each queue entry's
    /// first time (as Airflow's queue keeps its first row).
    pub(crate) fn asset_event_recorded(
        &mut self,
        e: &AssetEventRecorded,
        recorded: &RecordedEvent,
    ) -> Result<(), ApplyError> {
        let (position, at) = (recorded.position, recorded.recorded_at);
        let source = e.source.as_ref();
        let tenant = recorded
            .metadata
            .tenant
            .as_deref()
            .unwrap_or(DEFAULT_TENANT);
        if !e.source_aliases.is_empty() {
            self.added_through_aliases(e, tenant, at)?;
        }
        self.asset_events.put(AssetEventRow {
            id: position,
            asset_id: e.asset.id(),
            tenant: tenant.to_owned(),
            extra: e.extra.clone(),
            source_dag_id: source.map(|ti| ti.dag_id.clone()),
            source_run_id: source.map(|ti| ti.run_id.clone()),
            source_task_id: source.map(|ti| ti.task_id.clone()),
            source_map_index: source.map(|ti| ti.map_index),
            source_aliases: serde_json::to_value(&e.source_aliases).expect("names serialize"),
            timestamp: at,
        });
        for dag_id in &e.queued {
            let key = queue_key(&e.asset, dag_id);
            if self.asset_queue.get(&key)?.is_none() {
                self.asset_queue.put(AssetQueueRow {
                    asset_id: key.asset_id,
                    target_dag_id: key.target_dag_id,
                    created_at: at,
                });
            }
        }
        Ok(())
    }

    /// An asset-triggered run takes the events it consumed out of its DAG's queue.
    pub(crate) fn asset_events_consumed(&mut self, e: &RunQueued) {
        for consumed in &e.consumed_asset_events {
            self.asset_queue
                .remove(queue_key(&consumed.asset, &e.dag_id));
            self.asset_event_runs.put(AssetEventRunRow {
                event_id: consumed.event_id,
                dag_id: e.dag_id.clone(),
                run_id: e.run_id.clone(),
            });
        }
    }

    /// Someone cleared queue entries of a DAG.
    pub(crate) fn asset_queue_cleared(&mut self, e: &AssetQueueCleared) {
        for asset in &e.assets {
            self.asset_queue.remove(queue_key(asset, &e.dag_id));
        }
    }
}

fn asset_key(asset: &AssetKey) -> AssetIdKey {
    AssetIdKey { id: asset.id() }
}

fn queue_key(asset: &AssetKey, dag_id: &str) -> AssetQueueKey {
    AssetQueueKey {
        asset_id: asset.id(),
        target_dag_id: dag_id.to_owned(),
    }
}
