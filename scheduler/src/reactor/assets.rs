//! Runs of DAGs scheduled on assets, as Airflow's scheduler creates them: each asset event
//! queues the DAGs its writer named; a DAG whose condition its queue meets gets a run that
//! consumes the queue.

use leoflow_core::assets::{AssetCondition, Queued};
use leoflow_events::catalog::{
    AssetEventRecorded, AssetKey, AssetQueueCleared, ConsumedAssetEvent, stable_hash,
};

use super::scheduled::queue_as_scheduler;
use super::*;

/// How many of an asset's latest events a DAG's queue keeps, and so a run consumes: the queue
/// of a DAG whose condition is never met (an asset never updated) stays this small however
/// often its other assets are updated, as Airflow's queue keeps one row per asset.
const EVENTS_KEPT_PER_ASSET: usize = 1_000;

/// A DAG's queue of asset events (Airflow's `asset_dag_run_queue`, with the events its run will
/// consume): per asset, when it was first queued and its latest events.
#[derive(Debug, Default)]
pub(super) struct AssetQueue {
    assets: BTreeMap<AssetKey, QueuedAsset>,
}

#[derive(Debug)]
struct QueuedAsset {
    /// When its first event since the DAG's last asset-triggered run was recorded.
    first_queued: DateTime<Utc>,
    /// Its latest events, oldest first.
    events: std::collections::VecDeque<QueuedEvent>,
}

#[derive(Debug)]
struct QueuedEvent {
    /// The event's position in the log.
    event_id: i64,
    /// The aliases it came through.
    aliases: Vec<String>,
}

impl AssetQueue {
    fn push(&mut self, asset: &AssetKey, event: QueuedEvent, recorded_at: DateTime<Utc>) {
        let queued = self
            .assets
            .entry(asset.clone())
            .or_insert_with(|| QueuedAsset {
                first_queued: recorded_at,
                events: Default::default(),
            });
        queued.events.push_back(event);
        if queued.events.len() > EVENTS_KEPT_PER_ASSET {
            queued.events.pop_front();
        }
    }

    /// Takes out the events a run consumed, and the assets left with none.
    fn consume(&mut self, consumed: &[ConsumedAssetEvent]) {
        let ids: BTreeSet<i64> = consumed.iter().map(|c| c.event_id).collect();
        for queued in self.assets.values_mut() {
            queued.events.retain(|e| !ids.contains(&e.event_id));
        }
        self.assets.retain(|_, queued| !queued.events.is_empty());
    }

    pub(super) fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// The assets queued, and the aliases their events came through.
    fn assets_and_aliases(&self) -> Queued {
        let mut queued = Queued::default();
        for (asset, entry) in &self.assets {
            queued.assets.insert(asset.clone());
            for event in &entry.events {
                queued.aliases.extend(event.aliases.iter().cloned());
            }
        }
        queued
    }

    /// Every event queued, as the run that consumes them records them.
    fn consumed(&self) -> Vec<ConsumedAssetEvent> {
        let mut consumed: Vec<ConsumedAssetEvent> = self
            .assets
            .iter()
            .flat_map(|(asset, entry)| {
                entry.events.iter().map(|e| ConsumedAssetEvent {
                    event_id: e.event_id,
                    asset: asset.clone(),
                })
            })
            .collect();
        consumed.sort_by_key(|c| c.event_id);
        consumed
    }
}

/// The assets each asset alias stands for, by tenant and alias: those a task added an event of
/// through it (Airflow resolves an alias in a schedule to them).
pub(super) type AliasAssets = HashMap<(String, String), BTreeSet<AssetKey>>;

impl Reactor {
    /// Folds an asset event into the queues of the DAGs it names, and what its aliases stand
    /// for.
    pub(super) fn asset_event_recorded(
        &mut self,
        e: &AssetEventRecorded,
        recorded: &RecordedEvent,
    ) {
        let tenant = recorded
            .metadata
            .tenant
            .as_deref()
            .unwrap_or(DEFAULT_TENANT);
        for alias in &e.source_aliases {
            self.alias_assets
                .entry((tenant.to_owned(), alias.clone()))
                .or_default()
                .insert(e.asset.clone());
        }
        for dag_id in &e.queued {
            if let Some(dag) = self.dags.get_mut(dag_id) {
                let event = QueuedEvent {
                    event_id: recorded.position,
                    aliases: e.source_aliases.clone(),
                };
                dag.asset_queue.push(&e.asset, event, recorded.recorded_at);
            }
        }
    }

    /// Folds a clear of a DAG's queue (all of it, or one asset's entries).
    pub(super) fn asset_queue_cleared(&mut self, e: &AssetQueueCleared) {
        if let Some(dag) = self.dags.get_mut(&e.dag_id) {
            dag.asset_queue
                .assets
                .retain(|asset, _| !e.assets.contains(asset));
        }
    }

    /// Folds the events an asset-triggered run consumed out of its DAG's queue.
    pub(super) fn asset_events_consumed(&mut self, e: &RunQueued) {
        if e.consumed_asset_events.is_empty() {
            return;
        }
        if let Some(dag) = self.dags.get_mut(&e.dag_id) {
            dag.asset_queue.consume(&e.consumed_asset_events);
        }
    }

    /// Queues a run of each unpaused DAG whose asset condition its queue meets.
    pub(super) async fn create_asset_triggered_runs(&mut self) {
        let due: Vec<(String, RunQueued)> = self
            .dags
            .iter()
            .filter(|(_, dag)| !dag.paused && !dag.asset_queue.is_empty())
            .filter_map(|(dag_id, dag)| {
                let condition = dag.asset_condition.as_ref()?;
                let queued = queued(dag, &self.alias_assets);
                let run = asset_triggered_run(dag_id, dag, condition, &queued)?;
                Some((dag.tenant.clone(), run))
            })
            .collect();
        for (tenant, queued) in due {
            let dag_id = queued.dag_id.clone();
            let generation = self.generations.get(&dag_id).copied().unwrap_or(0);
            let run_id = queued.run_id.clone();
            match queue_as_scheduler(
                &self.store,
                (generation, self.epoch),
                &tenant,
                queued,
                "assets",
            )
            .await
            {
                Err(QueueError::Deposed { .. }) => {
                    self.deposed.store(true, Ordering::Relaxed);
                    return;
                }
                // Folding the `RunQueued` empties the queue; `Exists` is this very run, queued
                // before a restart or by the previous pass (its id is derived from the queue).
                Ok(_) | Err(QueueError::Exists(_)) | Err(QueueError::DagDeleted(_)) => {}
                Err(error) => {
                    tracing::warn!(dag_id = %dag_id, "cannot queue {dag_id} {run_id}: {error}");
                }
            }
        }
    }
}

/// What `dag`'s queue holds, as its condition reads it: the assets, and the aliases their
/// events came through or that stand for them in the DAG's tenant.
fn queued(dag: &DagEntry, alias_assets: &AliasAssets) -> Queued {
    let mut queued = dag.asset_queue.assets_and_aliases();
    for ((tenant, alias), assets) in alias_assets {
        if tenant == &dag.tenant && !assets.is_disjoint(&queued.assets) {
            queued.aliases.insert(alias.clone());
        }
    }
    queued
}

/// The run `dag`'s queue asks for, if it meets `condition`: due when the latest asset was first
/// queued (Airflow's `triggered_date`), consuming every queued event.
fn asset_triggered_run(
    dag_id: &str,
    dag: &DagEntry,
    condition: &AssetCondition,
    queued: &Queued,
) -> Option<RunQueued> {
    if !condition.is_met(queued) {
        return None;
    }
    // Each asset's entry dates from its first event (Airflow keeps the first queue row).
    let queue = &dag.asset_queue;
    let run_after = queue.assets.values().map(|q| q.first_queued).max()?;
    let consumed = queue.consumed();
    let last_event = consumed.last()?.event_id;
    Some(RunQueued {
        dag_id: dag_id.to_owned(),
        run_id: run_id(dag_id, run_after, last_event),
        run_type: RunType::AssetTriggered,
        logical_date: None,
        data_interval_start: None,
        data_interval_end: None,
        run_after,
        conf: serde_json::json!({}),
        triggered_by: "asset".to_owned(),
        dag_version_hash: Some(dag.version_hash.clone()),
        task_ids: dag.task_ids.clone(),
        consumed_asset_events: consumed,
    })
}

/// Airflow's id of an asset-triggered run, `asset_triggered__<run_after>_<8 characters>`. Airflow
/// draws the characters at random; here they derive from the queue's last event, so a run
/// queued twice (a pass racing the fold of its own `RunQueued`, a restart) is the same run.
fn run_id(dag_id: &str, run_after: DateTime<Utc>, last_event: i64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bits = stable_hash(format!("{dag_id}\n{last_event}").as_bytes());
    let suffix: String = (0..8)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect();
    format!(
        "{}__{}_{suffix}",
        RunType::AssetTriggered.as_str(),
        run_after.format("%Y-%m-%dT%H:%M:%S%.6f%:z")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> AssetKey {
        AssetKey {
            name: name.into(),
            uri: format!("s3://b/{name}"),
        }
    }

    fn at(second: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0).unwrap()
    }

    fn event(event_id: i64) -> QueuedEvent {
        QueuedEvent {
            event_id,
            aliases: Vec::new(),
        }
    }

    #[test]
    fn a_queue_keeps_each_assets_first_time_and_latest_events_only() {
        let mut queue = AssetQueue::default();
        let many = EVENTS_KEPT_PER_ASSET as i64 + 5;
        for id in 1..=many {
            queue.push(&key("a"), event(id), at(id as u32));
        }
        queue.push(&key("b"), event(many + 1), at(0));
        let consumed = queue.consumed();
        assert_eq!(consumed.len(), EVENTS_KEPT_PER_ASSET + 1);
        assert_eq!(consumed[0].event_id, 6, "the oldest events of a went");
        assert_eq!(queue.assets[&key("a")].first_queued, at(1));
    }

    #[test]
    fn a_run_consumes_what_it_saw_and_leaves_what_came_after() {
        let mut queue = AssetQueue::default();
        queue.push(&key("a"), event(1), at(1));
        queue.push(&key("b"), event(2), at(2));
        let consumed = queue.consumed();
        // Recorded after the run's decision, folded before its `RunQueued`.
        queue.push(&key("a"), event(3), at(3));
        queue.consume(&consumed);
        let left = queue.consumed();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].event_id, &left[0].asset), (3, &key("a")));
        assert!(!queue.assets.contains_key(&key("b")));
        queue.consume(&left);
        assert!(queue.is_empty());
    }
}
