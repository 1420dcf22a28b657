//! Commands against a running server: which server and token a command uses
//! ([`RemoteArgs::remote`]), the HTTP client that carries the token ([`Remote`]), and the exit
//! codes a script can trust ([`Refused`]).
//!
//! A command goes to a server when `--server`/`LEOFLOW_SERVER` (with `LEOFLOW_TOKEN`) or
//! `--profile`/`LEOFLOW_PROFILE` says so, or when `leoflow login` made a profile current and
//! no database is named (`--database-url`, `--postgres`); else it works on the local database
//! as before.

pub mod profiles;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::datastore::DatastoreArgs;
use profiles::{Profile, Profiles};

/// Options that name a server.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The profile of `leoflow login` to use (default: the one it made current).
    #[arg(long, global = true, env = "LEOFLOW_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// A server to call with LEOFLOW_TOKEN, without a profile (for CI).
    #[arg(long, global = true, env = "LEOFLOW_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

/// The token `--server` / `LEOFLOW_SERVER` is called with.
pub const TOKEN_ENV: &str = "LEOFLOW_TOKEN";

impl RemoteArgs {
    /// The server a command that can run remotely calls; `None`: the local database.
    pub fn remote(&self, datastore: &DatastoreArgs) -> Result<Option<Remote>> {
        let home = datastore.home();
        if let Some(server) = &self.server {
            let token = std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty());
            let Some(token) = token else {
                return Err(Refused::unauthenticated(format!(
                    "--server {server} needs a token in {TOKEN_ENV} (or log in with `leoflow \
                     login --server {server}` and use --profile)"
                ))
                .into());
            };
            return Remote::new(server, token.trim()).map(Some);
        }
        let profiles = Profiles::load(&home)?;
        let named = match &self.profile {
            Some(name) => Some(name.as_str()),
            // A database named on the command line or in the environment means this database.
            None if datastore.database_url.is_some() || datastore.postgres.is_some() => None,
            None => profiles.current.as_deref(),
        };
        match named {
            Some(name) => {
                let profile = profiles
                    .get(name)
                    .map_err(|e| Refused::unauthenticated(e.to_string()))?;
                Remote::of(profile).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// What a server refused, with the exit code scripts can tell it by: 3 not logged in (no
/// token, or one the server does not take: 401), 4 not allowed (403), 5 not found (404);
/// anything else is 1 (and a usage error, clap's, is 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    code: u8,
    message: String,
}

impl Refused {
    /// Not logged in, or the login is no longer good.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }

    /// The exit code of a command that ended with `error`.
    pub fn exit_code(error: &anyhow::Error) -> ExitCode {
        match error.downcast_ref::<Refused>() {
            Some(refused) => ExitCode::from(refused.code),
            None => ExitCode::FAILURE,
        }
    }

    /// The refusal of an answer with `status`, its `detail` quoted.
    fn of(status: StatusCode, what: &str, body: &str) -> Self {
        let detail = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("detail").cloned())
            .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
            .unwrap_or_else(|| body.trim().chars().take(300).collect());
        let (code, why) = match status {
            StatusCode::UNAUTHORIZED => (
                3,
                "the server does not take this login; log in again with `leoflow login`",
            ),
            StatusCode::FORBIDDEN => (4, "not allowed"),
            StatusCode::NOT_FOUND => (5, "not found"),
            _ => (1, "refused"),
        };
        Self {
            code,
            message: format!("{what}: {why} ({status}): {detail}"),
        }
    }
}

/// A server and the token to call it with.
#[derive(Debug, Clone)]
pub struct Remote {
    base: url::Url,
    token: String,
    client: reqwest::Client,
}

impl Remote {
    /// `server` called with `token`; the URL must be http(s).
    pub fn new(server: &str, token: &str) -> Result<Self> {
        let base = server_url(server)?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("leoflow-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            base,
            token: token.to_owned(),
            client,
        })
    }

    /// The server of `profile`.
    pub fn of(profile: &Profile) -> Result<Self> {
        Self::new(&profile.server, &profile.token)
    }

    /// The server's base URL.
    pub fn server(&self) -> &url::Url {
        &self.base
    }

    /// `path` (with its query) on this server.
    fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("{path} is not a path"))
    }

    /// Sends `method path` with the token; an answer that is not a success is [`Refused`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        self.send_accepting(method, path, body, "application/json")
            .await
    }

    /// `GET path` for newline-delimited JSON, read with [`each_line`].
    pub async fn get_ndjson(&self, path: &str) -> Result<reqwest::Response> {
        self.send_accepting(Method::GET, path, None, "application/x-ndjson")
            .await
    }

    async fn send_accepting(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        accept: &str,
    ) -> Result<reqwest::Response> {
        let what = format!("{method} {path} on {}", self.base);
        let mut request = self
            .client
            .request(method, self.url(path)?)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{what}: the server did not answer"))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(Refused::of(status, &what, &text).into())
    }

    /// `GET path`, its JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.send(Method::GET, path, None).await?;
        response
            .json()
            .await
            .with_context(|| format!("GET {path}: the answer is not JSON"))
    }
}

/// `/api/v2/` followed by `segments`, each percent-encoded as a path segment (run ids hold `:`
/// and `+`), e.g. `api_path(&["dags", dag_id, "dagRuns"])`.
pub fn api_path(segments: &[&str]) -> String {
    path_under("/api/v2", segments)
}

/// `base` followed by `segments`, each percent-encoded as a path segment.
pub fn path_under(base: &str, segments: &[&str]) -> String {
    let mut url = url::Url::parse("http://leoflow")
        .and_then(|url| url.join(base))
        .expect("a valid URL");
    url.path_segments_mut()
        .expect("an http URL has segments")
        .extend(segments);
    url.path().to_owned()
}

/// The refusal of a command that works only against a server, run without one.
pub fn needs_server(command: &str) -> anyhow::Error {
    Refused::unauthenticated(format!(
        "`leoflow {command}` works against a server: log in first with `leoflow login --server \
         URL` (Lite: http://localhost:8088), or give --profile or LEOFLOW_SERVER"
    ))
    .into()
}

/// Calls `each` with every non-empty line of a newline-delimited answer as it arrives (empty
/// lines keep a followed answer open), until the server ends it or Ctrl-C is pressed.
pub async fn each_line(
    mut response: reqwest::Response,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.context("the server's answer broke off")?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if !line.iter().all(u8::is_ascii_whitespace) {
                each(&line)?;
            }
        }
    }
}

/// A server's base URL: http or https, with a trailing `/` so paths join under it.
pub fn server_url(server: &str) -> Result<url::Url> {
    let mut url = url::Url::parse(server.trim()).with_context(|| {
        format!("{server:?} is not a server URL (such as https://leoflow.example.com)")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("{server:?} is not a server URL: use http:// or https://");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Reads a secret from `path`: its first line, trimmed (so `echo secret > file` works).
pub fn read_secret_file(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let secret = text.lines().next().unwrap_or_default().trim().to_owned();
    if secret.is_empty() {
        anyhow::bail!("{what} {} is empty", path.display());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_http_with_a_trailing_slash() {
        assert_eq!(
            server_url("http://localhost:8088").unwrap().as_str(),
            "http://localhost:8088/"
        );
        assert_eq!(
            server_url("https://x.io/leoflow").unwrap().as_str(),
            "https://x.io/leoflow/"
        );
        assert!(server_url("localhost:8088").is_err());
        assert!(server_url("ftp://x.io").is_err());
    }

    #[test]
    fn api_paths_encode_each_segment() {
        assert_eq!(
            api_path(&[
                "dags",
                "etl",
                "dagRuns",
                "manual__2026-12-04T01:00:00+00:00"
            ]),
            "/api/v2/dags/etl/dagRuns/manual__2026-12-04T01:00:00+00:00"
        );
        assert_eq!(
            api_path(&["variables", "a/b c"]),
            "/api/v2/variables/a%2Fb%20c"
        );
    }

    #[test]
    fn refusals_carry_exit_codes_and_the_servers_detail() {
        let refused = Refused::of(
            StatusCode::FORBIDDEN,
            "GET /x",
            r#"{"detail": "Forbidden"}"#,
        );
        assert_eq!(refused.code, 4);
        assert!(refused.message.contains("Forbidden"), "{}", refused.message);
        assert_eq!(Refused::of(StatusCode::UNAUTHORIZED, "GET /x", "").code, 3);
        assert_eq!(Refused::of(StatusCode::NOT_FOUND, "GET /x", "").code, 5);
        assert_eq!(
            Refused::of(StatusCode::BAD_GATEWAY, "GET /x", "oops").code,
            1
        );
    }
}
