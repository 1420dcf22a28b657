//! Logging in and out, and refusing everyone else: every documented route without a token,
//! forged and expired tokens, the login page's redirects.

mod common;

use common::{TestApi, contract::contract};
use leoflow_api::auth::TrustedProxies;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_carries_exactly_the_security_airflows_spec_gives_it() {
    let api = TestApi::without_scheduler().await;
    let (mut protected, mut public) = (0, Vec::new());
    for (method, template, secured) in contract().operations_with_security() {
        // The simple auth manager's own routes (the login itself) are checked below.
        if template.starts_with("/auth/") {
            continue;
        }
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = api
            .client
            .request(method.clone(), format!("{}{path}", api.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if secured {
            // 404/405: a route Leoflow does not have, anonymous or not.
            assert!(
                status == 401 || status == 404 || status == 405,
                "{method} {template} answered {status} to an anonymous caller"
            );
            protected += usize::from(status == 401);
        } else {
            assert!(
                status != 401 && status != 404 && status != 405,
                "{method} {template} is public in Airflow's spec, but answered {status} to an \
                 anonymous caller"
            );
            public.push(template);
        }
    }
    assert!(protected > 80, "only {protected} routes were protected");
    public.sort();
    assert_eq!(
        public,
        [
            "/api/v2/auth/login",
            "/api/v2/auth/logout",
            "/api/v2/monitor/health",
            "/api/v2/version"
        ],
        "the public routes of Airflow's spec"
    );
    // What the official client reads there without a token.
    let version: serde_json::Value = api
        .client
        .get(format!("{}/api/v2/version", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    contract().check("GET", "/api/v2/version", 200, &version);

    // A token that expired an hour ago, properly signed, is refused like a forged one.
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = json!({"sub": "admin", "role": "admin", "jti": "x", "aud": "apache-airflow",
                        "nbf": now - 7200, "iat": now - 7200, "exp": now - 3600});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&api.token_signing_key).unwrap(),
    )
    .unwrap();
    for token in [expired.as_str(), "not-a-token"] {
        let response = api
            .client
            .get(format!("{}/api/v2/dags", api.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["detail"], "Invalid JWT token");
    }
    // The cookie works as the header does.
    let token = api.login().await;
    let response = api
        .client
        .get(format!("{}/ui/auth/me", api.base))
        .header("cookie", format!("_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["username"],
        "admin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_page_redirects_bad_credentials_and_logout() {
    let api = TestApi::without_scheduler().await;
    let redirect = api
        .client
        .get(format!(
            "{}/api/v2/auth/login?next=%2Fdags%2Fhello",
            api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 307);
    assert_eq!(
        redirect.headers()["location"],
        "/auth/login?next=%2Fdags%2Fhello"
    );

    let (status, body) = api
        .call(
            Method::POST,
            "/auth/token",
            Some(json!({"username": "admin", "password": "nope"})),
        )
        .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("Invalid credentials"))
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/auth/token",
            Some(json!({"username": "admin"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
    let form = api
        .client
        .post(format!("{}/auth/token", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=admin&password={}", common::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 201, "the login form's encoding works too");

    let logout = api
        .client
        .get(format!("{}/api/v2/auth/logout", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 307);
    assert_eq!(logout.headers()["location"], "/auth/login");
    let cookie = logout.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("_token=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );

    // Without the UI installed, its pages say how to get it; the API works regardless.
    let page = api
        .client
        .get(format!("{}/dags/hello", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(page.text().await.unwrap().contains("leoflow setup"));
    let missing = api
        .client
        .get(format!("{}/api/v2/nowhere", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

const ONE_TASK: &str = r#"
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("target", schedule=None, is_paused_upon_creation=False):
    EmptyOperator(task_id="noop")
"#;

async fn run_count(api: &TestApi) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dag_run WHERE dag_id = 'target'")
        .fetch_one(&api.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_form_cannot_use_the_session_cookie() {
    let api = TestApi::start(ONE_TASK).await;
    let login = api
        .client
        .post(format!("{}/auth/token", api.base))
        .json(&json!({"username": "admin", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("SameSite=Lax") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = format!("_token={token}");
    let trigger = format!("{}/api/v2/dags/target/dagRuns", api.base);
    let host = api.base.trim_start_matches("http://").to_owned();

    // What an HTML form on another site posts: text/plain, the victim's cookie attached.
    let forged = api
        .client
        .post(&trigger)
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"logical_date": null, "note": "="}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // The same form from a browser that says only Sec-Fetch-Site.
    let forged = api
        .client
        .post(&trigger)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/json")
        .body(r#"{"logical_date": null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // Same origin, but not JSON: a form's body.
    let not_json = api
        .client
        .post(&trigger)
        .header("cookie", &cookie)
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logical_date=")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    assert_eq!(
        run_count(&api).await,
        0,
        "no forged request triggered a run"
    );

    // The UI's own request: same origin, JSON, the cookie.
    let ui = api
        .client
        .post(&trigger)
        .header("cookie", &cookie)
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"logical_date": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    // A bearer token is never sent by a browser on its own: any body type is the client's.
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v2/dags/target/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(run_count(&api).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_logins_are_held_to_the_limit() {
    let api = TestApi::without_scheduler().await;
    let attempts: Vec<_> = (0..30)
        .map(|_| {
            let (client, url) = (api.client.clone(), format!("{}/auth/token", api.base));
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"username": "admin", "password": "wrong"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut verified = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            401 => verified += 1,
            429 => {}
            other => panic!("a wrong login answered {other}"),
        }
    }
    // The test client logged in once before (a success clears the count).
    assert!(
        verified <= 5,
        "{verified} wrong passwords were verified; the limit is 5"
    );
}

/// A login attempt on `api` whose request says, in `X-Forwarded-For`, that it is forwarded
/// for `forwarded_for`: its status.
async fn login_as(api: &TestApi, forwarded_for: &str, password: &str) -> u16 {
    api.client
        .post(format!("{}/auth/token", api.base))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// This test is the server's peer (127.0.0.1): a proxy the first server trusts, a stranger to
/// the second and to the default (no proxies). Behind a trusted proxy the audit trail records
/// the client the proxy names and the failed-login limiter counts that client; any other peer
/// is recorded and counted by its own address, whatever it writes in `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_client_is_audited_and_limited_only_behind_a_trusted_proxy() {
    let cases = [
        (vec!["127.0.0.0/8", "::1"], "203.0.113.9"),
        (vec!["10.0.0.0/8"], "127.0.0.1"),
        (vec![], "127.0.0.1"),
    ];
    for (proxies, client) in cases {
        let trusted = TrustedProxies::parse(proxies.iter().copied()).unwrap();
        let api = TestApi::without_scheduler_behind(trusted).await;
        let token = api.login().await;
        // The leftmost entry is the client's own forgery; the proxy appended what it saw.
        let set = api
            .client
            .post(format!("{}/api/v2/variables", api.base))
            .bearer_auth(&token)
            .header("x-forwarded-for", "198.51.100.66, 203.0.113.9")
            .json(&json!({"key": "forwarded", "value": "1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 201, "{proxies:?}");
        let (_, logs) = api
            .call(Method::GET, "/api/v2/eventLogs?event=VariableSet", None)
            .await;
        assert_eq!(logs["total_entries"], 1, "{logs}");
        let extra: serde_json::Value =
            serde_json::from_str(logs["event_logs"][0]["extra"].as_str().unwrap()).unwrap();
        assert_eq!(extra["actor"]["client"], client, "{proxies:?}: {extra}");
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT metadata->>'client' FROM events WHERE type = 'VariableSet'")
                .fetch_one(&api.db.pool)
                .await
                .unwrap();
        assert_eq!(recorded.as_deref(), Some(client), "{proxies:?}");

        // The limiter counts the same address: five wrong passwords for 203.0.113.9.
        for _ in 0..5 {
            assert_eq!(login_as(&api, "203.0.113.9", "wrong").await, 401);
        }
        assert_eq!(
            login_as(&api, "203.0.113.9", common::PASSWORD).await,
            429,
            "{proxies:?}: the limited client waits, even with the right password"
        );
        // Another client behind the proxy is not held back by 203.0.113.9's failures; a peer
        // that is not trusted cannot step out of its limit by naming another address.
        let other = login_as(&api, "203.0.113.10", common::PASSWORD).await;
        let expected = if client == "203.0.113.9" { 201 } else { 429 };
        assert_eq!(other, expected, "{proxies:?}");
    }
}
