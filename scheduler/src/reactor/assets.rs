//! Runs of DAGs scheduled on assets, as Airflow's scheduler creates them: each asset event
//! queues the DAGs its writer named; a DAG whose condition its queue meets gets a run that
//! consumes the queue.

use leoflow_core::assets::{AssetCondition, Queued};
use leoflow_events::catalog::{
    AssetEventRecorded, AssetKey, AssetQueueCleared, ConsumedAssetEvent,
};

use super::scheduled::queue_as_scheduler;
use super::*;

/// An asset event waiting in a DAG's queue.
#[derive(Debug, Clone)]
pub(super) struct QueuedAssetEvent {
    /// The event's position in the log.
    event_id: i64,
    asset: AssetKey,
    /// The aliases it came through.
    aliases: Vec<String>,
    recorded_at: DateTime<Utc>,
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
                dag.asset_queue.push(QueuedAssetEvent {
                    event_id: recorded.position,
                    asset: e.asset.clone(),
                    aliases: e.source_aliases.clone(),
                    recorded_at: recorded.recorded_at,
                });
            }
        }
    }

    /// Folds a clear of a DAG's queue (all of it, or one asset's entries).
    pub(super) fn asset_queue_cleared(&mut self, e: &AssetQueueCleared) {
        if let Some(dag) = self.dags.get_mut(&e.dag_id) {
            dag.asset_queue
                .retain(|queued| !e.assets.contains(&queued.asset));
        }
    }

    /// Folds the events an asset-triggered run consumed out of its DAG's queue.
    pub(super) fn asset_events_consumed(&mut self, e: &RunQueued) {
        if e.consumed_asset_events.is_empty() {
            return;
        }
        if let Some(dag) = self.dags.get_mut(&e.dag_id) {
            dag.asset_queue.retain(|queued| {
                !e.consumed_asset_events
                    .iter()
                    .any(|c| c.event_id == queued.event_id)
            });
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
    let mut queued = Queued::default();
    for q in &dag.asset_queue {
        queued.assets.insert(q.asset.clone());
        queued.aliases.extend(q.aliases.iter().cloned());
    }
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
    let mut first_queued: BTreeMap<&AssetKey, DateTime<Utc>> = BTreeMap::new();
    for q in &dag.asset_queue {
        first_queued.entry(&q.asset).or_insert(q.recorded_at);
    }
    let run_after = first_queued.values().max().copied()?;
    let last_event = dag.asset_queue.iter().map(|q| q.event_id).max()?;
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
        consumed_asset_events: dag
            .asset_queue
            .iter()
            .map(|q| ConsumedAssetEvent {
                event_id: q.event_id,
                asset: q.asset.clone(),
            })
            .collect(),
    })
}

/// Airflow's id of an asset-triggered run, `asset_triggered__<run_after>_<8 characters>`. Airflow
/// draws the characters at random; here they derive from the queue's last event, so a run
/// queued twice (a pass racing the fold of its own `RunQueued`, a restart) is the same run.
fn run_id(dag_id: &str, run_after: DateTime<Utc>, last_event: i64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut bits = format!("{dag_id}\n{last_event}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
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
