//! A real OpenID provider for the single sign-on tests (npm `oidc-provider`, run by
//! `ui-tests/oidc-provider.mjs` on loopback), and a browser without a browser: an HTTP client
//! that keeps cookies per site and follows the sign-in's redirects by hand, so each step can be
//! looked at (and tampered with).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::repo;

/// The role map the tests give Leoflow for the provider's groups.
pub const ROLE_MAP: &str = r#"{"airflow-admins": "Admin", "airflow-ops": "Op",
    "airflow-users": "User", "airflow-viewers": "Viewer",
    "platform-admins": {"role": "Admin", "tenant": "*"}}"#;
/// The audience of the provider's machine tokens.
pub const AUDIENCE: &str = "urn:leoflow:api";

/// The provider process; its keys survive restarts in `keys_file`.
pub struct Provider {
    child: Option<Child>,
    pub port: u16,
    pub issuer: String,
    keys_file: PathBuf,
    leoflow_urls: Vec<String>,
}

impl Provider {
    /// Starts the provider on `port` for Leoflow replicas at `leoflow_urls`.
    pub fn start(port: u16, scratch: &std::path::Path, leoflow_urls: &[String]) -> Self {
        assert!(
            repo().join("ui-tests/node_modules/oidc-provider").is_dir(),
            "the single sign-on tests need ui-tests' oidc-provider: scripts/test.sh installs it"
        );
        let mut provider = Self {
            child: None,
            port,
            issuer: format!("http://127.0.0.1:{port}"),
            keys_file: scratch.join("provider-keys.json"),
            leoflow_urls: leoflow_urls.to_vec(),
        };
        provider.spawn(false);
        provider
    }

    fn spawn(&mut self, rotate: bool) {
        let mut child = Command::new("node")
            .arg(repo().join("ui-tests/oidc-provider.mjs"))
            .env("PORT", self.port.to_string())
            .env("LEOFLOW_URLS", self.leoflow_urls.join(","))
            .env("KEYS_FILE", &self.keys_file)
            .env("ROTATE", if rotate { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs ui-tests/oidc-provider.mjs");
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[provider] {line}");
                if line.starts_with("listening") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("the provider did not start");
        self.child = Some(child);
    }

    /// Stops the provider (it is down until [`Provider::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, with new signing keys when `rotate` (the old ones are gone).
    pub fn restart(&mut self, rotate: bool) {
        self.stop();
        self.spawn(rotate);
    }

    /// The key id the provider signs with now.
    pub fn signing_kid(&self) -> String {
        let keys: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.keys_file).unwrap()).unwrap();
        keys[0]["kid"].as_str().unwrap().to_owned()
    }

    /// A machine token from the client-credentials grant (the `ci-robot` client).
    pub async fn machine_token(&self) -> String {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("ci-robot", Some("ci-robot-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "api")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {answer}"))
            .to_owned()
    }

    /// The `leoflow server` variables for single sign-on through this provider.
    pub fn server_env(&self, base_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("LEOFLOW_AUTH_MODE", "oidc".into()),
            ("LEOFLOW_AUTH_OIDC_ISSUER", self.issuer.clone()),
            ("LEOFLOW_AUTH_OIDC_CLIENT_ID", "leoflow".into()),
            (
                "LEOFLOW_AUTH_OIDC_SCOPES",
                "openid profile groups tenant".into(),
            ),
            ("LEOFLOW_AUTH_OIDC_ROLE_MAP", ROLE_MAP.into()),
            ("LEOFLOW_AUTH_OIDC_AUDIENCE", AUDIENCE.into()),
            ("LEOFLOW_AUTH_OIDC_CLI_CLIENT_ID", "leoflow-cli".into()),
            ("LEOFLOW_BASE_URL", base_url.into()),
        ]
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One answer: status, `Location`, body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

/// An HTTP client keeping cookies per origin, never following redirects itself.
#[derive(Default)]
pub struct Browser {
    client: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

fn origin(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// `location` resolved against `url`.
fn resolve(url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("http://{}{location}", origin(url))
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    /// The cookie `name` this browser holds for `url`'s site.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jar.get(&origin(url))?.get(name).cloned()
    }

    /// Forgets the cookie `name` of `url`'s site.
    pub fn forget(&mut self, url: &str, name: &str) {
        if let Some(cookies) = self.jar.get_mut(&origin(url)) {
            cookies.remove(name);
        }
    }

    /// Copies `url`'s cookie `name` to `other`'s site (another replica behind the same name).
    pub fn copy_cookie(&mut self, url: &str, other: &str, name: &str) {
        if let Some(value) = self.cookie(url, name) {
            self.jar
                .entry(origin(other))
                .or_default()
                .insert(name.into(), value);
        }
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        let request = self.client.get(url);
        self.send(url, request).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Answer {
        let request = self.client.post(url).form(form);
        self.send(url, request).await
    }

    pub async fn send(&mut self, url: &str, request: reqwest::RequestBuilder) -> Answer {
        let site = origin(url);
        let cookies = self
            .jar
            .get(&site)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", cookies)
        };
        let response = request.send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let jar = self.jar.entry(site.clone()).or_default();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().into(), value.into());
            }
        }
        Answer {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .map(|l| resolve(url, l.to_str().unwrap())),
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// Starts a sign-in at Leoflow (`base`) and goes through the provider as `user`, up to
    /// the provider's redirect back: returns the callback URL, not yet visited.
    pub async fn reach_callback(&mut self, base: &str, user: &str, next: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish();
        let start = self.get(&format!("{base}/api/v2/auth/login?{query}")).await;
        let Some(mut url) = start.location.clone() else {
            panic!("the login did not redirect: {start:?}");
        };
        loop {
            if url.starts_with(&format!("{base}/auth/oidc/callback")) {
                return url;
            }
            let answer = if url.contains("/interaction/") && !url.ends_with("/login") {
                let form = self.get(&url).await;
                assert!(form.body.contains("Sign in"), "{form:?}");
                self.post_form(&format!("{url}/login"), &[("login", user)])
                    .await
            } else {
                self.get(&url).await
            };
            let Some(next) = answer.location.clone() else {
                panic!("the sign-in stopped at {url}: {answer:?}");
            };
            url = next;
        }
    }

    /// Signs in at `base` as `user`: returns where Leoflow sent the browser afterwards.
    pub async fn sign_in(&mut self, base: &str, user: &str, next: &str) -> String {
        let callback = self.reach_callback(base, user, next).await;
        let done = self.get(&callback).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        assert!(self.cookie(base, "_token").is_some(), "no session cookie");
        done.location.unwrap()
    }

    /// A JSON request to Leoflow with the session cookie.
    pub async fn api(
        &mut self,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method.parse().unwrap(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = self.send(url, request).await;
        let json = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        (answer.status, json)
    }
}
