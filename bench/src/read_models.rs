//! Read models as a busy deployment has them, built through the event log (so they are what
//! the projections make): one big DAG with many finished runs and twenty small DAGs. What the
//! API benchmarks read.

use anyhow::Result;
use chrono::{Duration as Delta, Utc};
use leoflow_events::catalog::*;
use leoflow_events::sample::parsed_document;
use leoflow_events::{
    AppendBatch, DEFAULT_TENANT, EventStore, Metadata, RunType, TaskInstanceKey, dag_key,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The DAG document of a chain of `tasks` tasks (`t00`, `t01`, …).
pub fn document(dag_id: &str, tasks: usize) -> Value {
    let tasks: Vec<Value> = (0..tasks)
        .map(|i| {
            let upstream: Vec<String> = if i == 0 { vec![] } else { vec![format!("t{:02}", i - 1)] };
            json!({"task_id": format!("t{i:02}"), "operator": "@task", "upstream": upstream,
                   "trigger_rule": "all_success", "retries": 0, "retry_delay": 300.0,
                   "retry_exponential_backoff": false, "max_retry_delay": null, "execution_timeout": null,
                   "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default",
                   "owner": "airflow", "mapped": null, "group": null, "display_name": null, "params": {}})
        })
        .collect();
    json!({"dag_id": dag_id, "tasks": tasks, "task_groups": [], "schedule": {"type": "none"},
           "params": {}, "timezone": "UTC", "start_date": null, "end_date": null})
}

/// The events of the `n`-th of `runs` finished runs of `dag_id`, all its tasks successful (a
/// minute apart, the last one now).
fn run_events(
    dag_id: &str,
    hash: &str,
    (n, runs): (usize, usize),
    tasks: usize,
    xcom_hash: &str,
) -> AppendBatch {
    let run_id = format!("manual__run{n:05}");
    let meta = Metadata::actor("bench");
    let after = Utc::now() - Delta::minutes((runs - n) as i64);
    let mut batch = AppendBatch::new()
        .push(
            RunQueued {
                dag_id: dag_id.into(),
                run_id: run_id.clone(),
                run_type: RunType::Manual,
                logical_date: None,
                data_interval_start: None,
                data_interval_end: None,
                run_after: after,
                conf: json!({}),
                triggered_by: "rest_api".into(),
                dag_version_hash: Some(hash.into()),
                task_ids: (0..tasks).map(|t| format!("t{t:02}")).collect(),
                consumed_asset_events: Vec::new(),
            },
            &meta,
        )
        .push(
            RunStarted {
                dag_id: dag_id.into(),
                run_id: run_id.clone(),
            },
            &meta,
        );
    for t in 0..tasks {
        let ti = TaskInstanceKey::new(dag_id, &run_id, &format!("t{t:02}"));
        batch = batch
            .push(
                TaskScheduled {
                    ti: ti.clone(),
                    try_number: 1,
                },
                &meta,
            )
            .push(
                TaskQueued {
                    ti: ti.clone(),
                    try_number: 1,
                    pool: "default_pool".into(),
                    pool_slots: 1,
                    priority_weight: 1,
                    queue: "default".into(),
                },
                &meta,
            )
            .push(
                TaskDispatched {
                    ti: ti.clone(),
                    try_number: 1,
                    attempt_digest: leoflow_events::AttemptDigest::of(&Uuid::new_v4()),
                    executor: "bench".into(),
                },
                &meta,
            )
            .push(
                TaskStarted {
                    ti: ti.clone(),
                    try_number: 1,
                    hostname: "bench".into(),
                    pid: Some(1),
                },
                &meta,
            )
            .push(
                XComPushed {
                    ti: ti.clone(),
                    try_number: 1,
                    key: "return_value".into(),
                    value_hash: xcom_hash.into(),
                    size_bytes: 2,
                    length: None,
                },
                &meta,
            )
            .push(TaskSucceeded { ti, try_number: 1 }, &meta);
    }
    batch.push(
        RunSucceeded {
            dag_id: dag_id.into(),
            run_id,
        },
        &meta,
    )
}

/// One big DAG `big` of `tasks` tasks with `runs` finished runs (an XCom and ten log lines per
/// try) and twenty small DAGs, appended through the event store as the control plane would.
pub async fn build(store: &EventStore, pool: &PgPool, runs: usize, tasks: usize) -> Result<()> {
    build_in(store, pool, DEFAULT_TENANT, runs, tasks).await
}

/// [`build`] with the DAGs registered into `tenant` (keyed in it, `acme:big`).
pub async fn build_in(
    store: &EventStore,
    pool: &PgPool,
    tenant: &str,
    runs: usize,
    tasks: usize,
) -> Result<()> {
    let xcom_hash = store.put_blob("application/json", "42").await?;
    let parsed = |name: &str, hash: &str| DagParsed {
        tenant: tenant.to_owned(),
        ..parsed_document(&dag_key(tenant, name), "v1", hash)
    };
    let doc = document("big", tasks);
    let doc_hash = store.put_blob("application/json", &doc.to_string()).await?;
    store
        .append(AppendBatch::new().push(parsed("big", &doc_hash), &Metadata::actor("bench")))
        .await?;
    for i in 0..20 {
        let dag_id = format!("small_{i:02}");
        let small = document(&dag_id, 3);
        let hash = store
            .put_blob("application/json", &small.to_string())
            .await?;
        store
            .append(AppendBatch::new().push(parsed(&dag_id, &hash), &Metadata::actor("bench")))
            .await?;
    }
    let big = dag_key(tenant, "big");
    for n in 0..runs {
        store
            .append(run_events(&big, "v1", (n, runs), tasks, &xcom_hash))
            .await?;
    }
    // Ten log lines per try, written as the agent service writes them.
    sqlx::query(
        "INSERT INTO task_log (dag_id, run_id, task_id, map_index, try_number, seq, line) \
         SELECT t.dag_id, t.run_id, t.task_id, t.map_index, 1, s, 'log line ' || s || ' of ' || t.task_id \
         FROM task_instance t, generate_series(0, 9) s",
    )
    .execute(pool)
    .await?;
    Ok(())
}
