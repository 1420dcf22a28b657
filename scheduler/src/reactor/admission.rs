//! Queueing scheduled task instances that fit their pools, `max_active_tasks`, the executor's
//! room and `depends_on_past`, and handing queued tries to the dispatcher.

use super::*;

/// A tenant's pool as the core's admission names it, which knows pools by one string: the
/// pool's stream name (`pool:{name}` in the default tenant, `pool@{tenant}:{name}` in another),
/// the one spelling of a tenant's pool, so two tenants' pools of one name never share slots.
fn admission_pool((tenant, name): &PoolKey) -> String {
    owned_stream("pool", tenant, name)
}

/// The labels of a pool's gauges: `pool`, and `tenant` beside it for a pool of a tenant other
/// than the default one, so the default tenant's series (every series before tenants owned
/// pools) keep their labels.
fn pool_labels((tenant, name): &PoolKey) -> Labels {
    let mut labels = label("pool", name);
    if tenant != DEFAULT_TENANT {
        labels.push(("tenant".to_owned(), tenant.clone()));
    }
    labels
}

/// Whether `task`'s past lets it go, from the previous run's instances (`rows`, which may hold
/// other tasks' too): none means no previous run; a previous run without the task holds it back
/// unless `ignore_first_depends_on_past`; else its instances — and with `wait_for_downstream`
/// its direct downstream ones — must have succeeded or been skipped.
fn past_done(rows: &[PastInstance], task: &TaskSpec) -> bool {
    if rows.is_empty() {
        return true;
    }
    let own = |row: &&PastInstance| row.task_id.as_deref() == Some(task.task_id.as_str());
    if !rows.iter().any(|row| own(&row)) {
        return task.past.ignore_first_depends_on_past;
    }
    let downstream = |row: &&PastInstance| {
        task.past.wait_for_downstream
            && row
                .task_id
                .as_ref()
                .is_some_and(|id| task.downstream.contains(id))
    };
    rows.iter()
        .filter(|row| own(row) || downstream(row))
        .all(|row| matches!(row.state.as_deref(), Some("success" | "skipped")))
}

impl Reactor {
    /// Sets the pools' gauges: open slots, queued and running task instances.
    fn count_pool_slots(
        &self,
        open: &BTreeMap<PoolKey, i32>,
        queued: &BTreeMap<PoolKey, i64>,
        running: &BTreeMap<PoolKey, i64>,
    ) {
        for (pool, slots) in open {
            let pool_label = pool_labels(pool);
            let metrics = &self.metrics;
            metrics
                .pool_open_slots
                .get_or_create(&pool_label)
                .set(i64::from(*slots));
            let count = |by: &BTreeMap<PoolKey, i64>| by.get(pool).copied().unwrap_or(0);
            metrics
                .pool_queued_slots
                .get_or_create(&pool_label)
                .set(count(queued));
            metrics
                .pool_running_slots
                .get_or_create(&pool_label)
                .set(count(running));
        }
    }

    /// Where a try of `ti` runs: its DAG's tenant and image, its task's leoflow.yaml settings
    /// in the run's version.
    pub(super) fn placement(&self, ti: &TaskInstanceKey) -> Arc<Placement> {
        let dag = self.dags.get(&ti.dag_id);
        let task = self
            .runs
            .get(&(ti.dag_id.clone(), ti.run_id.clone()))
            .and_then(|run| run.spec.tasks.get(&ti.task_id));
        Arc::new(Placement {
            tenant: self.tenant_of(&ti.dag_id).to_owned(),
            image: dag.and_then(|dag| dag.image.clone()),
            resources: task.and_then(|t| t.resources.clone()),
            pod: task.and_then(|t| t.pod.clone()),
            execution_timeout: task.and_then(|t| t.execution_timeout),
        })
    }

    /// Where a trigger of `dag_id` runs: its tenant, and its pushed artifact's image (a
    /// cluster runs it in a pod of that image, in the tenant's namespace, as the DAG's tries).
    pub(super) fn trigger_home(&self, dag_id: &str) -> (String, Option<String>) {
        let image = self.dags.get(dag_id).and_then(|dag| dag.image.clone());
        (self.tenant_of(dag_id).to_owned(), image)
    }

    /// The tenant that owns `dag_id` (the default one for a DAG this model does not know).
    pub(super) fn tenant_of(&self, dag_id: &str) -> &str {
        self.dags
            .get(dag_id)
            .map_or(DEFAULT_TENANT, |dag| dag.tenant.as_str())
    }

    /// The slots of every tenant's pools: those a `PoolSet` recorded, and the `default_pool`
    /// of each tenant known (the default tenant, those owning a DAG or a pool) with
    /// [`DEFAULT_POOL_SLOTS`] until a `PoolSet` of it — as the projector's pools read model
    /// lists them. A pool a tenant does not have is missing, as a pool nobody has.
    pub(super) fn pool_slots(&self) -> BTreeMap<PoolKey, i32> {
        let mut slots = self.pools.clone();
        let tenants: BTreeSet<&str> = std::iter::once(DEFAULT_TENANT)
            .chain(self.dags.values().map(|dag| dag.tenant.as_str()))
            .chain(self.pools.keys().map(|(tenant, _)| tenant.as_str()))
            .collect();
        for tenant in tenants {
            slots
                .entry((tenant.to_owned(), DEFAULT_POOL.to_owned()))
                .or_insert(DEFAULT_POOL_SLOTS);
        }
        slots
    }

    /// The candidates their previous run lets go (`depends_on_past`): one whose previous run's
    /// instance — or, with `wait_for_downstream`, its direct downstream ones there — has not
    /// succeeded or been skipped stays scheduled, as in Airflow, until that run moves on.
    async fn past_allows(&self, candidates: Vec<Candidate>) -> Vec<Candidate> {
        // The tasks whose previous instances matter, by run: one read per run, however many of
        // its task instances wait.
        let mut asked: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for candidate in &candidates {
            let task = self.task_of(&candidate.key);
            if task.past.waits() {
                let key = &candidate.key;
                let ids = asked
                    .entry((key.dag_id.clone(), key.run_id.clone()))
                    .or_default();
                ids.insert(task.task_id.clone());
                if task.past.wait_for_downstream {
                    ids.extend(task.downstream.iter().cloned());
                }
            }
        }
        let mut past = HashMap::new();
        for ((dag_id, run_id), task_ids) in asked {
            let rows = self.previous_instances(&dag_id, &run_id, task_ids).await;
            past.insert((dag_id, run_id), rows);
        }
        candidates
            .into_iter()
            .filter(|candidate| {
                let key = &candidate.key;
                let task = self.task_of(key);
                !task.past.waits()
                    || past[&(key.dag_id.clone(), key.run_id.clone())]
                        .as_deref()
                        .is_some_and(|rows| past_done(rows, task))
            })
            .collect()
    }

    fn task_of(&self, key: &TaskInstanceKey) -> &TaskSpec {
        &self.runs[&(key.dag_id.clone(), key.run_id.clone())]
            .spec
            .tasks[&key.task_id]
    }

    /// The instances of `task_ids` in the run before `run_id`; `None` when they cannot be read
    /// (the task instances then wait for the next pass).
    async fn previous_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: BTreeSet<String>,
    ) -> Option<Vec<PastInstance>> {
        // With catchup, Airflow's previous run is the previous scheduled one.
        let scheduled_only = self
            .dags
            .get(dag_id)
            .and_then(|dag| dag.schedule.as_ref())
            .is_some_and(|schedule| schedule.catchup);
        let task_ids: Vec<String> = task_ids.into_iter().collect();
        let pool = self.store.pool();
        match read::runs::previous_instances(pool, dag_id, run_id, &task_ids, scheduled_only).await
        {
            Ok(rows) => Some(rows),
            Err(error) => {
                tracing::warn!(%error, dag_id, run_id, "reading the previous run failed; its task instances wait");
                None
            }
        }
    }

    pub(super) async fn queue_admitted(&self) {
        let mut candidates = Vec::new();
        let (mut pool_queued, mut pool_running) = (BTreeMap::new(), BTreeMap::new());
        let mut open_slots = self.pool_slots();
        let mut capacity = Capacity::default();
        for ((dag_id, run_id), run) in &self.runs {
            if run.state.status != RunStatus::Running {
                continue;
            }
            let tenant = self.tenant_of(dag_id);
            for ((task_id, map_index), ti) in &run.state.tis {
                let task = &run.spec.tasks[task_id];
                // The task's pool is its DAG's tenant's pool of that name.
                let pool = || (tenant.to_owned(), task.pool.clone());
                match ti.state {
                    TiState::Scheduled => candidates.push(Candidate {
                        key: TaskInstanceKey::mapped(dag_id, run_id, task_id, *map_index),
                        pool: admission_pool(&pool()),
                        pool_slots: task.pool_slots,
                        priority_weight: task.priority_weight,
                        logical_date: run.run_after,
                        concurrency: task.concurrency,
                    }),
                    TiState::Queued | TiState::Running => {
                        *capacity.active_tasks.entry(dag_id.clone()).or_default() += 1;
                        let task_key = (dag_id.clone(), task_id.clone());
                        *capacity.active_per_task.entry(task_key).or_default() += 1;
                        let run_task = (dag_id.clone(), run_id.clone(), task_id.clone());
                        *capacity.active_per_run_task.entry(run_task).or_default() += 1;
                        let pool = pool();
                        if let Some(slots) = open_slots.get_mut(&pool) {
                            *slots -= task.pool_slots;
                        }
                        let by_pool = if ti.state == TiState::Queued {
                            &mut pool_queued
                        } else {
                            &mut pool_running
                        };
                        *by_pool.entry(pool).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
        for (dag_id, dag) in &self.dags {
            capacity
                .max_active_tasks
                .insert(dag_id.clone(), dag.max_active_tasks);
        }
        self.count_pool_slots(&open_slots, &pool_queued, &pool_running);
        capacity.pool_open_slots = open_slots
            .iter()
            .map(|(pool, slots)| (admission_pool(pool), *slots))
            .collect();
        let candidates = self.past_allows(candidates).await;
        let admission = admit(&candidates, &capacity);
        // Queue and dispatch in one append per run: one transaction for a whole fan-out.
        let mut by_run: BTreeMap<(String, String), Vec<Attempt>> = BTreeMap::new();
        // What is left under the executor's own caps, counted down as this pass admits.
        let mut room: HashMap<String, usize> = HashMap::new();
        for candidate in admission.queue {
            // Backpressure: with a full dispatch queue the task instance stays scheduled.
            if !self.dispatcher.has_room() {
                break;
            }
            let ti = candidate.key.clone();
            let placement = self.placement(&ti);
            // Over the executor's own cap (Pro's pods per namespace), the task instance stays
            // scheduled, as over its pool's slots; others may still fit.
            if let Some(cap) = self.dispatcher.executor().room(&placement) {
                let free = room.entry(cap.group).or_insert(cap.free);
                if *free == 0 {
                    continue;
                }
                *free -= 1;
            }
            let run = &self.runs[&(ti.dag_id.clone(), ti.run_id.clone())];
            let try_number = run.state.tis[&(ti.task_id.clone(), ti.map_index)].try_number;
            by_run
                .entry((ti.dag_id.clone(), ti.run_id.clone()))
                .or_default()
                .push(Attempt {
                    ti,
                    try_number,
                    attempt_token: Uuid::new_v4(),
                    trace_parent: None,
                    placement,
                });
        }
        for ((dag_id, run_id), attempts) in by_run {
            let mut commands = Vec::new();
            for attempt in &attempts {
                commands.push(Command::Queue {
                    task_id: attempt.ti.task_id.clone(),
                    map_index: attempt.ti.map_index,
                });
                commands.push(Command::Dispatch {
                    task_id: attempt.ti.task_id.clone(),
                    map_index: attempt.ti.map_index,
                    try_number: attempt.try_number,
                    attempt_token: attempt.attempt_token,
                    executor: self.dispatcher.executor().name().to_owned(),
                    replacing: None,
                });
            }
            self.decide(&dag_id, &run_id, commands, attempts).await;
        }
    }

    pub(super) async fn dispatch_queued(&self) {
        for ((dag_id, run_id), run) in &self.runs {
            for ((task_id, map_index), ti) in &run.state.tis {
                if ti.state != TiState::Queued || ti.attempt_digest.is_some() {
                    continue;
                }
                if !self.dispatcher.has_room() {
                    return;
                }
                let attempt_token = Uuid::new_v4();
                let command = Command::Dispatch {
                    task_id: task_id.clone(),
                    map_index: *map_index,
                    try_number: ti.try_number,
                    attempt_token,
                    executor: self.dispatcher.executor().name().to_owned(),
                    replacing: None,
                };
                // Only a dispatch that was recorded is started: the token is then the fence.
                let key = TaskInstanceKey::mapped(dag_id, run_id, task_id, *map_index);
                let attempt = Attempt {
                    placement: self.placement(&key),
                    ti: key,
                    try_number: ti.try_number,
                    attempt_token,
                    trace_parent: None,
                };
                self.decide(dag_id, run_id, vec![command], vec![attempt])
                    .await;
            }
        }
    }
}
