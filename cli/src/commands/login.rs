//! `leoflow login` and `leoflow logout`: sign in to a server once, and keep its token in a
//! profile ([`crate::remote::profiles`]) that later commands use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use reqwest::Method;
use serde_json::json;

use crate::datastore::DatastoreArgs;
use crate::remote::profiles::{Profile, Profiles};
use crate::remote::{Refused, Remote, read_secret_file, server_url};

/// The profile `login` writes when none is named.
const DEFAULT_PROFILE: &str = "default";

/// `leoflow login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server (`https://leoflow.example.com`, `http://localhost:8088` for Lite).
    #[arg(long, value_name = "URL")]
    server: String,
    /// Sign in with this user's password (Lite, Demo, `auth.mode: admin`).
    #[arg(
        long,
        value_name = "USER",
        requires = "password_file",
        conflicts_with = "token_file"
    )]
    username: Option<String>,
    /// The file holding the password (its first line).
    #[arg(long, value_name = "FILE", requires = "username")]
    password_file: Option<PathBuf>,
    /// Use a machine token instead: a Leoflow API token (`leoflow tokens create`) or the
    /// provider's access token (Pro).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Signs in, checks the token against the server, and keeps it under the profile `--profile`
/// names (`default` if none), which becomes the current one.
pub async fn login(
    datastore: &DatastoreArgs,
    profile: Option<&str>,
    args: LoginArgs,
) -> Result<ExitCode> {
    let server = server_url(&args.server)?;
    let (token, username) = match (&args.username, &args.password_file, &args.token_file) {
        (Some(username), Some(file), None) => {
            let password = read_secret_file(file, "password file")?;
            (
                password_login(&server, username, &password).await?,
                Some(username.clone()),
            )
        }
        (None, None, Some(file)) => (read_secret_file(file, "token file")?, None),
        (None, None, None) => (device_login(&server).await?, None),
        _ => bail!(
            "say how to sign in: --username U --password-file F, --token-file F, or nothing \
             (a server with single sign-on signs you in through its provider)"
        ),
    };
    let remote = Remote::new(server.as_str(), &token)?;
    check_server(&remote).await?;
    // A request only a signed-in caller may make: a token the server does not take fails here.
    remote.get_json("/ui/auth/menus").await?;

    let name = profile.unwrap_or(DEFAULT_PROFILE).to_owned();
    let home = datastore.home();
    let mut profiles = Profiles::load(&home)?;
    profiles.profiles.insert(
        name.clone(),
        Profile {
            server: server.as_str().trim_end_matches('/').to_owned(),
            token,
            username: username.clone(),
        },
    );
    profiles.current = Some(name.clone());
    profiles.save(&home)?;
    let who = username.map(|u| format!(" as {u}")).unwrap_or_default();
    println!(
        "Logged in to {}{who}; profile {name:?} is current ({}).",
        remote.server(),
        Profiles::path(&home).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Forgets the token of the profile `--profile` names (default: the current one).
pub fn logout(datastore: &DatastoreArgs, profile: Option<&str>) -> Result<ExitCode> {
    let home = datastore.home();
    let mut profiles = Profiles::load(&home)?;
    let name = match profile.or(profiles.current.as_deref()) {
        Some(name) => name.to_owned(),
        None => bail!("not logged in: there is no current profile"),
    };
    if profiles.profiles.remove(&name).is_none() {
        profiles.get(&name)?;
    }
    if profiles.current.as_deref() == Some(name.as_str()) {
        profiles.current = None;
    }
    profiles.save(&home)?;
    println!("Forgot profile {name:?}.");
    Ok(ExitCode::SUCCESS)
}

/// How the server signs people in (`GET /leoflow/api/login`).
#[derive(Debug, serde::Deserialize)]
struct CliLogin {
    mode: String,
    issuer: Option<String>,
    client_id: Option<String>,
    audience: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Signs a person in through the server's provider with OAuth's device flow (RFC 8628): the
/// provider gives a code to confirm in a browser, and the CLI polls for the access token it
/// then issues for Leoflow's API.
async fn device_login(server: &url::Url) -> Result<String> {
    let http = reqwest::Client::new();
    let info: CliLogin = http
        .get(server.join("leoflow/api/login")?)
        .send()
        .await
        .context("the server did not answer")?
        .json()
        .await
        .context("the server does not say how it signs people in (is it a Leoflow?)")?;
    let (Some(issuer), Some(client_id)) = (info.issuer, info.client_id) else {
        return Err(Refused::unauthenticated(match info.mode.as_str() {
            "admin" => "this server signs in its admin with a password: give --username and \
                        --password-file"
                .to_owned(),
            _ => "this server names no client for the CLI (auth.oidc.cli_client_id): log in \
                  with a machine token (--token-file)"
                .to_owned(),
        })
        .into());
    };
    let discovery = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let metadata: serde_json::Value = http.get(&discovery).send().await?.json().await?;
    let (Some(device), Some(token)) = (
        metadata["device_authorization_endpoint"].as_str(),
        metadata["token_endpoint"].as_str(),
    ) else {
        bail!(
            "the provider {issuer} offers no device flow: log in with a machine token (--token-file)"
        );
    };
    let mut scopes = info.scopes.clone();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let mut asked = vec![
        ("client_id", client_id.clone()),
        ("scope", scopes.join(" ")),
    ];
    if let Some(audience) = &info.audience {
        asked.push(("resource", audience.clone()));
    }
    let grant: serde_json::Value = http.post(device).form(&asked).send().await?.json().await?;
    let (Some(device_code), Some(user_code)) =
        (grant["device_code"].as_str(), grant["user_code"].as_str())
    else {
        bail!("the provider refused to start a sign-in: {grant}");
    };
    let open = grant["verification_uri_complete"]
        .as_str()
        .or(grant["verification_uri"].as_str())
        .unwrap_or_default();
    println!("To sign in, open {open} and confirm the code {user_code}");
    let mut interval = grant["interval"].as_u64().unwrap_or(5);
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(grant["expires_in"].as_u64().unwrap_or(600));
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
            ),
            ("device_code", device_code.to_owned()),
            ("client_id", client_id.clone()),
        ];
        if let Some(audience) = &info.audience {
            form.push(("resource", audience.clone()));
        }
        let answer: serde_json::Value = http.post(token).form(&form).send().await?.json().await?;
        if let Some(access_token) = answer["access_token"].as_str() {
            return Ok(access_token.to_owned());
        }
        match answer["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += 5,
            Some(error) => {
                return Err(Refused::unauthenticated(format!(
                    "the provider ended the sign-in: {error} ({})",
                    answer["error_description"]
                        .as_str()
                        .unwrap_or("no description")
                ))
                .into());
            }
            None => bail!("the provider answered neither a token nor an error: {answer}"),
        }
        if std::time::Instant::now() > deadline {
            return Err(Refused::unauthenticated("the sign-in code expired: log in again").into());
        }
    }
}

/// Airflow's login of a user with a password: `POST /auth/token`.
async fn password_login(server: &url::Url, username: &str, password: &str) -> Result<String> {
    let url = server.join("auth/token")?;
    let response = reqwest::Client::new()
        .post(url.clone())
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .with_context(|| format!("{url}: the server did not answer"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => Err(Refused::unauthenticated(format!(
            "{url} refused the login of {username:?} ({status}): {}",
            body.get("detail")
                .map_or_else(|| "no detail".to_owned(), ToString::to_string)
        ))
        .into()),
    }
}

/// Checks that the server is a Leoflow (Airflow answers `/api/v2/version` too, without
/// `leoflow-` in its `git_version`), and warns when it runs another version than this CLI.
async fn check_server(remote: &Remote) -> Result<()> {
    let version = remote.send(Method::GET, "/api/v2/version", None).await?;
    let version: serde_json::Value = version.json().await.unwrap_or_default();
    let git = version["git_version"].as_str().unwrap_or_default();
    let Some(theirs) = git.strip_prefix("leoflow-") else {
        bail!(
            "{} is not a Leoflow server (its /api/v2/version says {version})",
            remote.server()
        );
    };
    let ours = env!("CARGO_PKG_VERSION");
    if theirs != ours {
        eprintln!(
            "warning: {} runs Leoflow {theirs}; this CLI is {ours}",
            remote.server()
        );
    }
    Ok(())
}
