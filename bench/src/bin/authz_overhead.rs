//! What authorization costs: the same reads, over the same data as `api_reads` (1,000 runs ×
//! 50 tasks plus 20 small DAGs), by Lite's single admin (no scope), by an `Admin` of the
//! `default` tenant (its DAGs' owner looked up per DAG route, lists filtered to the tenant in
//! SQL), by a `Viewer` API token of that tenant (the role's checks and the token's lookup on
//! top), and by a custom role of that tenant that reaches half the DAGs through their
//! `access_control` (a grant lookup per DAG route, lists filtered to its readable DAGs).
//!
//! With a tenant named (`authz_overhead acme`), the data is that tenant's and its callers name
//! DAGs by their ids (`big`) while Lite's admin uses their keys (`acme:big`): the tenant's
//! columns then include the API's translation of ids and keys at its edge.
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin authz_overhead [TENANT]
//! ```

use std::sync::Arc;

use anyhow::Result;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use leoflow_api::api_tokens;
use leoflow_bench::{BenchDatabase, http_api, machine_description, read_models};
use leoflow_events::catalog::ApiTokenIssued;
use leoflow_events::{AppendBatch, DEFAULT_TENANT, EventStore, Metadata, dag_key};
use leoflow_projector::ReadModels;
use serde_json::json;
use sqlx::PgPool;

const RUNS: usize = 1_000;
const TASKS: usize = 50;
const REQUESTS: usize = 200;
/// The custom role the measured user holds.
const ROLE: &str = "team";

#[tokio::main]
async fn main() -> Result<()> {
    let tenant = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    leoflow_events::check_tenant(&tenant).map_err(anyhow::Error::msg)?;
    let database = BenchDatabase::start().await?;
    let pool = database.fresh("bench_authz").await?;
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));
    read_models::build_in(&store, &pool, &tenant, RUNS, TASKS).await?;
    let big = dag_key(&tenant, "big");
    grant_half_the_dags(&pool, &big).await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    println!(
        "authorization overhead, DAGs of tenant {tenant} — {}",
        machine_description()
    );

    let served = http_api::serve(store.clone()).await?;
    let client = reqwest::Client::new();
    let base = &served.base;
    let key = &served.signing_key;
    // (who, their token, how they name the big DAG: Lite's admin by its key).
    let users = [
        (
            "Lite's admin",
            http_api::admin_token(&client, base, http_api::PASSWORD).await?,
            big.as_str(),
        ),
        ("tenant Admin", session(key, &tenant, "Admin", &[])?, "big"),
        (
            "tenant Viewer API token",
            viewer_token(&store, &tenant).await?,
            "big",
        ),
        (
            "tenant custom role",
            session(key, &tenant, "Public", &[ROLE])?,
            "big",
        ),
    ];
    let run: String = sqlx::query_scalar(
        "SELECT run_id FROM dag_run WHERE dag_id = $1 ORDER BY run_after DESC LIMIT 1",
    )
    .bind(&big)
    .fetch_one(&pool)
    .await?;
    let run = form_urlencoded::byte_serialize(run.as_bytes()).collect::<String>();
    let routes = [
        ("DAGs list", "/api/v2/dags?limit=50".to_owned()),
        (
            "DAGs with latest runs (/ui/dags)",
            "/ui/dags?dag_runs_limit=10&limit=50".into(),
        ),
        ("one DAG", "/api/v2/dags/{big}".into()),
        (
            "grid runs",
            "/ui/grid/runs/{big}?limit=10&order_by=-run_after".into(),
        ),
        (
            "task instances of a run",
            format!("/api/v2/dags/{{big}}/dagRuns/{run}/taskInstances?limit=50"),
        ),
        (
            "dag runs, all DAGs",
            "/api/v2/dags/~/dagRuns?limit=50&order_by=-run_after".into(),
        ),
        (
            "task instances, all runs",
            "/api/v2/dags/~/dagRuns/~/taskInstances?limit=50&order_by=-start_date".into(),
        ),
    ];
    let names: Vec<&str> = users.iter().map(|(name, _, _)| *name).collect();
    println!(
        "\n| route ({REQUESTS} requests each, p50 / p95) | {} |",
        names.join(" | ")
    );
    println!("|---|{}", "---|".repeat(users.len()));
    for (name, path) in routes {
        let mut cells = Vec::new();
        for (_, token, dag) in &users {
            let url = format!("{base}{}", path.replace("{big}", dag));
            let p = http_api::timed(&client, &url, token, "application/json", REQUESTS).await?;
            cells.push(p.to_string());
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
    database.stop()?;
    Ok(())
}

/// Gives [`ROLE`] read access to `big` and every other small DAG, as compiling DAGs with
/// `access_control={ROLE: {"can_read"}}` leaves the `dag` read model.
async fn grant_half_the_dags(pool: &PgPool, big: &str) -> Result<()> {
    let access = json!({ROLE: {"DAGs": ["can_read"]}});
    sqlx::query(
        "UPDATE dag SET access_control = $1, readable_by = ARRAY[$2] \
         WHERE dag_id = $3 OR (dag_id <> $3 AND hashtext(dag_id) % 2 = 0)",
    )
    .bind(access)
    .bind(ROLE)
    .bind(big)
    .execute(pool)
    .await?;
    Ok(())
}

/// A `Viewer` API token of `tenant`, recorded as `leoflow tokens create` records one.
async fn viewer_token(store: &EventStore, tenant: &str) -> Result<String> {
    let new = api_tokens::generate();
    let issued = ApiTokenIssued {
        token_id: new.id.clone(),
        role: "Viewer".into(),
        tenant: tenant.to_owned(),
        digest: new.digest,
        expires_at: None,
        description: None,
        dag_roles: Vec::new(),
    };
    store
        .append(AppendBatch::new().push(issued, &Metadata::actor("bench")))
        .await?;
    Ok(new.token)
}

/// A single sign-on session in `tenant` with `role` and the custom `dag_roles`.
fn session(key: &[u8], tenant: &str, role: &str, dag_roles: &[&str]) -> Result<String> {
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = json!({
        "sub": "bench-user", "role": role, "jti": "bench-session", "aud": "apache-airflow",
        "nbf": now, "iat": now, "exp": now + 3600, "auth_time": now, "dag_roles": dag_roles,
        "tenant": tenant,
    });
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(key)?,
    )?)
}
