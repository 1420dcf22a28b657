//! The API served in-process over a store, and reads of it timed at the client: what the
//! read benchmarks share.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use leoflow_api::auth::Auth;
use leoflow_api::credentials::Credentials;
use leoflow_api::{ApiState, Settings};
use leoflow_events::EventStore;
use leoflow_scheduler::reactor::Specs;
use serde_json::{Value, json};

use crate::Percentiles;

/// The admin's password of [`serve`]'s API.
pub const PASSWORD: &str = "bench";

/// An API served on a loopback port.
pub struct Served {
    /// Its base URL.
    pub base: String,
    /// The key it signs sessions with (to make sessions of other users).
    pub signing_key: Vec<u8>,
}

/// Serves the API over `store` on a loopback port, as Lite does.
pub async fn serve(store: EventStore) -> Result<Served> {
    let credentials = Credentials::new(PASSWORD);
    let state = ApiState {
        store: store.clone(),
        specs: Specs::default(),
        auth: Arc::new(Auth::new(credentials.clone(), None)),
        vault: leoflow_secrets::Vault::new(store.pool().clone(), credentials.master_keys()),
        settings: Arc::new(Settings::lite()),
        xcom_values: Default::default(),
        oidc: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(leoflow_api::serve(
        listener,
        leoflow_api::router(state, None),
        std::future::pending(),
    ));
    Ok(Served {
        base,
        signing_key: credentials.token_signing_key.clone(),
    })
}

/// The admin's token from the login route of the API at `base`.
pub async fn admin_token(client: &reqwest::Client, base: &str, password: &str) -> Result<String> {
    let answer: Value = client
        .post(format!("{base}/auth/token"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["access_token"]
        .as_str()
        .context("the login answered no access_token")?
        .to_owned())
}

/// `requests` GETs of `url` one at a time (after ten to warm caches), timed at the client;
/// fails on any answer but a success.
pub async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    accept: &str,
    requests: usize,
) -> Result<Percentiles> {
    let mut samples = Vec::with_capacity(requests);
    for i in 0..requests + 10 {
        let start = Instant::now();
        let response = client
            .get(url)
            .bearer_auth(token)
            .header("accept", accept)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let elapsed = start.elapsed();
        if !status.is_success() {
            bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        // The first requests warm caches (DAG documents, prepared statements).
        if i >= 10 {
            samples.push(elapsed);
        }
    }
    Ok(Percentiles::of(&mut samples))
}
