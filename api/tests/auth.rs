//! Logging in and out, and refusing everyone else: every documented route without a token,
//! forged and expired tokens, the login page's redirects.

mod common;

use common::{TestApi, contract::contract};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_anonymous_and_expired_callers() {
    let api = TestApi::without_scheduler().await;
    // Public, as in Airflow: the login routes and the health check.
    let public = [
        "/api/v2/auth/login",
        "/api/v2/auth/logout",
        "/api/v2/monitor/health",
    ];
    let mut checked = 0;
    for (method, template) in contract().operations() {
        if public.contains(&template.as_str())
            || template.starts_with("/auth/")
            || template == "/ui/auth/token"
        {
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
        // 404/405: a route Leoflow does not have, anonymous or not.
        assert!(
            status == 401 || status == 404 || status == 405,
            "{method} {template} answered {status} to an anonymous caller"
        );
        if status == 401 {
            checked += 1;
        }
    }
    assert!(checked > 80, "only {checked} routes were protected");

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
