//! Variables, Connections, Pools, the audit log and import errors through `/api/v2`, against a
//! real Postgres; every response is checked against Airflow 3.2.2's OpenAPI documents.

mod common;

use common::{TestApi, segment};
use leoflow_events::catalog::{DagImportFailed, Sealed, TaskQueued, TaskStarted};
use leoflow_events::{AppendBatch, Metadata, TaskInstanceKey};
use reqwest::Method;
use serde_json::{Value, json};

const DAG: &str = r#"
from airflow.sdk import DAG, task

with DAG("audited", schedule=None, is_paused_upon_creation=False):
    @task
    def hello():
        return 1

    hello()
"#;

fn keys(list: &Value, collection: &str, field: &str) -> Vec<String> {
    list[collection]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap().to_owned())
        .collect()
}

fn first_error(body: &Value) -> (&str, Vec<&str>) {
    let detail = &body["detail"][0];
    let loc = detail["loc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    (detail["type"].as_str().unwrap(), loc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_are_kept_by_events_and_shown_masked() {
    let api = TestApi::start(DAG).await;
    let post = |body: Value| api.call(Method::POST, "/api/v2/variables", Some(body));
    assert_eq!(
        api.get("/api/v2/variables").await,
        json!({"variables": [], "total_entries": 0})
    );

    let (status, created) =
        post(json!({"key": "greeting", "value": "hello", "description": "says hi"})).await;
    assert_eq!(status, 201);
    assert_eq!(
        created,
        json!({"key": "greeting", "value": "hello", "description": "says hi",
               "is_encrypted": true, "team_name": null})
    );
    let (status, body) = post(json!({"key": "greeting", "value": "again"})).await;
    assert_eq!(status, 409);
    assert_eq!(
        body["detail"],
        "The Variable with key: `greeting` already exists"
    );
    for (body, kind, loc) in [
        (json!({"key": "x"}), "missing", vec!["body", "value"]),
        (
            json!({"key": "x", "value": 1, "colour": 2}),
            "extra_forbidden",
            vec!["body", "colour"],
        ),
        (
            json!({"key": "", "value": 1}),
            "string_too_short",
            vec!["body", "key"],
        ),
        (
            json!({"key": "x".repeat(251), "value": 1}),
            "string_too_long",
            vec!["body", "key"],
        ),
        (
            json!({"key": "x", "value": 1, "team_name": "Blue Team"}),
            "value_error",
            vec!["body", "team_name"],
        ),
    ] {
        let (status, refused) = post(body.clone()).await;
        assert_eq!(status, 422, "{body}: {refused}");
        assert_eq!(first_error(&refused), (kind, loc), "{body}");
    }

    // Concurrent creations of one key: the first append wins, the others see it and conflict.
    let racers = (0..6).map(|i| post(json!({"key": "race", "value": i.to_string()})));
    let mut statuses: Vec<u16> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409]);
    let sets: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream = 'variable:race'")
            .fetch_one(&api.db.pool)
            .await
            .unwrap();
    assert_eq!(sets, 1);
    assert_eq!(
        api.call(Method::DELETE, "/api/v2/variables/race", None)
            .await
            .0,
        204
    );

    // Sensitive keys read `***`; JSON values are shown re-serialized with sensitive keys masked.
    // Tasks still read the real values from the read model.
    let (status, secret) = post(json!({"key": "db_password", "value": "hunter2"})).await;
    assert_eq!((status, secret["value"].as_str()), (201, Some("***")));
    let settings = json!({"region": "eu", "api_key": "k-123", "retries": 3});
    let (status, shown) = post(json!({"key": "settings", "value": settings})).await;
    assert_eq!(status, 201);
    assert_eq!(
        shown["value"],
        r#"{"api_key": "***", "region": "eu", "retries": 3}"#
    );
    let stored = |key: &'static str| {
        let api = &api;
        async move {
            let sealed: sqlx::types::Json<Sealed> =
                sqlx::query_scalar("SELECT val FROM variable WHERE key = $1")
                    .bind(key)
                    .fetch_one(&api.db.pool)
                    .await
                    .unwrap();
            api.vault.open(&sealed.0).await
        }
    };
    assert_eq!(stored("db_password").await.unwrap(), "hunter2");
    let stored_settings: Value = serde_json::from_str(&stored("settings").await.unwrap()).unwrap();
    assert_eq!(stored_settings, settings);
    assert_eq!(
        api.get("/api/v2/variables/db_password").await["value"],
        "***"
    );
    let listed = api.get("/api/v2/variables").await.to_string();
    assert!(
        !listed.contains("hunter2") && !listed.contains("k-123"),
        "{listed}"
    );

    let (status, missing) = api.call(Method::GET, "/api/v2/variables/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        missing,
        json!({"detail": "The Variable with key: `nope` was not found"})
    );

    // Keys may hold slashes, as Airflow's `{variable_key:path}` allows.
    assert_eq!(post(json!({"key": "team/a", "value": "1"})).await.0, 201);
    assert_eq!(api.get("/api/v2/variables/team%2Fa").await["key"], "team/a");

    // Lists: Airflow's ordering, patterns and paging.
    let all = api.get("/api/v2/variables").await;
    assert_eq!(
        keys(&all, "variables", "key"),
        ["db_password", "greeting", "settings", "team/a"]
    );
    let descending = api.get("/api/v2/variables?order_by=-key").await;
    assert_eq!(
        keys(&descending, "variables", "key"),
        ["team/a", "settings", "greeting", "db_password"]
    );
    let pattern = api
        .get("/api/v2/variables?variable_key_pattern=%25PASS%25")
        .await;
    assert_eq!(keys(&pattern, "variables", "key"), ["db_password"]);
    let prefix = api
        .get("/api/v2/variables?variable_key_prefix_pattern=gree")
        .await;
    assert_eq!(keys(&prefix, "variables", "key"), ["greeting"]);
    let page = api.get("/api/v2/variables?limit=2&offset=1").await;
    assert_eq!(page["total_entries"], 4);
    assert_eq!(keys(&page, "variables", "key"), ["greeting", "settings"]);
    let (status, _) = api
        .call(Method::GET, "/api/v2/variables?order_by=colour", None)
        .await;
    assert_eq!(status, 422);
    // Attributes every Leoflow Variable shares leave the order to the key.
    let shared = api
        .get("/api/v2/variables?order_by=-is_encrypted&order_by=team_name")
        .await;
    assert_eq!(
        keys(&shared, "variables", "key"),
        keys(&all, "variables", "key")
    );

    // Patches: the key must match, `update_mask` limits what changes, a field left out stays.
    let patch = |path: &'static str, body: Value| api.call(Method::PATCH, path, Some(body));
    let (status, body) = patch(
        "/api/v2/variables/greeting",
        json!({"key": "other", "value": "v"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = patch(
        "/api/v2/variables/ghost",
        json!({"key": "ghost", "value": "v"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, masked) = patch(
        "/api/v2/variables/greeting?update_mask=description",
        json!({"key": "greeting", "value": "ignored", "description": "new"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (masked["value"].as_str(), masked["description"].as_str()),
        (Some("hello"), Some("new"))
    );
    let (status, _) = patch(
        "/api/v2/variables/greeting?update_mask=key",
        json!({"key": "greeting", "value": "v"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, full) = patch(
        "/api/v2/variables/greeting",
        json!({"key": "greeting", "value": "bonjour"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (full["value"].as_str(), full["description"].as_str()),
        (Some("bonjour"), Some("new"))
    );

    let (status, body) = api
        .call(Method::DELETE, "/api/v2/variables/greeting", None)
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = api
        .call(Method::DELETE, "/api/v2/variables/greeting", None)
        .await;
    assert_eq!(status, 404);
    // Every change, and only the changes, became an event of the Variable's stream, by its user.
    let recorded: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT type, metadata->>'actor' FROM events WHERE stream = 'variable:greeting' \
         ORDER BY stream_version",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    let admin = Some("admin".to_owned());
    assert_eq!(
        recorded,
        [
            ("VariableSet".to_owned(), admin.clone()),
            ("VariableSet".to_owned(), admin.clone()),
            ("VariableSet".to_owned(), admin.clone()),
            ("VariableDeleted".to_owned(), admin.clone()),
        ]
    );

    // Bulk: each action decides on what the previous ones left; failing checks do nothing.
    let before: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    let entities = json!([{"key": "settings", "value": "x"}, {"key": "b1", "value": "1"}]);
    let updates = json!([{"key": "b1", "value": "2"}, {"key": "ghost", "value": "0"}]);
    let (status, report) = api
        .call(
            Method::PATCH,
            "/api/v2/variables",
            Some(json!({"actions": [
                {"action": "create", "entities": entities},
                {"action": "create", "entities": entities, "action_on_existence": "skip"},
                {"action": "update", "entities": updates},
                {"action": "update", "entities": updates, "action_on_non_existence": "skip"},
                {"action": "delete", "entities": ["db_password", "ghost"],
                 "action_on_non_existence": "skip"},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({
            "create": {"success": ["b1"], "errors": [{
                "error": "The variables with these keys: {'settings'} already exist.",
                "status_code": 409}]},
            "update": {"success": ["b1"], "errors": [{
                "error": "The variables with these keys: {'ghost'} were not found.",
                "status_code": 404}]},
            "delete": {"success": ["db_password"], "errors": []},
        })
    );
    assert_eq!(api.get("/api/v2/variables/b1").await["value"], "2");
    assert_eq!(
        api.get("/api/v2/variables/settings").await["value"],
        r#"{"api_key": "***", "region": "eu", "retries": 3}"#
    );
    let (status, _) = api
        .call(Method::GET, "/api/v2/variables/db_password", None)
        .await;
    assert_eq!(status, 404);
    // The whole request was one append.
    let appended: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, type FROM events WHERE position > $1 AND type LIKE 'Variable%' \
         ORDER BY position",
    )
    .bind(before)
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    let types: Vec<&str> = appended.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types, ["VariableSet", "VariableSet", "VariableDeleted"]);
    let recorded_at: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT DISTINCT recorded_at FROM events WHERE position > $1 AND type LIKE 'Variable%'",
    )
    .bind(before)
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(recorded_at.len(), 1);

    let (status, refused) = api
        .call(
            Method::PATCH,
            "/api/v2/variables",
            Some(json!({"actions": [{"action": "create", "entities": [{"key": "", "value": 1}]}]})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        first_error(&refused).1,
        ["body", "actions", "0", "create", "entities", "0", "key"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_the_event_log() {
    let api = TestApi::start(DAG).await;
    for (key, value) in [("api_token", "tok-secret"), ("greeting", "hi")] {
        let (status, _) = api
            .call(
                Method::POST,
                "/api/v2/variables",
                Some(json!({"key": key, "value": value})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let run_id = api.run("audited", json!({})).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    let ids = |list: &Value| -> Vec<i64> {
        list["event_logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_log_id"].as_i64().unwrap())
            .collect()
    };

    let all = api.get("/api/v2/eventLogs?limit=100").await;
    assert_eq!(all["total_entries"], events);
    let listed = ids(&all);
    assert_eq!(listed, (1..=events).collect::<Vec<_>>());
    let newest = api.get("/api/v2/eventLogs?order_by=-when&limit=3").await;
    assert_eq!(ids(&newest), [events, events - 1, events - 2]);
    assert!(!all.to_string().contains("tok-secret"), "{all}");

    // The Variables' events, by their user, with their sealed values shown masked in `extra`
    // (the audit log never opens a secret), and beside them where the user was and which
    // session they used (its id).
    let sets = api.get("/api/v2/eventLogs?event=VariableSet").await;
    assert_eq!(sets["total_entries"], 2);
    let token = &sets["event_logs"][0];
    assert_eq!(token["owner"], "admin");
    assert_eq!(token["dag_id"], Value::Null);
    let (payload, actor) = extra_and_actor(token);
    assert_eq!(
        payload,
        r#"{"description": null, "key": "api_token", "tenant": "default", "value": "***"}"#
    );
    assert_eq!(actor["client"], "127.0.0.1", "{token}");
    assert!(actor["token_id"].is_string(), "the session's id: {token}");
    let (payload, _) = extra_and_actor(&sets["event_logs"][1]);
    assert_eq!(
        payload,
        r#"{"description": null, "key": "greeting", "tenant": "default", "value": "***"}"#
    );

    // The run's events: the trigger by its user, the scheduler's decisions, the task's reports.
    let run_path = format!(
        "/api/v2/eventLogs?dag_id=audited&run_id={}&limit=100",
        segment(&run_id)
    );
    let run = api.get(&run_path).await;
    let entries = run["event_logs"].as_array().unwrap();
    assert!(
        entries.iter().all(|e| e["dag_id"] == "audited"
            && e["run_id"] == run_id.as_str()
            && e["dag_display_name"] == "audited"),
        "{run}"
    );
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for expected in ["RunQueued", "TaskSucceeded", "RunSucceeded"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let queued = entries.iter().find(|e| e["event"] == "RunQueued").unwrap();
    assert_eq!(queued["owner"], "admin");
    assert!(
        queued["extra"]
            .as_str()
            .unwrap()
            .contains(r#""triggered_by": "rest_api""#),
        "{queued}"
    );
    let dag = api.get("/api/v2/eventLogs?dag_id=audited&limit=100").await;
    assert!(dag["total_entries"].as_i64().unwrap() > run["total_entries"].as_i64().unwrap());

    let task = api
        .get(&format!(
            "/api/v2/eventLogs?dag_id=audited&run_id={}&task_id=hello&try_number=1&map_index=-1",
            segment(&run_id)
        ))
        .await;
    let task_entries = task["event_logs"].as_array().unwrap();
    assert!(!task_entries.is_empty());
    assert!(task_entries.iter().all(|e| e["task_id"] == "hello"
        && e["task_display_name"] == "hello"
        && e["try_number"] == 1
        && e["map_index"] == -1));
    assert!(
        task_entries.iter().any(|e| e["event"] == "TaskStarted"),
        "{task}"
    );

    let included = api
        .get("/api/v2/eventLogs?included_events=TaskSucceeded&included_events=RunSucceeded")
        .await;
    assert_eq!(included["total_entries"], 2);
    let excluded = api
        .get("/api/v2/eventLogs?excluded_events=VariableSet&limit=1")
        .await;
    assert_eq!(excluded["total_entries"], events - 2);
    let succeeded = api
        .get("/api/v2/eventLogs?event_pattern=%25succeeded")
        .await;
    assert_eq!(succeeded["total_entries"], 2);
    let variables = api
        .get("/api/v2/eventLogs?event_prefix_pattern=Variable")
        .await;
    assert_eq!(variables["total_entries"], 2);
    let by_admin = api.get("/api/v2/eventLogs?owner=admin&limit=100").await;
    assert!(
        by_admin["event_logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["owner"] == "admin")
    );
    assert!(by_admin["total_entries"].as_i64().unwrap() < events);
    let by_dag_pattern = api.get("/api/v2/eventLogs?dag_id_pattern=AUDIT%25").await;
    assert_eq!(by_dag_pattern["total_entries"], dag["total_entries"]);

    // Time windows: strictly before / after an entry's `when`.
    let when = queued["when"].as_str().unwrap();
    let after = api
        .get(&format!(
            "/api/v2/eventLogs?after={}&limit=100",
            segment(when)
        ))
        .await;
    let queued_id = queued["event_log_id"].as_i64().unwrap();
    assert!(ids(&after).iter().all(|id| *id > queued_id), "{after}");
    assert!(after["total_entries"].as_i64().unwrap() > 0);
    let before = api
        .get(&format!(
            "/api/v2/eventLogs?before={}&limit=100",
            segment(when)
        ))
        .await;
    assert!(ids(&before).iter().all(|id| *id < queued_id), "{before}");

    // One entry, and the refusals.
    let one = api.get(&format!("/api/v2/eventLogs/{queued_id}")).await;
    assert_eq!(&one, queued);
    let (status, missing) = api
        .call(Method::GET, "/api/v2/eventLogs/999999", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["detail"],
        "The Event Log with id: `999999` not found"
    );
    for path in [
        "/api/v2/eventLogs/abc",
        "/api/v2/eventLogs?map_index=abc",
        "/api/v2/eventLogs?order_by=colour",
        "/api/v2/eventLogs?after=yesterday",
    ] {
        let (status, _) = api.call(Method::GET, path, None).await;
        assert_eq!(status, 422, "{path}");
    }
}

/// The sealed payload fields of the `event_type` events of `stream`, oldest first.
async fn sealed_in_log(api: &TestApi, stream: &str, field: &str) -> Vec<Sealed> {
    let payloads: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE stream = $1 AND type IN ('VariableSet', 'ConnectionSet') \
         ORDER BY position",
    )
    .bind(stream)
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    payloads
        .into_iter()
        .filter_map(|p| serde_json::from_value(p[field].clone()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_per_secret_and_a_delete_shreds_every_old_value() {
    let api = TestApi::start(DAG).await;
    for (key, value) in [("db_password", "hunter2-1"), ("greeting", "hello-1")] {
        let (status, _) = api
            .call(
                Method::POST,
                "/api/v2/variables",
                Some(json!({"key": key, "value": value})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/variables/db_password",
            Some(json!({"key": "db_password", "value": "hunter2-2"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(
                json!({"connection_id": "db", "conn_type": "postgres", "password": "pw-1",
                        "extra": "{\"region\": \"eu\"}"}),
            ),
        )
        .await;
    assert_eq!(status, 201);

    // Nothing in clear anywhere in the log or the read models.
    let everything: String = sqlx::query_scalar(
        "SELECT (SELECT string_agg(payload::text, ' ') FROM events) || \
                (SELECT string_agg(val::text, ' ') FROM variable) || \
                (SELECT string_agg(password::text || extra::text, ' ') FROM connection)",
    )
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    for secret in ["hunter2-1", "hunter2-2", "hello-1", "pw-1", "region"] {
        assert!(!everything.contains(secret), "{secret} is stored in clear");
    }

    // Each secret has its own data key; a Variable keeps its key across updates.
    let old_values = sealed_in_log(&api, "variable:db_password", "value").await;
    let greeting = sealed_in_log(&api, "variable:greeting", "value").await;
    let password = sealed_in_log(&api, "connection:db", "password").await;
    assert_eq!(old_values.len(), 2);
    assert_eq!(old_values[0].key_id(), old_values[1].key_id());
    assert!(old_values[0].key_id().is_some());
    assert_ne!(old_values[0].key_id(), greeting[0].key_id());
    assert_ne!(old_values[0].key_id(), password[0].key_id());
    assert_eq!(api.vault.open(&old_values[0]).await.unwrap(), "hunter2-1");

    // Deleting the Variable destroys its data key: its old values are unreadable for good,
    // while the other secrets are untouched.
    let (status, _) = api
        .call(Method::DELETE, "/api/v2/variables/db_password", None)
        .await;
    assert_eq!(status, 204);
    for old in &old_values {
        let error = api.vault.open(old).await.unwrap_err();
        assert!(
            matches!(error, leoflow_secrets::VaultError::Shredded(_)),
            "{error}"
        );
    }
    assert_eq!(api.vault.open(&greeting[0]).await.unwrap(), "hello-1");
    assert_eq!(api.vault.open(&password[0]).await.unwrap(), "pw-1");
    let (status, _) = api
        .call(Method::DELETE, "/api/v2/connections/db", None)
        .await;
    assert_eq!(status, 204);
    assert!(api.vault.open(&password[0]).await.is_err());

    // A Variable made again under the same key gets a new data key and reads back.
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "db_password", "value": "fresh-value"})),
        )
        .await;
    assert_eq!(status, 201);
    let again = sealed_in_log(&api, "variable:db_password", "value").await;
    assert_ne!(again[2].key_id(), old_values[0].key_id());
    assert_eq!(
        api.get("/api/v2/variables/db_password").await["value"],
        "***"
    );
    assert_eq!(api.vault.open(&again[2]).await.unwrap(), "fresh-value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_passwords_are_encrypted_and_never_returned() {
    let api = TestApi::start(DAG).await;
    let (status, created) = api
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(json!({
                "connection_id": "warehouse", "conn_type": "postgres", "host": "db.internal",
                "login": "etl", "password": "s3cr3t!", "port": 5432,
                "extra": "{\"sslmode\": \"require\", \"api_token\": \"tok-1\"}",
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created,
        json!({
            "connection_id": "warehouse", "conn_type": "postgres", "description": null,
            "host": "db.internal", "login": "etl", "schema": null, "port": 5432,
            "password": "***", "extra": r#"{"api_token": "***", "sslmode": "require"}"#,
            "team_name": null,
        })
    );

    // The event and the read model hold ciphertext only, and the key decrypts it.
    let last_set = || {
        sqlx::query_scalar::<_, Value>(
            "SELECT payload FROM events WHERE type = 'ConnectionSet' ORDER BY position DESC LIMIT 1",
        )
        .fetch_one(&api.db.pool)
    };
    let stored = |column: &'static str| {
        let query = format!("SELECT {column} FROM connection WHERE conn_id = 'warehouse'");
        let pool = api.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<sqlx::types::Json<Sealed>>>(sqlx::AssertSqlSafe(query))
                .fetch_one(&pool)
                .await
                .unwrap()
                .map(|sealed| sealed.0)
        }
    };
    let stored_password = || async { api.vault.open(&stored("password").await.unwrap()).await };
    let payload = last_set().await.unwrap();
    assert!(!payload.to_string().contains("s3cr3t!"), "{payload}");
    assert!(!payload.to_string().contains("tok-1"), "{payload}");
    let sealed: Sealed = serde_json::from_value(payload["password"].clone()).unwrap();
    let ciphertext = match &sealed {
        Sealed::DataKey { ciphertext, .. } => ciphertext.clone(),
        other => panic!("not sealed with a data key: {other:?}"),
    };
    assert_eq!(api.vault.open(&sealed).await.unwrap(), "s3cr3t!");
    assert_eq!(stored("password").await, Some(sealed.clone()));
    for path in ["/api/v2/connections", "/api/v2/connections/warehouse"] {
        let shown = api.get(path).await.to_string();
        assert!(
            !shown.contains("s3cr3t!") && !shown.contains(&ciphertext) && !shown.contains("tok-1"),
            "{shown}"
        );
    }

    // Refusals.
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(json!({"connection_id": "warehouse", "conn_type": "http"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        body["detail"],
        "The Connection with connection_id: `warehouse` already exists"
    );
    for (body, kind, field) in [
        (
            json!({"connection_id": "has space", "conn_type": "http"}),
            "string_pattern_mismatch",
            "connection_id",
        ),
        (
            json!({"connection_id": "c", "conn_type": "http", "extra": "not json"}),
            "value_error",
            "extra",
        ),
        (
            json!({"connection_id": "c", "conn_type": "http", "extra": "[1]"}),
            "value_error",
            "extra",
        ),
        (json!({"connection_id": "c"}), "missing", "conn_type"),
    ] {
        let (status, refused) = api
            .call(Method::POST, "/api/v2/connections", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {refused}");
        assert_eq!(first_error(&refused), (kind, vec!["body", field]));
    }

    // The edit form sends the masked values back: they keep what is stored.
    let (status, patched) = api
        .call(
            Method::PATCH,
            "/api/v2/connections/warehouse",
            Some(json!({
                "connection_id": "warehouse", "conn_type": "postgres", "host": "db2.internal",
                "password": "***", "extra": "{\"sslmode\": \"verify-full\", \"api_token\": \"***\"}",
            })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["host"].as_str(), patched["login"].as_str()),
        (Some("db2.internal"), Some("etl"))
    );
    assert_eq!(stored_password().await.unwrap(), "s3cr3t!");
    let extra = api
        .vault
        .open(&stored("extra").await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&extra).unwrap(),
        json!({"sslmode": "verify-full", "api_token": "tok-1"})
    );
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/connections/warehouse",
            Some(json!({"connection_id": "warehouse", "conn_type": "postgres", "password": "n3w"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored_password().await.unwrap(), "n3w");
    let (status, masked) = api
        .call(
            Method::PATCH,
            "/api/v2/connections/warehouse?update_mask=port",
            Some(
                json!({"connection_id": "warehouse", "conn_type": "http", "port": 6543,
                        "host": "ignored"}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            masked["port"].as_i64(),
            masked["conn_type"].as_str(),
            masked["host"].as_str()
        ),
        (Some(6543), Some("postgres"), Some("db2.internal"))
    );
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/connections/warehouse",
            Some(json!({"connection_id": "other", "conn_type": "http"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, missing) = api
        .call(
            Method::PATCH,
            "/api/v2/connections/ghost",
            Some(json!({"connection_id": "ghost", "conn_type": "http"})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["detail"],
        "The Connection with connection_id: `ghost` was not found"
    );

    // Leoflow cannot test connections nor create Airflow's defaults, and says so; a Connection
    // named `test` is still an ordinary Connection.
    let (status, refused) = api
        .call(
            Method::POST,
            "/api/v2/connections/test",
            Some(json!({"connection_id": "warehouse", "conn_type": "postgres"})),
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        refused["detail"].as_str().unwrap().contains("disabled"),
        "{refused}"
    );
    let (status, _) = api
        .call(Method::POST, "/api/v2/connections/defaults", None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(json!({"connection_id": "test", "conn_type": "http"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        api.get("/api/v2/connections/test").await["conn_type"],
        "http"
    );

    let listed = api.get("/api/v2/connections?order_by=-connection_id").await;
    assert_eq!(
        keys(&listed, "connections", "connection_id"),
        ["warehouse", "test"]
    );
    let pattern = api
        .get("/api/v2/connections?connection_id_pattern=WARE%25")
        .await;
    assert_eq!(pattern["total_entries"], 1);

    // Bulk: an overwrite encrypts the new password; deletes by key or by entity.
    let (status, report) = api
        .call(
            Method::PATCH,
            "/api/v2/connections",
            Some(json!({"actions": [
                {"action": "create", "action_on_existence": "overwrite", "entities": [
                    {"connection_id": "warehouse", "conn_type": "postgres", "password": "bulk-pw"},
                    {"connection_id": "api", "conn_type": "http", "host": "example.org"},
                ]},
                {"action": "update", "entities": [{"connection_id": "ghost", "conn_type": "http"}]},
                {"action": "delete", "entities": [{"connection_id": "test", "conn_type": "http"}]},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({
            "create": {"success": ["warehouse", "api"], "errors": []},
            "update": {"success": [], "errors": [{
                "error": "The connections with these connection_ids: {'ghost'} were not found.",
                "status_code": 404}]},
            "delete": {"success": ["test"], "errors": []},
        })
    );
    assert_eq!(stored_password().await.unwrap(), "bulk-pw");
    let remaining = api.get("/api/v2/connections").await;
    assert_eq!(
        keys(&remaining, "connections", "connection_id"),
        ["api", "warehouse"]
    );
    assert_eq!(remaining["connections"][0]["password"], Value::Null);

    let (status, _) = api
        .call(Method::DELETE, "/api/v2/connections/warehouse", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(Method::GET, "/api/v2/connections/warehouse", None)
        .await;
    assert_eq!(status, 404);
    let deleted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE type = 'ConnectionDeleted' \
         AND metadata->>'actor' = 'admin'",
    )
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(deleted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_count_their_slots_and_default_pool_always_exists() {
    // No scheduler: the task instances this test queues keep the slots it gives them.
    let api = TestApi::without_scheduler().await;
    let default_pool = json!({
        "name": "default_pool", "slots": 128, "description": "Default pool",
        "include_deferred": false, "occupied_slots": 0, "running_slots": 0, "queued_slots": 0,
        "scheduled_slots": 0, "open_slots": 128, "deferred_slots": 0, "team_name": null,
    });
    // As Airflow lists it before anything was configured.
    assert_eq!(
        api.get("/api/v2/pools").await,
        json!({"pools": [default_pool], "total_entries": 1})
    );
    assert_eq!(api.get("/api/v2/pools/default_pool").await, default_pool);

    let (status, refused) = api
        .call(Method::DELETE, "/api/v2/pools/default_pool", None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["detail"], "Default Pool can't be deleted");
    let (status, refused) = api
        .call(
            Method::PATCH,
            "/api/v2/pools/default_pool",
            Some(json!({"slots": 64})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refused["detail"],
        "Only slots and included_deferred can be modified on Default Pool"
    );
    let (status, patched) = api
        .call(
            Method::PATCH,
            "/api/v2/pools/default_pool?update_mask=slots",
            Some(json!({"slots": 64, "description": "ignored"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (patched["slots"].as_i64(), patched["description"].as_str()),
        (Some(64), Some("Default pool"))
    );
    let set: Value = sqlx::query_scalar(
        "SELECT payload FROM events WHERE type = 'PoolSet' AND stream = 'pool:default_pool'",
    )
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(
        set,
        json!({"name": "default_pool", "slots": 64, "description": "Default pool", "tenant": "default",
               "include_deferred": false})
    );
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "default_pool", "slots": 1})),
        )
        .await;
    assert_eq!(status, 409);

    let (status, etl) = api
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "etl", "slots": 4, "description": "ETL"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        (
            etl["open_slots"].as_i64(),
            etl["include_deferred"].as_bool()
        ),
        (Some(4), Some(false))
    );
    let (status, unlimited) = api
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "free", "slots": -1})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(unlimited["open_slots"], -1);
    let (status, refused) = api
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "bad", "slots": -2})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        first_error(&refused),
        ("greater_than_equal", vec!["body", "slots"])
    );
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "etl", "slots": 1})),
        )
        .await;
    assert_eq!(status, 409);

    // Slots held by task instances: one running (1 slot), one queued (2 slots).
    let metadata = Metadata::actor("scheduler");
    let queued = |task: &str, slots: i32| TaskQueued {
        ti: TaskInstanceKey::new("d", "r", task),
        try_number: 1,
        pool: "etl".into(),
        pool_slots: slots,
        priority_weight: 1,
        queue: "default".into(),
    };
    api.store
        .append(
            AppendBatch::new()
                .push(queued("a", 1), &metadata)
                .push(queued("b", 2), &metadata)
                .push(
                    TaskStarted {
                        ti: TaskInstanceKey::new("d", "r", "a"),
                        try_number: 1,
                        hostname: "h".into(),
                        pid: Some(1),
                    },
                    &metadata,
                ),
        )
        .await
        .unwrap();
    let etl = api.get("/api/v2/pools/etl").await;
    assert_eq!(
        (
            etl["running_slots"].as_i64(),
            etl["queued_slots"].as_i64(),
            etl["occupied_slots"].as_i64(),
            etl["open_slots"].as_i64()
        ),
        (Some(1), Some(2), Some(3), Some(1))
    );

    // Patches.
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/pools/etl",
            Some(json!({"pool": "other", "slots": 1})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, refused) = api
        .call(
            Method::PATCH,
            "/api/v2/pools/etl",
            Some(json!({"include_deferred": null})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    let (status, patched) = api
        .call(
            Method::PATCH,
            "/api/v2/pools/etl?update_mask=description",
            Some(json!({"slots": 100, "description": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (patched["slots"].as_i64(), &patched["description"]),
        (Some(4), &Value::Null)
    );
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/pools/ghost",
            Some(json!({"slots": 1})),
        )
        .await;
    assert_eq!(status, 404);

    let listed = api.get("/api/v2/pools?order_by=-name").await;
    assert_eq!(
        keys(&listed, "pools", "name"),
        ["free", "etl", "default_pool"]
    );
    let pattern = api.get("/api/v2/pools?pool_name_pattern=%25TL").await;
    assert_eq!(keys(&pattern, "pools", "name"), ["etl"]);
    let prefix = api.get("/api/v2/pools?pool_name_prefix_pattern=def").await;
    assert_eq!(keys(&prefix, "pools", "name"), ["default_pool"]);

    // Bulk: default_pool keeps its rules inside bulk actions too.
    let (status, report) = api
        .call(
            Method::PATCH,
            "/api/v2/pools",
            Some(json!({"actions": [
                {"action": "create", "entities": [{"name": "etl", "slots": 9}, {"name": "ml", "slots": 2}]},
                {"action": "update", "entities": [{"name": "default_pool", "slots": 10}]},
                {"action": "update", "update_mask": ["slots"],
                 "entities": [{"name": "default_pool", "slots": 10}]},
                {"action": "delete", "entities": ["free", "default_pool"]},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({
            "create": {"success": [], "errors": [{
                "error": "The pools with these pool names: {'etl'} already exist.",
                "status_code": 409}]},
            "update": {"success": ["default_pool"], "errors": [{
                "error": "Only slots and included_deferred can be modified on Default Pool",
                "status_code": 400}]},
            "delete": {"success": ["free"], "errors": [{
                "error": "Default Pool can't be deleted", "status_code": 400}]},
        })
    );
    let listed = api.get("/api/v2/pools").await;
    assert_eq!(keys(&listed, "pools", "name"), ["default_pool", "etl"]);
    assert_eq!(listed["pools"][0]["slots"], 10);

    let (status, _) = api.call(Method::DELETE, "/api/v2/pools/etl", None).await;
    assert_eq!(status, 204);
    let (status, missing) = api.call(Method::GET, "/api/v2/pools/etl", None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["detail"], "The Pool with name: `etl` was not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_errors_list_the_files_that_failed_to_parse() {
    let api = TestApi::without_scheduler().await;
    assert_eq!(
        api.get("/api/v2/importErrors").await,
        json!({"import_errors": [], "total_entries": 0})
    );
    let metadata = Metadata::actor("test");
    let failed = |fileloc: &str, bundle: &str, error: &str| DagImportFailed {
        fileloc: fileloc.into(),
        bundle_name: bundle.into(),
        error: error.into(),
        tenant: "default".into(),
    };
    let outcome = api
        .store
        .append(
            AppendBatch::new()
                .push(
                    failed(
                        "broken/pipelines/etl.py",
                        "broken",
                        "Traceback (most recent call last):\nSyntaxError: invalid syntax (etl.py, line 3)",
                    ),
                    &metadata,
                )
                .push(
                    failed("other/dag.py", "other", "NameError: name 'x' is not defined"),
                    &metadata,
                ),
        )
        .await
        .unwrap();
    let (first, second) = (outcome.events[0].position, outcome.events[1].position);

    let all = api.get("/api/v2/importErrors").await;
    assert_eq!(all["total_entries"], 2);
    let entry = &all["import_errors"][0];
    assert_eq!(entry["import_error_id"], first);
    assert_eq!(entry["filename"], "pipelines/etl.py");
    assert_eq!(entry["bundle_name"], "broken");
    assert!(
        entry["stack_trace"]
            .as_str()
            .unwrap()
            .ends_with("(etl.py, line 3)")
    );
    assert_eq!(
        &api.get(&format!("/api/v2/importErrors/{first}")).await,
        entry
    );

    let descending = api
        .get("/api/v2/importErrors?order_by=-import_error_id")
        .await;
    assert_eq!(descending["import_errors"][0]["import_error_id"], second);
    let prefix = api
        .get("/api/v2/importErrors?filename_prefix_pattern=pipelines")
        .await;
    assert_eq!(prefix["total_entries"], 1);
    let pattern = api
        .get("/api/v2/importErrors?filename_pattern=DAG.py")
        .await;
    assert_eq!(pattern["import_errors"][0]["bundle_name"], "other");

    let (status, missing) = api
        .call(Method::GET, "/api/v2/importErrors/999", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["detail"],
        "The ImportError with import_error_id: `999` was not found"
    );
    let (status, _) = api
        .call(Method::GET, "/api/v2/importErrors/abc", None)
        .await;
    assert_eq!(status, 422);
}

/// An audit-log entry's `extra` as Python prints it without its `actor` (the payload, masked),
/// and that `actor`.
fn extra_and_actor(entry: &Value) -> (String, Value) {
    let extra = entry["extra"].as_str().expect("extra is a string");
    let (actor, payload) = extra
        .strip_prefix(r#"{"actor": "#)
        .and_then(|rest| rest.split_once("}, "))
        .unwrap_or_else(|| panic!("no actor leads {extra}"));
    let actor = serde_json::from_str(&format!("{actor}}}")).expect("the actor is JSON");
    (format!("{{{payload}"), actor)
}
