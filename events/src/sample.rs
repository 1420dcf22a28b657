//! Plausible, deterministic event workloads for tests and benchmarks (feature `sample`).
//!
//! A seeded generator produces what a busy Leoflow would record: DAGs parsed and re-parsed,
//! import errors, pauses, dag runs whose task instances go through scheduling, retries,
//! failure, skips and XComs, clears and re-runs, and Variable/Connection/Pool changes. Every
//! sequence it produces is one the read models accept.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::catalog::*;

/// A small xorshift generator: deterministic across platforms, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next raw value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Generates workloads; see the module docs.
#[derive(Debug)]
pub struct Workload {
    rng: Rng,
    dags: Vec<(String, u32)>,
    runs: u64,
    base: DateTime<Utc>,
}

impl Workload {
    /// A generator with `dag_count` DAGs.
    pub fn new(seed: u64, dag_count: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            dags: (0..dag_count).map(|i| (format!("dag_{i}"), 0)).collect(),
            runs: 0,
            base: "2026-01-01T00:00:00Z".parse().expect("valid time"),
        }
    }

    /// At least `min_events` events, split into batches of 1 to `max_batch` events; the
    /// DAGs are parsed in the first batch.
    pub fn batches(&mut self, min_events: usize, max_batch: usize) -> Vec<Vec<Event>> {
        let mut events: Vec<Event> = Vec::new();
        for i in 0..self.dags.len() {
            events.push(self.parse_dag(i, true));
        }
        let mut batches = vec![std::mem::take(&mut events)];
        let mut total = batches[0].len();
        while total < min_events {
            let block = self.block();
            total += block.len();
            events.extend(block);
        }
        while !events.is_empty() {
            let size = (1 + self.rng.below(max_batch.max(1) as u64) as usize).min(events.len());
            batches.push(events.drain(..size).collect());
        }
        batches
    }

    /// A random chunk of activity.
    fn block(&mut self) -> Vec<Event> {
        let dag = self.rng.below(self.dags.len() as u64) as usize;
        match self.rng.below(100) {
            0..=69 => {
                let tasks = 2 + self.rng.below(6) as usize;
                self.dag_run(dag, tasks)
            }
            70..=77 => {
                let new_version = self.rng.chance(50);
                vec![self.parse_dag(dag, new_version)]
            }
            78..=81 => vec![
                DagImportFailed {
                    fileloc: format!("dags/{}/dag.py", self.dags[dag].0),
                    bundle_name: "dags-folder".into(),
                    error: format!(
                        "SyntaxError: invalid syntax (dag.py, line {})",
                        self.rng.below(90)
                    ),
                    tenant: "default".into(),
                }
                .into(),
            ],
            82..=85 => {
                let dag_id = self.dags[dag].0.clone();
                if self.rng.chance(50) {
                    vec![DagPaused { dag_id }.into()]
                } else {
                    vec![DagUnpaused { dag_id }.into()]
                }
            }
            _ => vec![self.config_change()],
        }
    }

    fn parse_dag(&mut self, i: usize, new_version: bool) -> Event {
        if new_version {
            self.dags[i].1 += 1;
        }
        let (dag_id, version) = self.dags[i].clone();
        DagParsed {
            fileloc: format!("dags/{dag_id}/dag.py"),
            bundle_name: "dags-folder".into(),
            version_hash: format!("{dag_id}-v{version}"),
            source_hash: Some(format!("src-{dag_id}-{version}")),
            document_hash: None,
            description: Some(format!("{dag_id}, version {version}")),
            owners: vec!["airflow".into()],
            tags: vec!["sample".into(), format!("v{version}")],
            timetable_summary: Some("@daily".into()),
            max_active_runs: 16,
            max_active_tasks: 16,
            catchup: false,
            is_paused_upon_creation: false,
            access_control: Default::default(),
            tenant: crate::DEFAULT_TENANT.into(),
            provenance: None,
            asset_expression: None,
            asset_references: Vec::new(),
            dag_id,
            alias_references: Vec::new(),
        }
        .into()
    }

    /// One dag run from queued to its end, sometimes cleared and re-run.
    fn dag_run(&mut self, dag: usize, tasks: usize) -> Vec<Event> {
        self.runs += 1;
        let dag_id = self.dags[dag].0.clone();
        let run_id = format!("manual__{}", self.runs);
        let logical = self.base + Duration::minutes(self.runs as i64);
        let mut events: Vec<Event> = vec![
            RunQueued {
                dag_id: dag_id.clone(),
                run_id: run_id.clone(),
                run_type: RunType::Manual,
                logical_date: Some(logical),
                data_interval_start: Some(logical),
                data_interval_end: Some(logical),
                run_after: logical,
                conf: json!({"run": self.runs}),
                triggered_by: "rest_api".into(),
                dag_version_hash: Some(format!("{dag_id}-v{}", self.dags[dag].1)),
                task_ids: (0..tasks).map(|t| format!("task_{t}")).collect(),
                consumed_asset_events: Vec::new(),
            }
            .into(),
        ];
        let mut tries = vec![0; tasks];
        let rounds = if self.rng.chance(10) { 2 } else { 1 };
        for round in 0..rounds {
            events.push(
                RunStarted {
                    dag_id: dag_id.clone(),
                    run_id: run_id.clone(),
                }
                .into(),
            );
            let mut failed = false;
            for (t, try_number) in tries.iter_mut().enumerate() {
                let ti = TaskInstanceKey::mapped(&dag_id, &run_id, &format!("task_{t}"), -1);
                if failed {
                    events.push(TaskUpstreamFailed { ti }.into());
                    continue;
                }
                if self.rng.chance(5) {
                    events.push(
                        TaskSkipped {
                            ti,
                            reason: Some("branch not taken".into()),
                        }
                        .into(),
                    );
                    continue;
                }
                failed = !self.attempts(&ti, try_number, &mut events);
            }
            events.push(if failed {
                RunFailed {
                    dag_id: dag_id.clone(),
                    run_id: run_id.clone(),
                    reason: None,
                }
                .into()
            } else {
                RunSucceeded {
                    dag_id: dag_id.clone(),
                    run_id: run_id.clone(),
                }
                .into()
            });
            if round + 1 < rounds {
                events.push(
                    RunCleared {
                        dag_id: dag_id.clone(),
                        run_id: run_id.clone(),
                    }
                    .into(),
                );
                for t in 0..tasks {
                    let ti = TaskInstanceKey::mapped(&dag_id, &run_id, &format!("task_{t}"), -1);
                    events.push(TaskCleared { ti }.into());
                }
            }
        }
        events
    }

    /// Tries a task instance until it succeeds or runs out of retries; true on success.
    fn attempts(
        &mut self,
        ti: &TaskInstanceKey,
        try_number: &mut i32,
        events: &mut Vec<Event>,
    ) -> bool {
        let retries = 1;
        for attempt in 0..=retries {
            *try_number += 1;
            let n = *try_number;
            events.push(
                TaskScheduled {
                    ti: ti.clone(),
                    try_number: n,
                }
                .into(),
            );
            events.push(
                TaskQueued {
                    ti: ti.clone(),
                    try_number: n,
                    pool: "default_pool".into(),
                    pool_slots: 1,
                    priority_weight: 1,
                    queue: "default".into(),
                }
                .into(),
            );
            events.push(
                TaskDispatched {
                    ti: ti.clone(),
                    try_number: n,
                    attempt_digest: crate::AttemptDigest::of(&Uuid::from_u64_pair(
                        self.rng.next_u64(),
                        self.rng.next_u64(),
                    )),
                    executor: "subprocess".into(),
                }
                .into(),
            );
            events.push(
                TaskStarted {
                    ti: ti.clone(),
                    try_number: n,
                    hostname: "worker-1".into(),
                    pid: Some(1000 + self.rng.below(30000) as i32),
                }
                .into(),
            );
            let outcome = self.rng.below(100);
            if outcome < 85 {
                events.push(
                    XComPushed {
                        ti: ti.clone(),
                        try_number: n,
                        key: "return_value".into(),
                        value_hash: format!("{:016x}", self.rng.next_u64()),
                        size_bytes: self.rng.below(4096) as i64,
                        length: None,
                    }
                    .into(),
                );
                events.push(
                    TaskSucceeded {
                        ti: ti.clone(),
                        try_number: n,
                    }
                    .into(),
                );
                return true;
            }
            let reason = format!("RuntimeError: attempt {n} failed");
            if attempt < retries {
                events.push(
                    TaskUpForRetry {
                        ti: ti.clone(),
                        try_number: n,
                        reason,
                        retry_at: self.base + Duration::seconds(self.rng.below(86_400) as i64),
                    }
                    .into(),
                );
            } else {
                events.push(
                    TaskFailed {
                        ti: ti.clone(),
                        try_number: n,
                        reason,
                    }
                    .into(),
                );
            }
        }
        false
    }

    fn config_change(&mut self) -> Event {
        let n = self.rng.below(5);
        // Two tenants, so replays cover keys that repeat across tenants.
        let tenant = if self.rng.chance(50) {
            "default"
        } else {
            "acme"
        }
        .to_owned();
        match self.rng.below(6) {
            0 => VariableSet {
                key: format!("var_{n}"),
                value: Sealed::DataKey {
                    key_id: Uuid::from_u64_pair(1, n),
                    ciphertext: format!("ct:{:x}", self.rng.next_u64()),
                },
                description: Some("sample".into()),
                tenant,
            }
            .into(),
            1 => VariableDeleted {
                key: format!("var_{n}"),
                tenant,
            }
            .into(),
            2 => ConnectionSet {
                conn_id: format!("conn_{n}"),
                conn_type: "postgres".into(),
                description: None,
                host: Some("db.internal".into()),
                schema: Some("public".into()),
                login: Some("etl".into()),
                password: Some(Sealed::DataKey {
                    key_id: Uuid::from_u64_pair(2, n),
                    ciphertext: format!("ct:{:x}", self.rng.next_u64()),
                }),
                port: Some(5432),
                extra: Some(Sealed::DataKey {
                    key_id: Uuid::from_u64_pair(2, n),
                    ciphertext: format!("ct:{:x}", self.rng.next_u64()),
                }),
                tenant,
            }
            .into(),
            3 => ConnectionDeleted {
                conn_id: format!("conn_{n}"),
                tenant,
            }
            .into(),
            4 => PoolSet {
                name: format!("pool_{n}"),
                slots: 1 + self.rng.below(64) as i32,
                description: None,
                include_deferred: self.rng.chance(50),
                tenant,
            }
            .into(),
            _ => PoolDeleted {
                name: format!("pool_{n}"),
                tenant,
            }
            .into(),
        }
    }
}

/// A `DagParsed` for a hand-built DAG document already stored as blob `document_hash`: an
/// unpaused DAG with Airflow's default limits, for tests and benchmarks of the scheduler.
pub fn parsed_document(dag_id: &str, version_hash: &str, document_hash: &str) -> DagParsed {
    DagParsed {
        dag_id: dag_id.to_owned(),
        fileloc: format!("{dag_id}/dag.py"),
        bundle_name: dag_id.to_owned(),
        version_hash: version_hash.to_owned(),
        source_hash: None,
        document_hash: Some(document_hash.to_owned()),
        description: None,
        owners: Vec::new(),
        tags: Vec::new(),
        timetable_summary: None,
        max_active_runs: 16,
        max_active_tasks: 16,
        catchup: false,
        is_paused_upon_creation: false,
        access_control: Default::default(),
        tenant: crate::DEFAULT_TENANT.into(),
        provenance: None,
        asset_expression: None,
        asset_references: Vec::new(),
        alias_references: Vec::new(),
    }
}
