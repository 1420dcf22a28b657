//! Assets over a real Postgres: DAGs naming assets and asset aliases, asset events (recorded by
//! tasks, some through aliases, and through the API), an asset-triggered run consuming some, and
//! queues — each route's answer checked exactly and against Airflow's OpenAPI, its filters, its
//! refusals, the events its writes append, and what each tenant sees of it.

mod common;

use common::TestApi;
use common::asset_dags::{self, AssetDag};
use leoflow_events::catalog::{
    AliasReference, AssetEventRecorded, AssetKey, AssetReference, AssetRole, ConsumedAssetEvent,
    RunQueued, RunType, alias_id,
};
use leoflow_events::{AppendBatch, DEFAULT_TENANT, Event, Metadata, TaskInstanceKey};
use reqwest::Method;
use serde_json::{Value, json};

fn asset(name: &str) -> AssetKey {
    AssetKey {
        name: name.to_owned(),
        uri: format!("s3://lake/{name}"),
    }
}

/// An asset's `group` and `extra` as every DAG here defines them.
fn definition(name: &str) -> (&'static str, Value) {
    match name {
        "clean" => ("lake", json!({"format": "parquet", "api_key": "k"})),
        _ => ("asset", json!({})),
    }
}

/// `{"asset": {...}}` of Airflow's `asset_expression`.
fn condition(name: &str) -> Value {
    let key = asset(name);
    json!({"asset": {"name": key.name, "uri": key.uri, "group": definition(name).0}})
}

/// An asset leaf of `asset_expression` as the API serves it: with the asset's id, which
/// Airflow's DAG processor adds.
fn served(name: &str) -> Value {
    let mut leaf = condition(name);
    leaf["asset"]["id"] = json!(asset(name).id());
    leaf
}

fn reference(name: &str, role: AssetRole, task_id: Option<&str>) -> AssetReference {
    let (group, extra) = definition(name);
    AssetReference {
        asset: asset(name),
        group: group.to_owned(),
        extra: extra.to_string(),
        role,
        task_id: task_id.map(str::to_owned),
    }
}

/// A DAG of `tenant`, version `version`, with `tasks`, naming `references` and `aliases`.
struct Dag<'a> {
    dag_id: &'a str,
    tenant: &'a str,
    version: &'a str,
    paused: bool,
    tasks: &'a [&'a str],
    expression: Option<Value>,
    references: Vec<AssetReference>,
    aliases: Vec<AliasReference>,
}

async fn parse(api: &TestApi, dag: Dag<'_>) {
    let dag = AssetDag {
        dag_id: dag.dag_id,
        tenant: dag.tenant,
        version: dag.version,
        paused: dag.paused,
        tasks: dag.tasks.iter().map(|t| asset_dags::task(t, &[])).collect(),
        expression: dag.expression,
        references: dag.references,
        aliases: dag.aliases,
    };
    asset_dags::parse(api, dag).await;
}

/// Appends `event`; returns its position.
async fn append(api: &TestApi, event: impl Into<Event>, metadata: &Metadata) -> i64 {
    let outcome = api
        .store
        .append(AppendBatch::new().push(event, metadata))
        .await
        .unwrap();
    outcome.last_position().unwrap()
}

/// What the scheduler records when a task with an outlet succeeds.
async fn task_updated(api: &TestApi, name: &str, source: TaskInstanceKey, extra: Value) -> i64 {
    let event = AssetEventRecorded {
        asset: asset(name),
        group: "asset".into(),
        extra,
        source: Some(source),
        source_aliases: Vec::new(),
        queued: vec!["consumer".into()],
    };
    let metadata = Metadata {
        tenant: Some(DEFAULT_TENANT.into()),
        ..Metadata::actor("scheduler")
    };
    append(api, event, &metadata).await
}

/// What an API caller of tenant beta records.
async fn beta_recorded(api: &TestApi, name: &str) -> i64 {
    let event = AssetEventRecorded {
        asset: asset(name),
        group: "asset".into(),
        extra: json!({"from_rest_api": true}),
        source: None,
        source_aliases: Vec::new(),
        queued: vec!["beta_consumer".into()],
    };
    let metadata = Metadata {
        tenant: Some("beta".into()),
        ..Metadata::actor("someone-of-beta")
    };
    append(api, event, &metadata).await
}

/// The ids of what [`seed`] records.
struct Seeded {
    /// raw from producer.extract, then clean from producer.transform[3], both consumed by
    /// `asset_triggered__1` of consumer; then raw twice more, queued for consumer.
    e1: i64,
    e2: i64,
    e3: i64,
    e4: i64,
    /// beta's events of `secret` and `raw` (recorded through the API).
    b1: i64,
    b2: i64,
}

/// An unpaused DAG, version `v1`.
fn dag<'a>(
    dag_id: &'a str,
    tenant: &'a str,
    tasks: &'a [&'a str],
    expression: Option<Value>,
    references: Vec<AssetReference>,
) -> Dag<'a> {
    Dag {
        dag_id,
        tenant,
        version: "v1",
        paused: false,
        tasks,
        expression,
        references,
        aliases: Vec::new(),
    }
}

/// Tenant default: `producer` (extract → raw; transform reads raw, updates clean), `consumer`
/// (scheduled on raw and clean), `sleeper` (paused, scheduled on raw), `retired` (once updated
/// `old`, now `fresh`). Tenant beta: `beta_consumer` (scheduled on raw or secret).
async fn seed(api: &TestApi) -> Seeded {
    use AssetRole::*;
    let producer = vec![
        reference("clean", Outlet, Some("transform")),
        reference("raw", Inlet, Some("transform")),
        reference("raw", Outlet, Some("extract")),
    ];
    parse(
        api,
        dag(
            "producer",
            DEFAULT_TENANT,
            &["extract", "transform"],
            None,
            producer,
        ),
    )
    .await;
    let both = json!({"all": [condition("raw"), condition("clean")]});
    let consumer = vec![
        reference("clean", Schedule, None),
        reference("raw", Schedule, None),
    ];
    parse(
        api,
        dag(
            "consumer",
            DEFAULT_TENANT,
            &["report"],
            Some(both),
            consumer,
        ),
    )
    .await;
    let sleeper = Dag {
        paused: true,
        ..dag(
            "sleeper",
            DEFAULT_TENANT,
            &["nap"],
            Some(condition("raw")),
            vec![reference("raw", Schedule, None)],
        )
    };
    parse(api, sleeper).await;
    let old = vec![reference("old", Outlet, Some("work"))];
    parse(api, dag("retired", DEFAULT_TENANT, &["work"], None, old)).await;
    let fresh = Dag {
        version: "v2",
        ..dag(
            "retired",
            DEFAULT_TENANT,
            &["work"],
            None,
            vec![reference("fresh", Outlet, Some("work"))],
        )
    };
    parse(api, fresh).await;
    let either = json!({"any": [condition("raw"), condition("secret")]});
    let beta = vec![
        reference("raw", Schedule, None),
        reference("secret", Schedule, None),
    ];
    parse(
        api,
        dag("beta_consumer", "beta", &["use"], Some(either), beta),
    )
    .await;

    let run1 = TaskInstanceKey::new("producer", "manual__1", "extract");
    let e1 = task_updated(api, "raw", run1, json!({"rows": 10})).await;
    let transform = TaskInstanceKey::mapped("producer", "manual__1", "transform", 3);
    let e2 = task_updated(api, "clean", transform, json!({"n": 1, "api_key": "k"})).await;
    let consumed = |event_id, name| ConsumedAssetEvent {
        event_id,
        asset: asset(name),
    };
    let run = RunQueued {
        dag_id: "consumer".into(),
        run_id: "asset_triggered__1".into(),
        run_type: RunType::AssetTriggered,
        logical_date: None,
        data_interval_start: None,
        data_interval_end: None,
        run_after: chrono::Utc::now(),
        conf: json!({}),
        triggered_by: "asset".into(),
        dag_version_hash: Some("v1".into()),
        task_ids: vec!["report".into()],
        consumed_asset_events: vec![consumed(e1, "raw"), consumed(e2, "clean")],
    };
    let scheduler = Metadata {
        tenant: Some(DEFAULT_TENANT.into()),
        ..Metadata::actor("scheduler")
    };
    append(api, run, &scheduler).await;
    let run2 = TaskInstanceKey::new("producer", "manual__2", "extract");
    let e3 = task_updated(api, "raw", run2, json!({})).await;
    let run3 = TaskInstanceKey::new("producer", "manual__3", "extract");
    let e4 = task_updated(api, "raw", run3, json!({})).await;
    let b1 = beta_recorded(api, "secret").await;
    let b2 = beta_recorded(api, "raw").await;
    Seeded {
        e1,
        e2,
        e3,
        e4,
        b1,
        b2,
    }
}

/// A time the database holds, as the API shows it.
async fn time(api: &TestApi, sql: &'static str, key: i64) -> Value {
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(sql)
        .bind(key)
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    json!(at)
}

async fn event_time(api: &TestApi, id: i64) -> Value {
    time(api, "SELECT timestamp FROM asset_event WHERE id = $1", id).await
}

async fn last_parsed(api: &TestApi, dag_id: &str) -> Value {
    let at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT last_parsed_time FROM dag WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_one(&api.db.pool)
            .await
            .unwrap();
    json!(at)
}

async fn queued_at(api: &TestApi, name: &str, dag_id: &str) -> Option<Value> {
    let at: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT created_at FROM asset_dag_run_queue WHERE asset_id = $1 AND target_dag_id = $2",
    )
    .bind(asset(name).id())
    .bind(dag_id)
    .fetch_optional(&api.db.pool)
    .await
    .unwrap();
    at.map(|at| json!(at))
}

/// The type, payload and metadata of the event at `position`.
async fn logged(api: &TestApi, position: i64) -> (String, Value, Value) {
    sqlx::query_as("SELECT type, payload, metadata FROM events WHERE position = $1")
        .bind(position)
        .fetch_one(&api.db.pool)
        .await
        .unwrap()
}

async fn head(api: &TestApi) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(&api.db.pool)
        .await
        .unwrap()
}

/// A caller: `GET` expecting 200, any method returning (status, body); contract-checked.
struct Caller<'a> {
    api: &'a TestApi,
    token: String,
}

impl Caller<'_> {
    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.call_as(&self.token, method, path, body).await
    }

    /// A `GET` whose answer Airflow's document does not list (Airflow answers it so).
    async fn raw(&self, path: &str) -> (u16, Value) {
        self.raw_call(Method::GET, path, None).await
    }

    /// A request not checked against Airflow's document: a DAG of another tenant is hidden
    /// with a 404, which not every route's document lists.
    async fn raw_call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .api
            .client
            .request(method, format!("{}{path}", self.api.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn of<'a>(api: &'a TestApi, tenant: Option<&str>) -> Caller<'a> {
    Caller {
        api,
        token: api.admin_of(tenant),
    }
}

fn ids(list: &Value, key: &str, field: &str) -> Vec<Value> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].clone())
        .collect()
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_answer_with_their_dags_references_and_latest_event() {
    let api = TestApi::without_scheduler().await;
    let seeded = seed(&api).await;
    let default = of(&api, Some(DEFAULT_TENANT));
    let (raw, clean) = (asset("raw").id(), asset("clean").id());
    let created = "SELECT created_at FROM asset WHERE id = $1";
    let (producer, consumer, sleeper) = (
        last_parsed(&api, "producer").await,
        last_parsed(&api, "consumer").await,
        last_parsed(&api, "sleeper").await,
    );
    let task_ref = |task_id: &str| {
        json!({"dag_id": "producer", "task_id": task_id,
               "created_at": producer, "updated_at": producer})
    };
    let raw_body = json!({
        "id": raw, "name": "raw", "uri": "s3://lake/raw", "group": "asset", "extra": {},
        "created_at": time(&api, created, raw).await, "updated_at": time(&api, created, raw).await,
        "scheduled_dags": [
            {"dag_id": "consumer", "created_at": consumer, "updated_at": consumer},
            {"dag_id": "sleeper", "created_at": sleeper, "updated_at": sleeper},
        ],
        "producing_tasks": [task_ref("extract")],
        "consuming_tasks": [task_ref("transform")],
        "aliases": [], "watchers": [],
        // The latest of default's events: beta's later one is not the caller's.
        "last_asset_event": {"id": seeded.e4, "timestamp": event_time(&api, seeded.e4).await},
    });
    let clean_body = json!({
        "id": clean, "name": "clean", "uri": "s3://lake/clean", "group": "lake",
        "extra": {"format": "parquet", "api_key": "***"},
        "created_at": time(&api, created, clean).await,
        "updated_at": time(&api, created, clean).await,
        "scheduled_dags": [{"dag_id": "consumer", "created_at": consumer, "updated_at": consumer}],
        "producing_tasks": [task_ref("transform")],
        "consuming_tasks": [],
        "aliases": [], "watchers": [],
        "last_asset_event": {"id": seeded.e2, "timestamp": event_time(&api, seeded.e2).await},
    });
    assert_eq!(
        default.get(&format!("/api/v2/assets/{raw}")).await,
        raw_body
    );
    assert_eq!(
        default.get(&format!("/api/v2/assets/{clean}")).await,
        clean_body
    );

    // The list: active assets of default's DAGs (`old` no DAG names any more; `secret` is
    // beta's), by id.
    let mut expected = vec![
        raw_body.clone(),
        clean_body.clone(),
        default
            .get(&format!("/api/v2/assets/{}", asset("fresh").id()))
            .await,
    ];
    expected.sort_by_key(|a| a["id"].as_i64());
    let all = default.get("/api/v2/assets").await;
    assert_eq!(all, json!({"assets": expected, "total_entries": 3}));
    let names = |list: &Value| ids(list, "assets", "name");
    let filtered = |query: &'static str| {
        let default = &default;
        async move { names(&default.get(&format!("/api/v2/assets?{query}")).await) }
    };
    assert_eq!(filtered("order_by=-name").await, ["raw", "fresh", "clean"]);
    assert_eq!(filtered("order_by=name&limit=1&offset=1").await, ["fresh"]);
    assert_eq!(filtered("name_pattern=LEA").await, ["clean"]);
    assert_eq!(filtered("name_prefix_pattern=fr").await, ["fresh"]);
    assert_eq!(filtered("uri_pattern=lake/r&order_by=name").await, ["raw"]);
    assert_eq!(
        filtered("uri_prefix_pattern=s3://lake/c|s3://lake/f&order_by=name").await,
        ["clean", "fresh"]
    );
    assert_eq!(
        filtered("dag_ids=sleeper,retired&order_by=name").await,
        ["fresh", "raw"]
    );
    // beta's DAG names raw too, but default's caller learns nothing through it.
    assert!(filtered("dag_ids=beta_consumer").await.is_empty());
    let total = default.get("/api/v2/assets?limit=1").await;
    assert_eq!(total["total_entries"], 3);

    // Every tenant's, and the inactive ones when asked.
    let platform = of(&api, None);
    let everything = platform.get("/api/v2/assets?order_by=name").await;
    assert_eq!(names(&everything), ["clean", "fresh", "raw", "secret"]);
    let inactive = platform
        .get("/api/v2/assets?order_by=name&only_active=false")
        .await;
    assert_eq!(names(&inactive), ["clean", "fresh", "old", "raw", "secret"]);
    let raw_of_all = platform.get(&format!("/api/v2/assets/{raw}")).await;
    assert_eq!(
        ids(&raw_of_all, "scheduled_dags", "dag_id"),
        ["beta_consumer", "consumer", "sleeper"]
    );
    assert_eq!(raw_of_all["last_asset_event"]["id"], seeded.b2);

    // Refusals.
    let old = asset("old").id();
    for (path, status) in [
        (format!("/api/v2/assets/{old}"), 404),
        ("/api/v2/assets/12345".into(), 404),
        ("/api/v2/assets/abc".into(), 422),
        ("/api/v2/assets?order_by=extra".into(), 422),
        ("/api/v2/assets?only_active=maybe".into(), 422),
    ] {
        let (got, body) = default.call(Method::GET, &path, None).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    let (_, missing) = default
        .call(Method::GET, "/api/v2/assets/12345", None)
        .await;
    assert_eq!(detail(&missing), "The Asset with ID: `12345` was not found");

    // No DAG here names an alias: none to list, and an asset's id is no alias's.
    assert_eq!(
        default.get("/api/v2/assets/aliases").await,
        json!({"asset_aliases": [], "total_entries": 0})
    );
    let (status, alias) = default
        .call(Method::GET, &format!("/api/v2/assets/aliases/{raw}"), None)
        .await;
    assert_eq!(
        (status, detail(&alias)),
        (
            404,
            format!("The Asset Alias with ID: `{raw}` was not found").as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_events_show_their_asset_source_and_the_runs_that_consumed_them() {
    let api = TestApi::without_scheduler().await;
    let s = seed(&api).await;
    let default = of(&api, Some(DEFAULT_TENANT));
    let (raw, clean) = (asset("raw").id(), asset("clean").id());
    let run_queued_at = time(
        &api,
        "SELECT queued_at FROM dag_run WHERE id = $1",
        sqlx::query_scalar("SELECT id FROM dag_run WHERE run_id = 'asset_triggered__1'")
            .fetch_one(&api.db.pool)
            .await
            .unwrap(),
    )
    .await;
    let consumed_by = json!([{
        "run_id": "asset_triggered__1", "dag_id": "consumer", "logical_date": null,
        // Queued, not started: the time it was queued.
        "start_date": run_queued_at, "end_date": null, "state": "queued",
        "data_interval_start": null, "data_interval_end": null, "partition_key": null,
    }]);
    let e1 = json!({
        "id": s.e1, "asset_id": raw, "uri": "s3://lake/raw", "name": "raw", "group": "asset",
        "extra": {"rows": 10}, "source_task_id": "extract", "source_dag_id": "producer",
        "source_run_id": "manual__1", "source_map_index": -1, "created_dagruns": consumed_by,
        "timestamp": event_time(&api, s.e1).await, "partition_key": null,
    });
    let e2 = json!({
        "id": s.e2, "asset_id": clean, "uri": "s3://lake/clean", "name": "clean",
        "group": "lake", "extra": {"n": 1, "api_key": "***"}, "source_task_id": "transform",
        "source_dag_id": "producer", "source_run_id": "manual__1", "source_map_index": 3,
        "created_dagruns": consumed_by, "timestamp": event_time(&api, s.e2).await,
        "partition_key": null,
    });
    let page = default.get("/api/v2/assets/events?limit=2").await;
    assert_eq!(page, json!({"asset_events": [e1, e2], "total_entries": 4}));
    let listed = |query: String| {
        let default = &default;
        async move {
            let list = default.get(&format!("/api/v2/assets/events?{query}")).await;
            ids(&list, "asset_events", "id")
        }
    };
    let e3_time = event_time(&api, s.e3).await;
    let e3_time = e3_time.as_str().unwrap();
    for (query, expected) in [
        (format!("asset_id={clean}"), vec![s.e2]),
        ("order_by=-timestamp".into(), vec![s.e4, s.e3, s.e2, s.e1]),
        (
            "source_dag_id=producer&source_task_id=extract".into(),
            vec![s.e1, s.e3, s.e4],
        ),
        ("source_run_id=manual__2".into(), vec![s.e3]),
        ("source_map_index=3".into(), vec![s.e2]),
        (
            "source_map_index=-1&order_by=-source_run_id".into(),
            vec![s.e4, s.e3, s.e1],
        ),
        ("name_pattern=EA".into(), vec![s.e2]),
        ("name_prefix_pattern=ra".into(), vec![s.e1, s.e3, s.e4]),
        (
            format!("timestamp_gte={}", encode(e3_time)),
            vec![s.e3, s.e4],
        ),
        (
            format!("timestamp_lt={}", encode(e3_time)),
            vec![s.e1, s.e2],
        ),
        ("source_dag_id=beta_consumer".into(), vec![]),
    ] {
        let expected: Vec<Value> = expected.into_iter().map(Value::from).collect();
        assert_eq!(listed(query.clone()).await, expected, "{query}");
    }
    let (status, _) = default
        .call(Method::GET, "/api/v2/assets/events?order_by=id", None)
        .await;
    assert_eq!(status, 422);
    let (status, _) = default
        .call(Method::GET, "/api/v2/assets/events?asset_id=raw", None)
        .await;
    assert_eq!(status, 422);

    // The events a run consumed.
    let upstream = default
        .get("/api/v2/dags/consumer/dagRuns/asset_triggered__1/upstreamAssetEvents")
        .await;
    assert_eq!(
        upstream,
        json!({"asset_events": [e1, e2], "total_entries": 2})
    );
    let (status, missing) = default
        .call(
            Method::GET,
            "/api/v2/dags/consumer/dagRuns/nope/upstreamAssetEvents",
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        detail(&missing),
        "The DagRun with dag_id: `consumer` and run_id: `nope` was not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_an_asset_event_queues_the_callers_unpaused_dags_scheduled_on_it() {
    let api = TestApi::without_scheduler().await;
    seed(&api).await;
    let default = of(&api, Some(DEFAULT_TENANT));
    let clean = asset("clean").id();
    assert_eq!(queued_at(&api, "clean", "consumer").await, None, "consumed");

    let body = json!({"asset_id": clean, "extra": {"note": "by hand", "password": "p"}});
    let (status, recorded) = default
        .call(Method::POST, "/api/v2/assets/events", Some(body))
        .await;
    assert_eq!(status, 200, "{recorded}");
    let id = head(&api).await;
    assert_eq!(
        recorded,
        json!({
            "id": id, "asset_id": clean, "uri": "s3://lake/clean", "name": "clean",
            "group": "lake", "extra": {"note": "by hand", "password": "***", "from_rest_api": true},
            "source_task_id": null, "source_dag_id": null, "source_run_id": null,
            "source_map_index": -1, "created_dagruns": [],
            "timestamp": event_time(&api, id).await, "partition_key": null,
        })
    );
    let (kind, payload, metadata) = logged(&api, id).await;
    assert_eq!(kind, "AssetEventRecorded");
    assert_eq!(
        payload,
        json!({
            "asset": {"name": "clean", "uri": "s3://lake/clean"},
            "group": "lake",
            "extra": {"note": "by hand", "password": "p", "from_rest_api": true},
            "source": null,
            // Not sleeper (paused), not beta_consumer (tenant beta), not producer.
            "queued": ["consumer"],
        })
    );
    assert_eq!(metadata["actor"], "admin-of-default");
    assert_eq!(metadata["tenant"], DEFAULT_TENANT);
    assert_eq!(
        queued_at(&api, "clean", "consumer").await,
        Some(event_time(&api, id).await)
    );

    // Tenant beta records raw: its DAG is queued, and it is beta's event.
    let beta = of(&api, Some("beta"));
    let raw = asset("raw").id();
    let (status, _) = beta
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": raw})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, payload, metadata) = logged(&api, head(&api).await).await;
    assert_eq!(payload["queued"], json!(["beta_consumer"]));
    assert_eq!(payload["extra"], json!({"from_rest_api": true}));
    assert_eq!(metadata["tenant"], "beta");
    // A platform admin records in the default tenant.
    let (status, _) = of(&api, None)
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": raw})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, payload, metadata) = logged(&api, head(&api).await).await;
    assert_eq!(payload["queued"], json!(["consumer"]));
    assert_eq!(metadata["tenant"], DEFAULT_TENANT);

    // Refused, and nothing appended.
    let before = head(&api).await;
    let secret = asset("secret").id();
    for (body, status, message) in [
        (
            json!({"asset_id": secret}),
            404,
            Some(format!("Asset with ID: `{secret}` was not found")),
        ),
        (
            json!({"asset_id": 12345}),
            404,
            Some("Asset with ID: `12345` was not found".into()),
        ),
        (
            json!({"asset_id": clean, "partition_key": "2026-01"}),
            422,
            None,
        ),
        (json!({"asset_id": clean, "extra": [1]}), 422, None),
        (json!({"asset_id": clean, "extra": null}), 422, None),
        (json!({"asset_id": clean, "colour": "red"}), 422, None),
        (json!({"extra": {}}), 422, None),
    ] {
        let (got, answer) = default
            .call(Method::POST, "/api/v2/assets/events", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        if let Some(message) = message {
            assert_eq!(detail(&answer), message);
        }
    }
    let (_, partition) = default
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": clean, "partition_key": "2026-01"})),
        )
        .await;
    assert_eq!(
        partition["detail"][0]["loc"],
        json!(["body", "partition_key"])
    );
    assert!(
        partition["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("no partitioned assets"),
        "{partition}"
    );
    let (_, list) = default
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": clean, "extra": [1]})),
        )
        .await;
    assert_eq!(list["detail"][0]["type"], "dict_type");
    assert_eq!(list["detail"][0]["loc"], json!(["body", "extra"]));
    assert_eq!(head(&api).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_are_listed_and_cleared_by_events() {
    let api = TestApi::without_scheduler().await;
    seed(&api).await;
    let default = of(&api, Some(DEFAULT_TENANT));
    let platform = of(&api, None);
    let (raw, clean) = (asset("raw").id(), asset("clean").id());
    let first = queued_at(&api, "raw", "consumer").await.unwrap();
    let entry = json!({"dag_id": "consumer", "asset_id": raw, "created_at": first,
                       "dag_display_name": "consumer"});
    let one = json!({"queued_events": [entry], "total_entries": 1});
    assert_eq!(
        default
            .get(&format!("/api/v2/assets/{raw}/queuedEvents"))
            .await,
        one
    );
    assert_eq!(
        default
            .get("/api/v2/dags/consumer/assets/queuedEvents")
            .await,
        one
    );
    assert_eq!(
        default
            .get(&format!("/api/v2/dags/consumer/assets/{raw}/queuedEvents"))
            .await,
        entry
    );
    let everyone = platform
        .get(&format!("/api/v2/assets/{raw}/queuedEvents"))
        .await;
    assert_eq!(
        ids(&everyone, "queued_events", "dag_id"),
        ["beta_consumer", "consumer"]
    );
    let (status, missing) = default
        .call(
            Method::GET,
            &format!("/api/v2/dags/consumer/assets/{clean}/queuedEvents"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        detail(&missing),
        format!("Queued event with dag_id: `consumer` and asset_id: `{clean}` was not found")
    );
    // `before` is strict.
    let first_text = encode(first.as_str().unwrap());
    let none = default
        .get(&format!(
            "/api/v2/assets/{raw}/queuedEvents?before={first_text}"
        ))
        .await;
    assert_eq!(none, json!({"queued_events": [], "total_entries": 0}));
    let later = encode(&(chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    let (status, _) = default
        .call(
            Method::DELETE,
            &format!("/api/v2/assets/{raw}/queuedEvents?before={first_text}"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // One DAG's entry of one asset.
    let path = format!("/api/v2/dags/consumer/assets/{raw}/queuedEvents?before={later}");
    let (status, _) = default.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (kind, payload, metadata) = logged(&api, head(&api).await).await;
    assert_eq!(kind, "AssetQueueCleared");
    assert_eq!(
        payload,
        json!({"dag_id": "consumer", "assets": [{"name": "raw", "uri": "s3://lake/raw"}]})
    );
    assert_eq!(metadata["actor"], "admin-of-default");
    assert_eq!(queued_at(&api, "raw", "consumer").await, None);
    assert!(queued_at(&api, "raw", "beta_consumer").await.is_some());
    let (status, again) = default.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(
        detail(&again),
        format!("Queued event with dag_id: `consumer` and asset_id: `{raw}` was not found")
    );

    // A DAG's whole queue, in one event.
    for id in [clean, raw] {
        let body = json!({"asset_id": id});
        let (status, _) = default
            .call(Method::POST, "/api/v2/assets/events", Some(body))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = default
        .call(
            Method::DELETE,
            "/api/v2/dags/consumer/assets/queuedEvents",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, payload, _) = logged(&api, head(&api).await).await;
    assert_eq!(
        payload,
        json!({"dag_id": "consumer", "assets": [
            {"name": "clean", "uri": "s3://lake/clean"}, {"name": "raw", "uri": "s3://lake/raw"},
        ]})
    );
    assert_eq!(queued_at(&api, "clean", "consumer").await, None);
    let (status, nothing) = default
        .call(
            Method::DELETE,
            "/api/v2/dags/consumer/assets/queuedEvents",
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        detail(&nothing),
        "Queue event with dag_id: `consumer` was not found"
    );

    // Default's caller cannot clear beta's entry; a platform admin clears an asset's entries of
    // every DAG, one event per DAG in one append.
    let secret = asset("secret").id();
    let (status, _) = default
        .call(
            Method::DELETE,
            &format!("/api/v2/assets/{secret}/queuedEvents"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert!(queued_at(&api, "secret", "beta_consumer").await.is_some());
    let (status, _) = default
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": raw})),
        )
        .await;
    assert_eq!(status, 200);
    let before = head(&api).await;
    let (status, _) = platform
        .call(
            Method::DELETE,
            &format!("/api/v2/assets/{raw}/queuedEvents"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(head(&api).await, before + 2);
    for (position, dag_id) in [(before + 1, "beta_consumer"), (before + 2, "consumer")] {
        let (kind, payload, _) = logged(&api, position).await;
        assert_eq!(kind, "AssetQueueCleared");
        assert_eq!(
            payload,
            json!({"dag_id": dag_id, "assets": [{"name": "raw", "uri": "s3://lake/raw"}]})
        );
    }
    assert_eq!(queued_at(&api, "raw", "beta_consumer").await, None);

    for path in [
        "/api/v2/assets/abc/queuedEvents".to_owned(),
        format!("/api/v2/assets/{raw}/queuedEvents?before=yesterday"),
    ] {
        let (status, _) = default.call(Method::GET, &path, None).await;
        assert_eq!(status, 422, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dags_show_and_filter_by_their_asset_schedule() {
    let api = TestApi::without_scheduler().await;
    seed(&api).await;
    let default = of(&api, Some(DEFAULT_TENANT));
    let dags = |query: &'static str| {
        let default = &default;
        async move {
            let list = default.get(&format!("/api/v2/dags?{query}")).await;
            ids(&list, "dags", "dag_id")
        }
    };
    assert_eq!(
        dags("has_asset_schedule=true").await,
        ["consumer", "sleeper"]
    );
    assert_eq!(
        dags("has_asset_schedule=false").await,
        ["producer", "retired"]
    );
    assert_eq!(dags("asset_dependency=clean").await, ["consumer"]);
    assert_eq!(
        dags("asset_dependency=S3://LAKE/RAW").await,
        ["consumer", "sleeper"]
    );
    assert!(dags("asset_dependency=fresh").await.is_empty(), "an outlet");
    let everyone = of(&api, None)
        .get("/api/v2/dags?asset_dependency=raw")
        .await;
    assert_eq!(
        ids(&everyone, "dags", "dag_id"),
        ["beta_consumer", "consumer", "sleeper"]
    );

    let both = json!({"all": [served("raw"), served("clean")]});
    let details = default.get("/api/v2/dags/consumer/details").await;
    assert_eq!(details["asset_expression"], both);
    assert_eq!(details["timetable_summary"], "Asset");
    assert_eq!(details["timetable_description"], "Triggered by assets");
    let producer = default.get("/api/v2/dags/producer/details").await;
    assert_eq!(producer["asset_expression"], Value::Null);
    let ui = default
        .get("/ui/dags?dag_ids=consumer&dag_ids=producer")
        .await;
    let expressions: Vec<Value> = ui["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!([d["dag_id"], d["asset_expression"]]))
        .collect();
    assert_eq!(
        expressions,
        [json!(["consumer", both]), json!(["producer", null])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_draws_next_run_assets_and_the_dependency_graph() {
    let api = TestApi::without_scheduler().await;
    let s = seed(&api).await;
    let default = of(&api, Some(DEFAULT_TENANT));
    let (raw, clean, fresh) = (asset("raw").id(), asset("clean").id(), asset("fresh").id());

    // raw waits in consumer's queue since e3; its latest update is e4 (beta's later one is
    // beta's). clean was consumed.
    let next = default.get("/ui/next_run_assets/consumer").await;
    assert_eq!(
        next,
        json!({
            "asset_expression": {"all": [served("raw"), served("clean")]},
            "events": [
                {"id": clean, "uri": "s3://lake/clean", "name": "clean", "lastUpdate": null},
                {"id": raw, "uri": "s3://lake/raw", "name": "raw",
                 "lastUpdate": event_time(&api, s.e4).await},
            ],
        })
    );
    let (status, unknown) = default.raw("/ui/next_run_assets/nope").await;
    assert_eq!(
        (status, detail(&unknown)),
        (404, "Dag with id nope was not found")
    );
    let plain = default.get("/ui/next_run_assets/producer").await;
    assert_eq!(plain, json!({"asset_expression": null, "events": []}));

    // The scheduling graph of default's DAGs.
    let node =
        |id: String, label: &str, kind: &str| json!({"id": id, "label": label, "type": kind});
    let dag = |id: &str| node(format!("dag:{id}"), id, "dag");
    let asset_node = |name: &str| node(format!("asset:{}", asset(name).id()), name, "asset");
    let edges = |pairs: &[(String, String)]| {
        let mut pairs = pairs.to_vec();
        pairs.sort();
        pairs
            .into_iter()
            .map(|(s, t)| json!({"source_id": s, "target_id": t}))
            .collect::<Vec<_>>()
    };
    let a = |name: &str| format!("asset:{}", asset(name).id());
    let d = |id: &str| format!("dag:{id}");
    let graph = default.get("/ui/dependencies").await;
    assert_eq!(
        graph,
        json!({
            "edges": edges(&[
                (a("clean"), d("consumer")),
                (a("raw"), d("consumer")),
                (d("producer"), a("clean")),
                (d("producer"), a("raw")),
                (d("retired"), a("fresh")),
                (a("raw"), d("sleeper")),
            ]),
            "nodes": [
                dag("consumer"), asset_node("clean"), asset_node("raw"), dag("producer"),
                dag("retired"), asset_node("fresh"), dag("sleeper"),
            ],
        })
    );
    let part = default.get("/ui/dependencies?node_id=dag:retired").await;
    assert_eq!(
        part,
        json!({"edges": edges(&[(d("retired"), a("fresh"))]),
               "nodes": [dag("retired"), asset_node("fresh")]})
    );
    let (status, _) = default
        .call(Method::GET, "/ui/dependencies?node_id=dag:nobody", None)
        .await;
    assert_eq!(status, 404);
    let everyone = of(&api, None).get("/ui/dependencies").await;
    assert!(
        everyone["nodes"]
            .as_array()
            .unwrap()
            .contains(&asset_node("secret")),
        "{everyone}"
    );

    // An asset's lineage through tasks.
    let task = |id: &str| format!("task:producer__SEPARATOR__{id}");
    let lineage = default
        .get(&format!(
            "/ui/dependencies?node_id=asset:{clean}&dependency_type=data"
        ))
        .await;
    assert_eq!(
        lineage,
        json!({
            "edges": edges(&[
                (task("transform"), a("clean")),
                (a("raw"), task("transform")),
                (task("extract"), a("raw")),
            ]),
            "nodes": [
                asset_node("clean"), node(task("transform"), "producer.transform", "task"),
                asset_node("raw"), node(task("extract"), "producer.extract", "task"),
            ],
        })
    );
    let alone = default
        .get(&format!(
            "/ui/dependencies?node_id=asset:{fresh}&dependency_type=data"
        ))
        .await;
    assert_eq!(alone["nodes"].as_array().unwrap().len(), 2, "{alone}");
    let secret = asset("secret").id();
    for (query, status) in [
        ("node_id=dag:consumer&dependency_type=data".to_owned(), 422),
        ("dependency_type=data".to_owned(), 422),
        ("dependency_type=sideways".to_owned(), 422),
        (format!("node_id=asset:{secret}&dependency_type=data"), 404),
        ("node_id=asset:999&dependency_type=data".to_owned(), 404),
    ] {
        let (got, body) = default
            .call(Method::GET, &format!("/ui/dependencies?{query}"), None)
            .await;
        assert_eq!(got, status, "{query}: {body}");
    }

    let menus = api.get("/ui/auth/menus").await;
    assert!(
        menus["authorized_menu_items"]
            .as_array()
            .unwrap()
            .contains(&json!("Assets")),
        "{menus}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_only_its_own_assets_events_and_queues() {
    let api = TestApi::without_scheduler().await;
    let s = seed(&api).await;
    let (raw, secret) = (asset("raw").id(), asset("secret").id());

    // beta: raw and secret, with beta's DAG and events only.
    let beta = of(&api, Some("beta"));
    let assets = beta.get("/api/v2/assets?order_by=name").await;
    assert_eq!(ids(&assets, "assets", "name"), ["raw", "secret"]);
    let raw_of_beta = &assets["assets"][0];
    assert_eq!(
        ids(raw_of_beta, "scheduled_dags", "dag_id"),
        ["beta_consumer"]
    );
    assert_eq!(raw_of_beta["producing_tasks"], json!([]));
    assert_eq!(raw_of_beta["last_asset_event"]["id"], s.b2);
    let events = beta.get("/api/v2/assets/events").await;
    assert_eq!(ids(&events, "asset_events", "id"), [s.b1, s.b2]);
    let queued = beta
        .get(&format!("/api/v2/assets/{raw}/queuedEvents"))
        .await;
    assert_eq!(ids(&queued, "queued_events", "dag_id"), ["beta_consumer"]);

    // acme, which has no DAG: nothing at all.
    let acme = of(&api, Some("acme"));
    let empty = |key: &str| json!({key: [], "total_entries": 0});
    assert_eq!(acme.get("/api/v2/assets").await, empty("assets"));
    assert_eq!(
        acme.get("/api/v2/assets?only_active=false").await,
        empty("assets")
    );
    assert_eq!(
        acme.get("/api/v2/assets/events").await,
        empty("asset_events")
    );
    assert_eq!(
        acme.get(&format!("/api/v2/assets/{raw}/queuedEvents"))
            .await,
        empty("queued_events")
    );
    assert_eq!(
        acme.get("/api/v2/dags?has_asset_schedule=true").await["total_entries"],
        0
    );
    assert_eq!(
        acme.get("/ui/dependencies").await,
        json!({"edges": [], "nodes": []})
    );
    let before = head(&api).await;
    for (method, path, body) in [
        (Method::GET, format!("/api/v2/assets/{raw}"), None),
        (Method::GET, format!("/api/v2/assets/{secret}"), None),
        (
            Method::DELETE,
            format!("/api/v2/assets/{raw}/queuedEvents"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v2/assets/{secret}/queuedEvents"),
            None,
        ),
        (
            Method::POST,
            "/api/v2/assets/events".to_owned(),
            Some(json!({"asset_id": raw})),
        ),
        (
            Method::DELETE,
            "/api/v2/dags/beta_consumer/assets/queuedEvents".to_owned(),
            None,
        ),
        (
            Method::GET,
            format!("/api/v2/dags/consumer/assets/{raw}/queuedEvents"),
            None,
        ),
        (
            Method::GET,
            "/api/v2/dags/consumer/dagRuns/asset_triggered__1/upstreamAssetEvents".to_owned(),
            None,
        ),
        (
            Method::GET,
            format!("/ui/dependencies?node_id=asset:{raw}&dependency_type=data"),
            None,
        ),
    ] {
        let (status, answer) = acme.raw_call(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (status, _) = acme.raw("/ui/next_run_assets/consumer").await;
    assert_eq!(status, 404);
    // Listing a DAG's queue answers an empty list for a DAG that does not exist, as for any.
    let (status, answer) = acme
        .raw_call(
            Method::GET,
            "/api/v2/dags/consumer/assets/queuedEvents",
            None,
        )
        .await;
    assert_eq!(
        (status, &answer["total_entries"]),
        (200, &json!(0)),
        "{answer}"
    );
    assert_eq!(head(&api).await, before, "acme changed nothing");
    assert!(queued_at(&api, "raw", "consumer").await.is_some());
    assert!(queued_at(&api, "secret", "beta_consumer").await.is_some());
}

fn alias(name: &str, group: &str, role: AssetRole, task_id: Option<&str>) -> AliasReference {
    AliasReference {
        name: name.to_owned(),
        group: group.to_owned(),
        role,
        task_id: task_id.map(str::to_owned),
    }
}

/// `{"alias": {...}}` of Airflow's `asset_expression`.
fn alias_condition(name: &str, group: &str) -> Value {
    json!({"alias": {"name": name, "group": group}})
}

/// What the scheduler records in `tenant` when a task adds an event of `name` through `aliases`.
async fn added_through(
    api: &TestApi,
    tenant: &str,
    name: &str,
    source: TaskInstanceKey,
    aliases: &[&str],
    queued: &[&str],
) -> i64 {
    let event = AssetEventRecorded {
        asset: asset(name),
        group: "asset".into(),
        extra: json!({"through": aliases}),
        source: Some(source),
        source_aliases: aliases.iter().map(|a| a.to_string()).collect(),
        queued: queued.iter().map(|d| d.to_string()).collect(),
    };
    let metadata = Metadata {
        tenant: Some(tenant.into()),
        ..Metadata::actor("scheduler")
    };
    append(api, event, &metadata).await
}

/// The ids of what [`seed_aliases`] records.
struct AliasSeeded {
    /// default's `router.route` added `dynamic` through `routed`.
    e1: i64,
    /// beta's `beta_follower.write` added `scratch`, then `dynamic`, through `adhoc`.
    b1: i64,
    b2: i64,
}

/// Tenant default: `router` (its task `route` updates the alias `routed`) and `follower`
/// (scheduled on `routed` only); `route` added `dynamic`, which no DAG names, through `routed`.
/// Tenant beta: `beta_follower` (scheduled on `routed` too; its task `read` reads the alias
/// `shared`); its task `write` added `scratch` and `dynamic` through `adhoc`, which no DAG names
/// (any more).
async fn seed_aliases(api: &TestApi) -> AliasSeeded {
    use AssetRole::*;
    let router = Dag {
        aliases: vec![alias("routed", "routing", Outlet, Some("route"))],
        ..dag("router", DEFAULT_TENANT, &["route"], None, Vec::new())
    };
    parse(api, router).await;
    let on_routed = Some(alias_condition("routed", "routing"));
    let follower = Dag {
        aliases: vec![alias("routed", "routing", Schedule, None)],
        ..dag(
            "follower",
            DEFAULT_TENANT,
            &["report"],
            on_routed.clone(),
            Vec::new(),
        )
    };
    parse(api, follower).await;
    let beta_follower = Dag {
        aliases: vec![
            alias("routed", "routing", Schedule, None),
            alias("shared", "reading", Inlet, Some("read")),
        ],
        ..dag(
            "beta_follower",
            "beta",
            &["read", "write"],
            on_routed,
            Vec::new(),
        )
    };
    parse(api, beta_follower).await;

    let route = TaskInstanceKey::new("router", "manual__1", "route");
    let e1 = added_through(
        api,
        DEFAULT_TENANT,
        "dynamic",
        route,
        &["routed"],
        &["follower"],
    )
    .await;
    let write = || TaskInstanceKey::new("beta_follower", "manual__1", "write");
    let b1 = added_through(api, "beta", "scratch", write(), &["adhoc"], &[]).await;
    let b2 = added_through(api, "beta", "dynamic", write(), &["adhoc"], &[]).await;
    AliasSeeded { e1, b1, b2 }
}

/// An alias as Airflow's `AssetAliasResponse` shows it.
fn alias_body(name: &str, group: &str) -> Value {
    json!({"id": alias_id(name), "name": name, "group": group})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_aliases_are_listed_and_found_as_each_tenant_sees_them() {
    let api = TestApi::without_scheduler().await;
    seed_aliases(&api).await;
    let (default, beta, acme, platform) = (
        of(&api, Some(DEFAULT_TENANT)),
        of(&api, Some("beta")),
        of(&api, Some("acme")),
        of(&api, None),
    );
    let routed = alias_body("routed", "routing");
    let shared = alias_body("shared", "reading");
    // Registered when a task added through it (no DAG named it): Airflow's default group.
    let adhoc = alias_body("adhoc", "asset");

    // default's DAGs name `routed` only; beta's name `routed` and `shared`, and `adhoc` stands
    // for assets of beta; acme has neither.
    assert_eq!(
        default.get("/api/v2/assets/aliases").await,
        json!({"asset_aliases": [routed], "total_entries": 1})
    );
    let mut of_beta = vec![routed.clone(), shared.clone(), adhoc.clone()];
    of_beta.sort_by_key(|a| a["id"].as_i64());
    assert_eq!(
        beta.get("/api/v2/assets/aliases").await,
        json!({"asset_aliases": of_beta, "total_entries": 3})
    );
    assert_eq!(
        platform.get("/api/v2/assets/aliases").await,
        json!({"asset_aliases": of_beta, "total_entries": 3})
    );
    assert_eq!(
        acme.get("/api/v2/assets/aliases").await,
        json!({"asset_aliases": [], "total_entries": 0})
    );
    let names = |query: &'static str| {
        let beta = &beta;
        async move {
            let list = beta.get(&format!("/api/v2/assets/aliases?{query}")).await;
            (
                ids(&list, "asset_aliases", "name"),
                list["total_entries"].clone(),
            )
        }
    };
    assert_eq!(
        names("order_by=name").await,
        (
            vec![json!("adhoc"), json!("routed"), json!("shared")],
            json!(3)
        )
    );
    assert_eq!(
        names("order_by=-name&limit=1&offset=1").await,
        (vec![json!("routed")], json!(3))
    );
    assert_eq!(
        names("name_pattern=HAR").await,
        (vec![json!("shared")], json!(1))
    );
    assert_eq!(
        names("name_prefix_pattern=ad|sh&order_by=name").await,
        (vec![json!("adhoc"), json!("shared")], json!(2))
    );

    // One alias, as its list shows it; Airflow's 404 for one the caller does not see.
    let one = |name: &str| format!("/api/v2/assets/aliases/{}", alias_id(name));
    assert_eq!(default.get(&one("routed")).await, routed);
    assert_eq!(beta.get(&one("adhoc")).await, adhoc);
    assert_eq!(beta.get(&one("shared")).await, shared);
    assert_eq!(platform.get(&one("adhoc")).await, adhoc);
    for (caller, name) in [(&default, "adhoc"), (&default, "shared"), (&acme, "routed")] {
        let (status, body) = caller.call(Method::GET, &one(name), None).await;
        let id = alias_id(name);
        assert_eq!(
            (status, detail(&body)),
            (
                404,
                format!("The Asset Alias with ID: `{id}` was not found").as_str()
            ),
            "{name}"
        );
    }
    for (path, status) in [
        ("/api/v2/assets/aliases/12345", 404),
        ("/api/v2/assets/aliases/abc", 422),
        ("/api/v2/assets/aliases?order_by=group", 422),
        ("/api/v2/assets/aliases?limit=-1", 422),
    ] {
        let (got, body) = beta.call(Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_added_through_an_alias_is_its_tenants_with_the_aliases_standing_for_it() {
    let api = TestApi::without_scheduler().await;
    let s = seed_aliases(&api).await;
    let (default, beta, acme, platform) = (
        of(&api, Some(DEFAULT_TENANT)),
        of(&api, Some("beta")),
        of(&api, Some("acme")),
        of(&api, None),
    );
    let (dynamic, scratch) = (asset("dynamic").id(), asset("scratch").id());
    let created = "SELECT created_at FROM asset WHERE id = $1";
    let dynamic_created = time(&api, created, dynamic).await;
    // No DAG names it: no references; `routed` stands for it in default.
    let dynamic_body = json!({
        "id": dynamic, "name": "dynamic", "uri": "s3://lake/dynamic", "group": "asset",
        "extra": {}, "created_at": dynamic_created, "updated_at": dynamic_created,
        "scheduled_dags": [], "producing_tasks": [], "consuming_tasks": [],
        "aliases": [alias_body("routed", "routing")], "watchers": [],
        "last_asset_event": {"id": s.e1, "timestamp": event_time(&api, s.e1).await},
    });
    let path = |id: i64| format!("/api/v2/assets/{id}");
    assert_eq!(default.get(&path(dynamic)).await, dynamic_body);
    // For beta, `adhoc` stands for it, and its latest event is beta's.
    let of_beta = beta.get(&path(dynamic)).await;
    assert_eq!(of_beta["aliases"], json!([alias_body("adhoc", "asset")]));
    assert_eq!(of_beta["last_asset_event"]["id"], s.b2);
    let scratch_of_beta = beta.get(&path(scratch)).await;
    assert_eq!(
        scratch_of_beta["aliases"],
        json!([alias_body("adhoc", "asset")])
    );
    assert_eq!(scratch_of_beta["last_asset_event"]["id"], s.b1);
    // Every tenant's aliases, each once, by name.
    let of_all = platform.get(&path(dynamic)).await;
    assert_eq!(
        of_all["aliases"],
        json!([
            alias_body("adhoc", "asset"),
            alias_body("routed", "routing")
        ])
    );
    assert_eq!(of_all["last_asset_event"]["id"], s.b2);

    // scratch is beta's only; acme sees neither.
    for (caller, id) in [(&default, scratch), (&acme, dynamic), (&acme, scratch)] {
        let (status, body) = caller.call(Method::GET, &path(id), None).await;
        assert_eq!(
            (status, detail(&body)),
            (
                404,
                format!("The Asset with ID: `{id}` was not found").as_str()
            )
        );
    }
    // As in Airflow, an asset no DAG names is not active: listed only when asked.
    let empty = json!({"assets": [], "total_entries": 0});
    assert_eq!(default.get("/api/v2/assets").await, empty);
    assert_eq!(
        default.get("/api/v2/assets?only_active=false").await,
        json!({"assets": [dynamic_body], "total_entries": 1})
    );
    let beta_all = beta
        .get("/api/v2/assets?only_active=false&order_by=name")
        .await;
    assert_eq!(ids(&beta_all, "assets", "name"), ["dynamic", "scratch"]);
    assert_eq!(acme.get("/api/v2/assets?only_active=false").await, empty);

    // Its events show no alias (Airflow's `AssetEventResponse` has none).
    let events = default.get("/api/v2/assets/events").await;
    assert_eq!(
        events,
        json!({"asset_events": [{
            "id": s.e1, "asset_id": dynamic, "uri": "s3://lake/dynamic", "name": "dynamic",
            "group": "asset", "extra": {"through": ["routed"]}, "source_task_id": "route",
            "source_dag_id": "router", "source_run_id": "manual__1", "source_map_index": -1,
            "created_dagruns": [], "timestamp": event_time(&api, s.e1).await,
            "partition_key": null,
        }], "total_entries": 1})
    );

    // Recording one through the API: the tenant's DAGs scheduled on an alias standing for it
    // are queued; another tenant's asset is not found.
    let (status, _) = default
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": dynamic})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, payload, metadata) = logged(&api, head(&api).await).await;
    assert_eq!(payload["queued"], json!(["follower"]));
    assert_eq!(metadata["tenant"], DEFAULT_TENANT);
    let before = head(&api).await;
    let (status, missing) = default
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(json!({"asset_id": scratch})),
        )
        .await;
    assert_eq!(
        (status, detail(&missing)),
        (
            404,
            format!("Asset with ID: `{scratch}` was not found").as_str()
        )
    );
    assert_eq!(head(&api).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dags_scheduled_on_an_alias_have_an_asset_schedule_and_draw_their_aliases() {
    let api = TestApi::without_scheduler().await;
    seed_aliases(&api).await;
    let (default, beta, platform) = (
        of(&api, Some(DEFAULT_TENANT)),
        of(&api, Some("beta")),
        of(&api, None),
    );
    for (caller, query, expected) in [
        (&default, "has_asset_schedule=true", vec!["follower"]),
        (&default, "has_asset_schedule=false", vec!["router"]),
        (&beta, "has_asset_schedule=true", vec!["beta_follower"]),
        (&beta, "has_asset_schedule=false", vec![]),
    ] {
        let list = caller.get(&format!("/api/v2/dags?{query}")).await;
        assert_eq!(ids(&list, "dags", "dag_id"), expected, "{query}");
    }
    let on_routed = alias_condition("routed", "routing");
    let details = default.get("/api/v2/dags/follower/details").await;
    assert_eq!(details["asset_expression"], on_routed);
    assert_eq!(details["timetable_summary"], "Asset");

    // The next-run card: the alias leaf in the condition; no asset it is scheduled on directly.
    assert_eq!(
        default.get("/ui/next_run_assets/follower").await,
        json!({"asset_expression": on_routed, "events": []})
    );

    // The graph: in default, `routed` stands for `dynamic`, between the DAGs and the asset.
    let node =
        |id: String, label: &str, kind: &str| json!({"id": id, "label": label, "type": kind});
    let edge = |s: &str, t: &str| json!({"source_id": s, "target_id": t});
    let dynamic = format!("asset:{}", asset("dynamic").id());
    assert_eq!(
        default.get("/ui/dependencies").await,
        json!({
            "edges": [
                edge("asset-alias:routed", &dynamic),
                edge("asset-alias:routed", "dag:follower"),
                edge(&dynamic, "asset-alias:routed"),
                edge("dag:router", "asset-alias:routed"),
            ],
            "nodes": [
                node("dag:follower".into(), "follower", "dag"),
                node(dynamic.clone(), "dynamic", "asset"),
                node("asset-alias:routed".into(), "routed", "asset-alias"),
                node("dag:router".into(), "router", "dag"),
            ],
        })
    );
    let part = default
        .get("/ui/dependencies?node_id=asset-alias:routed")
        .await;
    assert_eq!(part["nodes"].as_array().unwrap().len(), 4, "{part}");
    // In beta it stands for nothing (default's assets are not beta's): the alias alone.
    let beta_graph = json!({
        "edges": [edge("asset-alias:routed", "dag:beta_follower")],
        "nodes": [
            node("dag:beta_follower".into(), "beta_follower", "dag"),
            node("asset-alias:routed".into(), "routed", "asset-alias"),
        ],
    });
    assert_eq!(beta.get("/ui/dependencies").await, beta_graph);
    // Every tenant's: each DAG's alias as its own tenant resolves it.
    let everything = platform.get("/ui/dependencies").await;
    assert_eq!(
        everything["edges"],
        json!([
            edge("asset-alias:routed", &dynamic),
            edge("asset-alias:routed", "dag:beta_follower"),
            edge("asset-alias:routed", "dag:follower"),
            edge(&dynamic, "asset-alias:routed"),
            edge("dag:router", "asset-alias:routed"),
        ])
    );
}

/// Percent-encodes a query value (times hold `+` and `:`).
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
