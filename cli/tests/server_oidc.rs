//! Single sign-on in `leoflow server` (`auth.mode: oidc`) against a real OpenID provider on
//! loopback (npm `oidc-provider`): people sign in with the authorization code flow and PKCE and
//! get their Airflow role from the provider's groups; machines use the provider's
//! client-credentials tokens; bad callbacks, a provider that is down and a key rotation at the
//! provider are each handled as a user would expect; a session ended on one replica is refused
//! by the other.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;

use common::oidc::{Browser, Provider};
use common::repo;
use common::server::{Deployment, Replica, ports, replicas_ports};

const DAG: &str = r#"
from airflow.sdk import DAG, task

@task
def hello():
    return 1

with DAG("greet", schedule=None):
    hello()
"#;

/// A deployment with two replicas (`all` and `api`) signing people in through `provider`.
struct Sso {
    deployment: Deployment,
    provider: Provider,
    a: Replica,
    b: Replica,
}

impl Sso {
    async fn start(what: &str) -> Self {
        Self::start_with(what, None).await
    }

    /// [`Sso::start`], the replicas serving the Airflow UI from `ui_dir`.
    async fn start_with(what: &str, ui_dir: Option<&Path>) -> Self {
        let deployment = Deployment::start(what).await;
        // All chosen at once, so no two are the same.
        let [ports_a, ports_b, [provider_port, ..]] = replicas_ports::<3>();
        let urls = [ports_a, ports_b].map(|p| format!("http://127.0.0.1:{}", p[0]));
        let provider = Provider::start(provider_port, &deployment.scratch, &urls);
        let secret = deployment.scratch.join("oidc-client-secret");
        std::fs::write(&secret, "leoflow-secret\n").unwrap();
        let replica = |role: &str, ports: [u16; 3], url: &str| {
            deployment.replica_at(role, ports, |command| {
                command
                    .envs(provider.server_env(url))
                    .env("LEOFLOW_AUTH_OIDC_CLIENT_SECRET_FILE", &secret)
                    .env_remove("LEOFLOW_ADMIN_PASSWORD_FILE");
                if let Some(ui_dir) = ui_dir {
                    command.env("LEOFLOW_UI_DIR", ui_dir);
                }
            })
        };
        let a = replica("all", ports_a, &urls[0]);
        let b = replica("api", ports_b, &urls[1]);
        // The provider's people of `acme` (and its machine) work in the tenant that owns it.
        deployment.register_into("greet", DAG, "acme");
        Self {
            deployment,
            provider,
            a,
            b,
        }
    }
}

async fn bearer(method: &str, url: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_the_provider_with_the_role_their_groups_map_to() {
    let sso = Sso::start("oidc-people").await;
    let (a, b) = (&sso.a.base, &sso.b.base);
    let mut alice = Browser::new();
    let landed = alice
        .sign_in(a, "alice", &format!("{a}/dags/greet?tab=code"))
        .await;
    assert_eq!(
        landed,
        format!("{a}/dags/greet?tab=code"),
        "back where the UI was"
    );
    let (status, me) = alice.api("GET", &format!("{a}/ui/auth/me"), None).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    let trigger = json!({"logical_date": null, "conf": {}});
    let runs = format!("{a}/api/v2/dags/greet/dagRuns");
    let (status, run) = alice.api("POST", &runs, Some(trigger.clone())).await;
    assert_eq!(status, StatusCode::OK, "an Admin triggers: {run}");

    // The run's event names who triggered it, with their name and tenant from the provider.
    let pool = sso.deployment.pool().await;
    let (actor,): (Value,) = sqlx::query_as(
        "SELECT metadata FROM events WHERE type = 'RunQueued' ORDER BY position DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(actor["actor"], "alice", "{actor}");
    assert_eq!(actor["display_name"], "Alice Admin", "{actor}");
    assert_eq!(actor["tenant"], "acme", "{actor}");
    assert_eq!(actor["client"], "127.0.0.1", "{actor}");
    assert!(actor["token_id"].is_string(), "the session's id: {actor}");

    // A Viewer reads but may not trigger; someone in no mapped group is Public.
    let mut victor = Browser::new();
    victor.sign_in(a, "victor", "/").await;
    let (status, _) = victor.api("GET", &format!("{a}/api/v2/dags"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refusal) = victor.api("POST", &runs, Some(trigger.clone())).await;
    assert_eq!(
        (status, refusal),
        (StatusCode::FORBIDDEN, json!({"detail": "Forbidden"}))
    );
    let mut pat = Browser::new();
    pat.sign_in(a, "pat", "/").await;
    let (status, _) = pat.api("GET", &format!("{a}/api/v2/dags"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Public opens no DAGs");
    let (_, menus) = pat.api("GET", &format!("{a}/ui/auth/menus"), None).await;
    assert_eq!(menus["authorized_menu_items"], json!([]));

    // Another tenant's admin sees none of acme's DAGs; a platform admin sees every tenant's.
    let mut bea = Browser::new();
    bea.sign_in(a, "bea", "/").await;
    let (status, dags) = bea.api("GET", &format!("{a}/api/v2/dags"), None).await;
    assert_eq!(
        (status, dags["total_entries"].clone()),
        (StatusCode::OK, json!(0))
    );
    let (status, _) = bea
        .api("GET", &format!("{a}/api/v2/dags/greet"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's DAG does not exist for bea"
    );
    let (status, _) = bea.api("POST", &runs, Some(trigger.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut root = Browser::new();
    root.sign_in(a, "root", "/").await;
    let (_, dags) = root.api("GET", &format!("{a}/api/v2/dags"), None).await;
    assert_eq!(dags["total_entries"], 1, "{dags}");

    // No passwords in single sign-on.
    let (status, answer) = bearer("POST", &format!("{a}/auth/token"), "", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("auth.mode: oidc")
    );

    // Logging out ends the session on every replica and goes through the provider's logout.
    alice.copy_cookie(a, b, "_token");
    let (status, _) = alice.api("GET", &format!("{b}/api/v2/dags"), None).await;
    assert_eq!(status, StatusCode::OK, "any replica takes the session");
    let token = alice.cookie(a, "_token").unwrap();
    let out = alice.get(&format!("{a}/api/v2/auth/logout")).await;
    let to = out.location.unwrap();
    assert!(
        to.starts_with(&format!("{}/session/end?", sso.provider.issuer))
            && to.contains("post_logout_redirect_uri="),
        "{to}"
    );
    assert!(alice.cookie(a, "_token").is_none(), "the cookie is cleared");
    let (status, _) = bearer("GET", &format!("{a}/api/v2/dags"), &token, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the replica logged out on refuses it"
    );
    // The other replica asked the shared store moments ago: it asks again within a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let (status, _) = bearer("GET", &format!("{b}/api/v2/dags"), &token, None).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica still takes it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let signed_out = alice.get(&format!("{a}/auth/oidc/signed-out")).await;
    assert!(signed_out.body.contains("signed out"), "{signed_out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_and_refused_callbacks_sign_no_one_in() {
    let sso = Sso::start("oidc-callbacks").await;
    let (a, b) = (&sso.a.base, &sso.b.base);

    // The state the provider sends back must be the one this browser's sign-in sent.
    let mut browser = Browser::new();
    let callback = browser.reach_callback(a, "alice", "/").await;
    let tampered = callback.replace("state=", "state=x");
    let refused = browser.get(&tampered).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("state does not match"),
        "{}",
        refused.body
    );
    assert!(browser.cookie(a, "_token").is_none());

    // A callback without the sign-in's cookie (another browser, or after 10 minutes).
    let mut other = Browser::new();
    let callback = browser.reach_callback(a, "alice", "/").await;
    let refused = other.get(&callback).await;
    assert!(
        refused.body.contains("not started here"),
        "{}",
        refused.body
    );

    // Replayed: the same callback and cookie again, on the other replica.
    let callback = browser.reach_callback(a, "alice", "/").await;
    let cookie = browser.cookie(a, "_leoflow_oidc").unwrap();
    let first = browser.get(&callback).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let mut replay = Browser::new();
    let on_b = callback.replace(a.as_str(), b.as_str());
    let request = reqwest::Client::new()
        .get(&on_b)
        .header("cookie", format!("_leoflow_oidc={cookie}"));
    let replayed = replay.send(&on_b, request).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(replayed.body.contains("already used"), "{}", replayed.body);
    assert!(replay.cookie(b, "_token").is_none());

    // The provider refused (the person cancelled): a page saying so, not an error.
    let mut cancelled = Browser::new();
    let callback = cancelled.reach_callback(a, "alice", "/").await;
    let state = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let denied = cancelled
        .get(&format!(
            "{a}/auth/oidc/callback?error=access_denied&state={state}"
        ))
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_use_client_credentials_and_keys_rotate_at_the_provider_mid_session() {
    let mut sso = Sso::start("oidc-machines").await;
    let (a, b) = (sso.a.base.clone(), sso.b.base.clone());
    let token = sso.provider.machine_token().await;
    for replica in [&a, &b] {
        let (status, dags) = bearer("GET", &format!("{replica}/api/v2/dags"), &token, None).await;
        assert_eq!(status, StatusCode::OK, "{dags}");
        assert_eq!(dags["total_entries"], 1);
    }
    // Airflow's own client, as a CI job would use it, with the provider's token.
    let python = std::env::var("LEOFLOW_PYTHON")
        .unwrap_or_else(|_| repo().join(".venv/bin/python").display().to_string());
    let client = Command::new(python)
        .args([
            "-c",
            "import sys, airflow_client.client as a; from airflow_client.client.api import dag_api; \
             c = a.ApiClient(a.Configuration(host=sys.argv[1], access_token=sys.argv[2])); \
             print(dag_api.DAGApi(c).get_dags().total_entries)",
            &b,
            &token,
        ])
        .output()
        .unwrap();
    assert!(client.status.success(), "{client:?}");
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "1");
    // ci-robot's group maps to Op: it triggers runs.
    let runs = format!("{a}/api/v2/dags/greet/dagRuns");
    let (status, run) = bearer("POST", &runs, &token, Some(json!({"logical_date": null}))).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    // A token one character off is refused.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = bearer("GET", &format!("{a}/api/v2/dags"), &forged, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Someone signed in keeps working while the provider rotates its keys; new sign-ins and
    // machine tokens, signed with the new key, are taken at once; tokens of the old key are
    // not (it is gone).
    let mut alice = Browser::new();
    alice.sign_in(&a, "alice", "/").await;
    let old_kid = sso.provider.signing_kid();
    sso.provider.restart(true);
    assert_ne!(
        sso.provider.signing_kid(),
        old_kid,
        "the provider rotated its key"
    );
    let (status, _) = alice.api("GET", &format!("{a}/api/v2/dags"), None).await;
    assert_eq!(status, StatusCode::OK, "the session outlives the rotation");
    let mut oscar = Browser::new();
    oscar.sign_in(&a, "oscar", "/").await;
    let (status, me) = oscar.api("GET", &format!("{a}/ui/auth/me"), None).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("oscar"))
    );
    let fresh = sso.provider.machine_token().await;
    for replica in [&a, &b] {
        let (status, _) = bearer("GET", &format!("{replica}/api/v2/dags"), &fresh, None).await;
        assert_eq!(status, StatusCode::OK, "{replica} takes the new key");
        let (status, _) = bearer("GET", &format!("{replica}/api/v2/dags"), &token, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{replica} drops the old key"
        );
    }

    // The provider goes down: a replica starting now warns and serves; a sign-in gets a
    // clear page naming the provider, not a 500.
    sso.provider.stop();
    let log = sso.deployment.scratch.join("c.log");
    let c = sso.deployment.replica_at("api", ports(), |command| {
        command
            .envs(sso.provider.server_env("http://127.0.0.1:1"))
            .env(
                "LEOFLOW_AUTH_OIDC_CLIENT_SECRET_FILE",
                sso.deployment.scratch.join("oidc-client-secret"),
            )
            .env("LEOFLOW_AUTH_OIDC_ROLE_MAP", "{}")
            .env_remove("LEOFLOW_ADMIN_PASSWORD_FILE")
            .stderr(std::fs::File::create(&log).unwrap());
    });
    let page = Browser::new()
        .get(&format!("{}/api/v2/auth/login?next=/", c.base))
        .await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        page.body.contains(&sso.provider.issuer) && page.body.contains("cannot be used"),
        "{}",
        page.body
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("maps no claim value to a role"), "{log}");
    assert!(log.contains("sign-ins will try again"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_sign_on_configuration_that_cannot_work_is_refused_naming_the_key() {
    let deployment = Deployment::start("oidc-config").await;
    let secret = deployment.scratch.join("secret");
    std::fs::write(&secret, "s").unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("LEOFLOW_AUTH_OIDC_CLIENT_ID", "leoflow")],
            "auth.oidc.issuer: missing",
        ),
        (
            &[
                ("LEOFLOW_AUTH_OIDC_ISSUER", "https://id.example.com"),
                ("LEOFLOW_AUTH_OIDC_CLIENT_ID", "leoflow"),
                ("LEOFLOW_AUTH_OIDC_ROLE_MAP", r#"{"devs": "Super;user"}"#),
            ],
            "neither one of Airflow's roles",
        ),
        (
            &[
                ("LEOFLOW_AUTH_OIDC_ISSUER", "https://id.example.com"),
                ("LEOFLOW_AUTH_OIDC_CLIENT_ID", "leoflow"),
                ("LEOFLOW_AUTH_OIDC_ROLE_MAP", "{not json"),
            ],
            "LEOFLOW_AUTH_OIDC_ROLE_MAP is not JSON",
        ),
        (
            &[
                ("LEOFLOW_AUTH_OIDC_ISSUER", "https://id.example.com"),
                ("LEOFLOW_AUTH_OIDC_CLIENT_ID", "leoflow"),
                ("LEOFLOW_BASE_URL", "leoflow.example.com"),
            ],
            "base_url",
        ),
    ];
    for (env, expected) in cases {
        let refusal = deployment.refusal("api", |command| {
            command
                .env("LEOFLOW_AUTH_MODE", "oidc")
                .env("LEOFLOW_AUTH_OIDC_CLIENT_SECRET_FILE", &secret)
                .env("LEOFLOW_BASE_URL", "https://leoflow.example.com")
                .envs(env.iter().copied());
        });
        assert!(refusal.contains(expected), "{expected}: {refusal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_the_provider_triggers_a_run_and_logs_out() {
    assert!(
        repo()
            .join("ui-tests/node_modules/playwright-core")
            .is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and ui-tests' playwright-core: scripts/test.sh \
         installs both"
    );
    let ui_root = std::env::temp_dir().join(format!("leoflow-sso-ui-{}", std::process::id()));
    let wheel = repo().join(".venv/artifacts/apache_airflow_core-3.2.2-py3-none-any.whl");
    let wheel = std::env::var_os("LEOFLOW_AIRFLOW_WHEEL")
        .map(PathBuf::from)
        .or_else(|| wheel.is_file().then_some(wheel));
    leoflow_api::assets::install_from(&ui_root, wheel.as_deref())
        .await
        .expect("the Airflow UI installs");
    let sso = Sso::start_with("oidc-browser", Some(&ui_root)).await;
    // The default tenant has a `greet` too: the UI shows alice acme's, by its id.
    sso.deployment
        .register_into("greet_default", DAG, "default");
    let output = common::ui_script(
        "sso.mjs",
        &[
            ("BASE_URL", &sso.a.base),
            ("ISSUER", &sso.provider.issuer),
            ("SSO_USER", "alice"),
            ("DAG_ID", "greet"),
        ],
    );
    let report = String::from_utf8_lossy(&output.stdout);
    let _ = std::fs::remove_dir_all(&ui_root);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&report).unwrap();
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "sent to the provider",
            "back on the page asked for",
            "triggered a run",
            "at the provider's logout",
            "signed out"
        ]
    );
    let pool = sso.deployment.pool().await;
    let runs: Vec<String> = sqlx::query_scalar("SELECT dag_id FROM dag_run")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(runs, ["acme:greet"], "the run is of acme's greet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_a_person_in_through_the_providers_device_flow() {
    use std::io::{BufRead, BufReader};
    let sso = Sso::start("oidc-device").await;
    let laptop = sso.deployment.scratch.join("laptop");
    let mut login = common::remote::cli(&laptop, &["login", "--server", &sso.a.base])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(login.stdout.take().unwrap()).lines();
    let prompt = lines.next().unwrap().unwrap();
    let url = prompt
        .strip_prefix("To sign in, open ")
        .and_then(|rest| rest.split(" and confirm the code ").next())
        .unwrap_or_else(|| panic!("no sign-in prompt: {prompt}"))
        .to_owned();
    // A person opens the page, signs in at the provider and confirms the code.
    let browser = common::ui_script("device.mjs", &[("VERIFY_URL", &url), ("SSO_USER", "alice")]);
    assert!(
        browser.status.success(),
        "{}",
        String::from_utf8_lossy(&browser.stdout)
    );
    let status = login.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("Logged in to")),
        "{rest:?}"
    );

    // The profile acts as alice: Admin of acme (her group and tenant), so she sees acme's DAG
    // and what she does is recorded as hers.
    let listed: Value = serde_json::from_str(&common::remote::ok(
        &laptop,
        &["dags", "list", "--output", "json"],
    ))
    .unwrap();
    assert_eq!(listed["dags"][0]["dag_id"], "greet", "{listed}");
    common::remote::ok(&laptop, &["dags", "trigger", "greet"]);
    let queued = common::remote::ok(
        &laptop,
        &["events", "tail", "--type", "RunQueued", "--json"],
    );
    let event: Value = serde_json::from_str(queued.lines().last().unwrap()).unwrap();
    assert_eq!(event["metadata"]["actor"], "alice", "{event}");
    assert_eq!(event["metadata"]["tenant"], "acme", "{event}");

    // Without a CLI client, or on a password server, the CLI says how to log in instead.
    let admin_mode = sso.deployment.replica("api");
    let refused = common::remote::run(common::remote::cli(
        &laptop,
        &["login", "--server", &admin_mode.base],
    ));
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--password-file"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
