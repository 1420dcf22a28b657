//! `leoflow tokens`: API tokens for machines (CI, GitOps) — issued, listed and revoked as
//! events, the secret shown once and never stored (see `leoflow_api::api_tokens`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{Duration, Utc};
use clap::{Subcommand, ValueEnum};
use leoflow_api::api_tokens;
use leoflow_api::permissions::Role;
use leoflow_events::catalog::{ApiTokenIssued, ApiTokenRevoked};
use leoflow_events::{AppendBatch, EventStore, ExpectedVersion, Metadata};
use leoflow_projector::ReadModels;
use leoflow_projector::read::api_tokens::{self as read, ApiTokenRecord};
use serde_json::json;

use crate::datastore::DatastoreArgs;

/// `leoflow tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token; it is printed once and cannot be shown again.
    Create {
        /// The Airflow role its bearer acts with.
        #[arg(long)]
        role: String,
        /// The tenant it acts in (`*`: every tenant).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A custom role it also holds (repeatable): it reaches the DAGs whose
        /// `access_control` names the role, as a sign-in mapped to it does.
        #[arg(long = "dag-role", value_name = "NAME")]
        dag_roles: Vec<String>,
        /// How long it holds, e.g. `30d`, `12h` (default: until revoked).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// What it is for (listed with it).
        #[arg(long)]
        description: Option<String>,
        /// `text`, or `json` (`{"id", "token"}`) for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the tokens issued (never their secrets).
    List {
        /// `text` or `json`.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Revoke a token: refused from then on, on every replica.
    Revoke {
        /// The token's id (as listed).
        id: String,
    },
}

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

/// Runs a `tokens` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: TokensCommand) -> Result<ExitCode> {
    let database = datastore.open().await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));
    match command {
        TokensCommand::Create {
            role,
            tenant,
            dag_roles,
            expires_in,
            description,
            output,
        } => {
            create(
                &store,
                role,
                tenant,
                dag_roles,
                expires_in,
                description,
                output,
            )
            .await
        }
        TokensCommand::List { output } => list(&store, output).await,
        TokensCommand::Revoke { id } => revoke(&store, &id).await,
    }
}

async fn create(
    store: &EventStore,
    role: String,
    tenant: String,
    dag_roles: Vec<String>,
    expires_in: Option<String>,
    description: Option<String>,
    output: Output,
) -> Result<ExitCode> {
    let role = role
        .parse::<Role>()
        .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    // `*`: every tenant (a platform admin's token).
    if tenant != leoflow_api::dag_access::ALL_TENANTS {
        leoflow_events::check_tenant(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    }
    let dag_roles = dag_roles_of(dag_roles)?;
    let expires_at = expires_in
        .map(|text| {
            let seconds = leoflow_authoring::config::parse_duration(&text)
                .map_err(|e| anyhow::anyhow!("--expires-in: {e}"))?;
            if seconds <= 0.0 {
                bail!("--expires-in must be longer than 0 s");
            }
            Ok(Utc::now() + Duration::milliseconds((seconds * 1000.0) as i64))
        })
        .transpose()?;
    let new = api_tokens::generate();
    let issued = ApiTokenIssued {
        token_id: new.id.clone(),
        role: role.name().to_owned(),
        tenant,
        digest: new.digest,
        expires_at,
        description,
        dag_roles,
    };
    let stream = format!("api-token:{}", new.id);
    store
        .append(
            AppendBatch::new()
                .expect(stream, ExpectedVersion::NoStream)
                .push(issued, &Metadata::actor("cli")),
        )
        .await
        .context("recording the token")?;
    match output {
        Output::Json => println!("{}", json!({"id": new.id, "token": new.token})),
        Output::Text => {
            println!("{}", new.token);
            eprintln!(
                "Token {} issued. It is shown this once: keep it where your CI keeps secrets.",
                new.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The custom roles of `--dag-role`, checked, sorted and without repeats (as a sign-in's are).
fn dag_roles_of(mut names: Vec<String>) -> Result<Vec<String>> {
    for name in &names {
        api_tokens::check_dag_role(name).map_err(|e| anyhow::anyhow!("--dag-role: {e}"))?;
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

async fn list(store: &EventStore, output: Output) -> Result<ExitCode> {
    let tokens = read::list(store.pool()).await?;
    match output {
        Output::Json => {
            let rows: Vec<_> = tokens.iter().map(listed).collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        Output::Text => {
            println!(
                "{:<17} {:<7} {:<12} {:<25} {:<25} {:<8} DAG ROLES",
                "ID", "ROLE", "TENANT", "CREATED", "EXPIRES", "STATE"
            );
            for token in &tokens {
                let when = |at: Option<chrono::DateTime<Utc>>| {
                    at.map_or("never".to_owned(), |at| {
                        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                    })
                };
                let dag_roles = if token.dag_roles.is_empty() {
                    "-".to_owned()
                } else {
                    token.dag_roles.join(",")
                };
                println!(
                    "{:<17} {:<7} {:<12} {:<25} {:<25} {:<8} {dag_roles}",
                    token.token_id,
                    token.role,
                    token.tenant,
                    when(Some(token.created_at)),
                    when(token.expires_at),
                    state(token)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn listed(token: &ApiTokenRecord) -> serde_json::Value {
    json!({
        "id": token.token_id,
        "role": token.role,
        "tenant": token.tenant,
        "dag_roles": token.dag_roles,
        "description": token.description,
        "created_by": token.created_by,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "state": state(token),
    })
}

fn state(token: &ApiTokenRecord) -> &'static str {
    if token.revoked_at.is_some() {
        "revoked"
    } else if token.expires_at.is_some_and(|at| at <= Utc::now()) {
        "expired"
    } else {
        "active"
    }
}

async fn revoke(store: &EventStore, id: &str) -> Result<ExitCode> {
    let Some(token) = read::find(store.pool(), id).await? else {
        bail!("no token {id:?} was issued (`leoflow tokens list` lists them)");
    };
    if token.revoked_at.is_some() {
        println!("Token {id} was already revoked.");
        return Ok(ExitCode::SUCCESS);
    }
    // Issued once, so its stream is at version 1 until this revocation.
    store
        .append(
            AppendBatch::new()
                .expect(format!("api-token:{id}"), ExpectedVersion::Exact(1))
                .push(
                    ApiTokenRevoked {
                        token_id: id.to_owned(),
                    },
                    &Metadata::actor("cli"),
                ),
        )
        .await
        .context("recording the revocation")?;
    println!("Token {id} revoked: it is refused from now on.");
    Ok(ExitCode::SUCCESS)
}
