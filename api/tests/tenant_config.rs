//! Tenants own their Variables, Connections and Pools: the same key in two tenants is two
//! things, a caller of one tenant reaches only its own (another's is a 404, naming another's
//! team a 403), a platform admin reaches any through Airflow's `team_name`, and each tenant's
//! secrets are sealed with data keys of their own.

mod common;

use common::TestApi;
use reqwest::Method;
use serde_json::{Value, json};

const DAG: &str = r#"
from airflow.sdk import DAG, task

@task
def work():
    return 1

with DAG("open_etl", schedule=None):
    work()
"#;

struct Callers {
    acme: String,
    beta: String,
    platform: String,
}

impl Callers {
    fn new(api: &TestApi) -> Self {
        Self {
            acme: api.admin_of(Some("acme")),
            beta: api.admin_of(Some("beta")),
            platform: api.admin_of(None),
        }
    }
}

async fn as_(
    api: &TestApi,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api.call_as(token, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_are_each_tenants_own() {
    let api = TestApi::start(DAG).await;
    let who = Callers::new(&api);
    let post = |token: &str, body: Value| {
        let token = token.to_owned();
        let api = &api;
        async move { as_(api, &token, Method::POST, "/api/v2/variables", Some(body)).await }
    };

    // The same key in two tenants: two Variables, each shown with its team.
    let (status, acme_url) = post(
        &who.acme,
        json!({"key": "api_url", "value": "https://acme"}),
    )
    .await;
    assert_eq!(
        (status, &acme_url["team_name"]),
        (201, &json!("acme")),
        "{acme_url}"
    );
    let (status, beta_url) = post(
        &who.beta,
        json!({"key": "api_url", "value": "https://beta"}),
    )
    .await;
    assert_eq!(
        (status, &beta_url["team_name"]),
        (201, &json!("beta")),
        "{beta_url}"
    );
    let (status, _) = post(&who.acme, json!({"key": "api_url", "value": "again"})).await;
    assert_eq!(status, 409, "acme's own key exists");
    let (_, read) = as_(
        &api,
        &who.acme,
        Method::GET,
        "/api/v2/variables/api_url",
        None,
    )
    .await;
    assert_eq!(read["value"], "https://acme");
    let (_, read) = as_(
        &api,
        &who.beta,
        Method::GET,
        "/api/v2/variables/api_url",
        None,
    )
    .await;
    assert_eq!(read["value"], "https://beta");

    // Another tenant's key does not exist for acme: reading, changing or deleting it is a 404
    // and leaves it as it was.
    post(&who.beta, json!({"key": "beta_only", "value": "b"})).await;
    let path = "/api/v2/variables/beta_only";
    let patch = json!({"key": "beta_only", "value": "taken"});
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(patch)),
        (Method::DELETE, None),
    ] {
        let (status, answer) = as_(&api, &who.acme, method.clone(), path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, kept) = as_(&api, &who.beta, Method::GET, path, None).await;
    assert_eq!(kept["value"], "b");

    // Naming another tenant's team is refused; naming one's own is as leaving it out.
    let (status, refused) = post(
        &who.acme,
        json!({"key": "x", "value": 1, "team_name": "beta"}),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("\"acme\""),
        "{refused}"
    );
    let (status, _) = as_(
        &api,
        &who.acme,
        Method::GET,
        "/api/v2/variables/beta_only?team_name=beta",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &who.acme,
        json!({"key": "own", "value": 1, "team_name": "acme"}),
    )
    .await;
    assert_eq!(status, 201);

    // A platform admin works in any tenant through team_name, in the default one without.
    let (status, _) = as_(
        &api,
        &who.platform,
        Method::GET,
        "/api/v2/variables/api_url",
        None,
    )
    .await;
    assert_eq!(status, 404, "the default tenant has no api_url");
    let (_, read) = as_(
        &api,
        &who.platform,
        Method::GET,
        "/api/v2/variables/api_url?team_name=beta",
        None,
    )
    .await;
    assert_eq!(read["value"], "https://beta");
    let (status, _) = as_(
        &api,
        &who.platform,
        Method::DELETE,
        "/api/v2/variables/api_url?team_name=beta",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, read) = as_(
        &api,
        &who.acme,
        Method::GET,
        "/api/v2/variables/api_url",
        None,
    )
    .await;
    assert_eq!(read["value"], "https://acme", "deleting beta's left acme's");
    // beta's audit log shows the platform admin deleting beta's Variable; acme's does not.
    let deletions = "/api/v2/eventLogs?event=VariableDeleted";
    let (_, log) = as_(&api, &who.beta, Method::GET, deletions, None).await;
    assert_eq!(log["total_entries"], 1, "{log}");
    assert_eq!(log["event_logs"][0]["owner"], "admin-of-all", "{log}");
    let (_, log) = as_(&api, &who.acme, Method::GET, deletions, None).await;
    assert_eq!(log["total_entries"], 0, "{log}");
    let (_, listed) = as_(
        &api,
        &who.platform,
        Method::GET,
        "/api/v2/variables?team_name=acme",
        None,
    )
    .await;
    assert_eq!(listed["total_entries"], 2, "{listed}");
    let (status, refused) = as_(
        &api,
        &who.platform,
        Method::GET,
        "/api/v2/variables?team_name=Not%20A%20Tenant",
        None,
    )
    .await;
    assert_eq!(status, 422, "{refused}");

    // Lite's admin (every tenant) writes the default tenant's, Airflow's "no team", under the
    // streams Variables had before tenants existed.
    let (status, lite) = api
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "api_url", "value": "lite"})),
        )
        .await;
    assert_eq!((status, &lite["team_name"]), (201, &Value::Null), "{lite}");
    let streams: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT stream FROM events WHERE type = 'VariableSet' AND payload->>'key' = 'api_url' ORDER BY 1",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(
        streams,
        [
            "variable:api_url",
            "variable@acme:api_url",
            "variable@beta:api_url"
        ]
    );
    // Each event records its tenant in its payload and the caller's in its envelope.
    let (payload, envelope): (String, Option<String>) = sqlx::query_as(
        "SELECT payload->>'tenant', metadata->>'tenant' FROM events WHERE stream = 'variable@acme:api_url'",
    )
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (payload.as_str(), envelope.as_deref()),
        ("acme", Some("acme"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_requests_act_in_one_tenant() {
    let api = TestApi::start(DAG).await;
    let who = Callers::new(&api);
    let bulk = |token: &str, query: &str, actions: Value| {
        let (token, path) = (token.to_owned(), format!("/api/v2/variables{query}"));
        let api = &api;
        async move {
            as_(
                api,
                &token,
                Method::PATCH,
                &path,
                Some(json!({"actions": actions})),
            )
            .await
        }
    };
    let create = |entities: Value| json!([{"action": "create", "entities": entities}]);

    let (status, report) = bulk(
        &who.acme,
        "",
        create(json!([{"key": "a", "value": 1}, {"key": "b", "value": 2, "team_name": "acme"}])),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["create"]["success"], json!(["a", "b"]));
    let (status, _) = bulk(
        &who.acme,
        "",
        create(json!([{"key": "c", "value": 1, "team_name": "beta"}])),
    )
    .await;
    assert_eq!(status, 403);
    // beta's bulk delete of acme's keys finds none of them.
    let (status, report) = bulk(
        &who.beta,
        "",
        json!([{"action": "delete", "entities": ["a", "b"]}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        report["delete"]["errors"][0]["status_code"], 404,
        "{report}"
    );

    // A platform admin's bulk acts in the tenant its entities name, or ?team_name=, never two.
    let (status, report) = bulk(
        &who.platform,
        "",
        create(json!([{"key": "p", "value": 1, "team_name": "beta"}])),
    )
    .await;
    assert_eq!(
        (status, &report["create"]["success"]),
        (200, &json!(["p"])),
        "{report}"
    );
    let (status, refused) = bulk(&who.platform, "", create(json!([
        {"key": "q", "value": 1, "team_name": "beta"}, {"key": "r", "value": 1, "team_name": "acme"}
    ]))).await;
    assert_eq!(status, 422, "{refused}");
    let (status, report) = bulk(
        &who.platform,
        "?team_name=acme",
        json!([{"action": "delete", "entities": ["a"]}]),
    )
    .await;
    assert_eq!(
        (status, &report["delete"]["success"]),
        (200, &json!(["a"])),
        "{report}"
    );
    let (_, beta) = as_(&api, &who.beta, Method::GET, "/api/v2/variables", None).await;
    assert_eq!(beta["variables"][0]["key"], "p", "{beta}");
    let (_, acme) = as_(&api, &who.acme, Method::GET, "/api/v2/variables", None).await;
    assert_eq!(acme["variables"][0]["key"], "b", "{acme}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_pools_are_each_tenants_own() {
    let api = TestApi::start(DAG).await;
    let who = Callers::new(&api);
    for (token, password) in [(&who.acme, "acme-secret"), (&who.beta, "beta-secret")] {
        let body =
            json!({"connection_id": "warehouse", "conn_type": "postgres", "password": password});
        let (status, created) =
            as_(&api, token, Method::POST, "/api/v2/connections", Some(body)).await;
        assert_eq!(status, 201, "{created}");
    }
    // Each tenant's password has a data key of its own: deleting beta's Connection destroys
    // beta's key (crypto-shredding) and leaves acme's.
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT owner FROM secret_data_key WHERE owner LIKE 'connection%' ORDER BY 1",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(
        owners,
        ["connection@acme:warehouse", "connection@beta:warehouse"]
    );
    let sealed = |stream: &'static str| {
        let pool = api.db.pool.clone();
        async move {
            let payload: Value = sqlx::query_scalar("SELECT payload FROM events WHERE stream = $1")
                .bind(stream)
                .fetch_one(&pool)
                .await
                .unwrap();
            serde_json::from_value::<leoflow_events::catalog::Sealed>(payload["password"].clone())
                .unwrap()
        }
    };
    let (acme_password, beta_password) = (
        sealed("connection@acme:warehouse").await,
        sealed("connection@beta:warehouse").await,
    );
    let (status, _) = as_(
        &api,
        &who.beta,
        Method::DELETE,
        "/api/v2/connections/warehouse",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        api.vault.open(&beta_password).await.is_err(),
        "beta's key is destroyed"
    );
    assert_eq!(api.vault.open(&acme_password).await.unwrap(), "acme-secret");
    let (_, acme) = as_(
        &api,
        &who.acme,
        Method::GET,
        "/api/v2/connections/warehouse",
        None,
    )
    .await;
    assert_eq!(
        (&acme["password"], &acme["team_name"]),
        (&json!("***"), &json!("acme")),
        "{acme}"
    );
    let (status, _) = as_(
        &api,
        &who.beta,
        Method::GET,
        "/api/v2/connections/warehouse",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Each tenant has its own default_pool: acme's change is acme's alone.
    let patch = json!({"slots": 3});
    let (status, pool) = as_(
        &api,
        &who.acme,
        Method::PATCH,
        "/api/v2/pools/default_pool?update_mask=slots",
        Some(patch),
    )
    .await;
    assert_eq!(
        (status, &pool["slots"], &pool["team_name"]),
        (200, &json!(3), &json!("acme")),
        "{pool}"
    );
    for (token, team) in [(&who.beta, json!("beta")), (&who.platform, Value::Null)] {
        let (_, pool) = as_(&api, token, Method::GET, "/api/v2/pools/default_pool", None).await;
        assert_eq!(
            (&pool["slots"], &pool["team_name"]),
            (&json!(128), &team),
            "{pool}"
        );
    }
    let (status, _) = as_(
        &api,
        &who.acme,
        Method::POST,
        "/api/v2/pools",
        Some(json!({"name": "gpu", "slots": 2})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = as_(&api, &who.beta, Method::GET, "/api/v2/pools/gpu", None).await;
    assert_eq!(status, 404);
    let (status, _) = as_(
        &api,
        &who.beta,
        Method::POST,
        "/api/v2/pools",
        Some(json!({"name": "gpu", "slots": 9})),
    )
    .await;
    assert_eq!(status, 201, "beta's gpu is not acme's");
}
