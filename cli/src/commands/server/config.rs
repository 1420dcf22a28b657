//! `leoflow server`'s configuration: a YAML file (`--config`), every key also a flag and a
//! `LEOFLOW_<KEY>` environment variable (the Helm chart's way), secrets also from files
//! (`<key>_file`, `LEOFLOW_<KEY>_FILE`). Flags and the environment win over the file, the file
//! over the defaults. Everything is checked before anything starts: an unknown key is refused
//! with its line, a missing datastore is named with the four ways to give it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use leoflow_api::auth::TrustedProxies;
use leoflow_authoring::config::parse_duration;
use leoflow_postgres::datastore::mask_url;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

mod agent_tls;
mod kubernetes;
pub use agent_tls::AgentTlsFlags;
pub use kubernetes::{KubernetesConfig, KubernetesFlags};

use crate::agent_tls::AgentTls;

/// Which parts of the control plane a replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The API, the UI and the scheduler (one process does everything).
    #[default]
    All,
    /// The API and the UI only: scaled apart from the scheduler.
    Api,
    /// The scheduler (leader election, the reactor, the agents' gRPC service) only.
    Scheduler,
}

impl Role {
    /// As the configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Scheduler => "scheduler",
        }
    }

    /// Whether this role runs the scheduler (and the agents' gRPC service).
    pub fn runs_scheduler(self) -> bool {
        matches!(self, Role::All | Role::Scheduler)
    }

    /// Whether this role serves the UI and the API.
    pub fn runs_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }
}

/// Where tries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerExecutor {
    /// A pod per try (Pro's executor).
    #[default]
    Kubernetes,
    /// A child process per try on the server's own host: no isolation between tasks and the
    /// control plane, so only with `--allow-unsandboxed` (tests, development).
    Subprocess,
}

impl ServerExecutor {
    /// The executor's name in `/api/v2/config` (API replicas report the deployment's).
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Kubernetes => leoflow_api::KUBERNETES_EXECUTOR,
            Self::Subprocess => leoflow_api::SUBPROCESS_EXECUTOR,
        }
    }
}

/// The flags of `leoflow server`; each is also `LEOFLOW_<NAME>`. The database URL is the
/// global `--database-url` / `LEOFLOW_DATABASE_URL` every command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerFlags {
    /// The configuration file (YAML).
    #[arg(long, env = "LEOFLOW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which parts this replica runs.
    #[arg(long, env = "LEOFLOW_ROLE", value_enum)]
    pub role: Option<Role>,
    /// The address the ports listen on.
    #[arg(long, env = "LEOFLOW_HOST", value_name = "ADDRESS")]
    pub host: Option<String>,
    /// The HTTP port (the UI and /api/v2).
    #[arg(long, env = "LEOFLOW_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// The agents' gRPC port.
    #[arg(long, env = "LEOFLOW_GRPC_PORT", value_name = "PORT")]
    pub grpc_port: Option<u16>,
    /// The Prometheus metrics port.
    #[arg(long, env = "LEOFLOW_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// A file holding the database URL (a mounted Secret).
    #[arg(long, env = "LEOFLOW_DATABASE_URL_FILE", value_name = "FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Connections in the database pool.
    #[arg(long, env = "LEOFLOW_DATABASE_POOL_SIZE", value_name = "N")]
    pub database_pool_size: Option<u32>,
    /// The longest a statement may run, e.g. `30s` or `2m`.
    #[arg(
        long,
        env = "LEOFLOW_DATABASE_STATEMENT_TIMEOUT",
        value_name = "DURATION"
    )]
    pub database_statement_timeout: Option<String>,
    /// The Redis URL: `redis://`, `rediss://` (TLS) or `redis+sentinel://` (Sentinel).
    #[arg(
        long,
        env = "LEOFLOW_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// A file holding the Redis URL (a mounted Secret).
    #[arg(long, env = "LEOFLOW_REDIS_URL_FILE", value_name = "FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// The address agents dial, HOST:PORT (a Service in front of the replicas; default this
    /// replica's own gRPC address).
    #[arg(long, env = "LEOFLOW_ADVERTISE_GRPC", value_name = "HOST:PORT")]
    pub advertise_grpc: Option<String>,
    /// The Airflow UI's files, as `leoflow setup` installs them under `$LEOFLOW_HOME/ui` (the
    /// container image bakes them in); without it the server serves the API only.
    #[arg(long, env = "LEOFLOW_UI_DIR", value_name = "DIR")]
    pub ui_dir: Option<PathBuf>,
    /// Task log lines older than this are deleted by the leader, e.g. `30d` (`0`: kept forever).
    #[arg(long, env = "LEOFLOW_LOG_RETENTION", value_name = "DURATION")]
    pub log_retention: Option<String>,
    /// An OpenTelemetry collector to send traces to over OTLP/gRPC, `http://HOST:PORT`
    /// (traces are off without it). Agents send theirs there too.
    #[arg(long, env = "LEOFLOW_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Tries waiting for a dispatch worker before the scheduler holds back (backpressure).
    #[arg(long, env = "LEOFLOW_DISPATCH_BUFFER", value_name = "N")]
    pub dispatch_buffer: Option<usize>,
    /// Workers handing tries to the executor.
    #[arg(long, env = "LEOFLOW_DISPATCH_WORKERS", value_name = "N")]
    pub dispatch_workers: Option<usize>,
    /// Where tries run.
    #[arg(long, env = "LEOFLOW_EXECUTOR", value_enum)]
    pub executor: Option<ServerExecutor>,
    /// Allow `--executor subprocess` (tasks run unisolated on the server's host).
    #[arg(long, env = "LEOFLOW_ALLOW_UNSANDBOXED")]
    pub allow_unsandboxed: bool,
    /// The keys replicas share (session signing, secret encryption), mode 0600.
    #[arg(long, env = "LEOFLOW_KEYS_FILE", value_name = "FILE")]
    pub keys_file: Option<PathBuf>,
    /// The file holding the admin's password (`auth.mode: admin`).
    #[arg(long, env = "LEOFLOW_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Where people reach this deployment, e.g. `https://leoflow.example.com` (single
    /// sign-on's callback is under it).
    #[arg(long, env = "LEOFLOW_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// How people sign in: `admin` (one admin, a password) or `oidc` (an OpenID provider).
    #[arg(long = "auth-mode", env = "LEOFLOW_AUTH_MODE", value_enum)]
    pub auth_mode: Option<AuthMode>,
    /// The proxies (load balancers, ingresses) whose `X-Forwarded-For` names the client, as
    /// IP addresses or CIDR blocks, comma-separated: `10.0.0.0/8,fd00::/8`.
    #[arg(
        long = "auth-trusted-proxies",
        env = "LEOFLOW_AUTH_TRUSTED_PROXIES",
        value_name = "ADDRESSES"
    )]
    pub auth_trusted_proxies: Option<String>,
    #[command(flatten)]
    pub oidc: OidcFlags,
    #[command(flatten)]
    pub kubernetes: KubernetesFlags,
    #[command(flatten)]
    pub agent_tls: AgentTlsFlags,
}

/// The `auth.oidc.*` keys as flags and `LEOFLOW_AUTH_OIDC_*` variables.
#[derive(Debug, Clone, Default, Args)]
pub struct OidcFlags {
    /// The OpenID provider's issuer URL.
    #[arg(
        long = "auth-oidc-issuer",
        env = "LEOFLOW_AUTH_OIDC_ISSUER",
        value_name = "URL"
    )]
    pub issuer: Option<String>,
    /// Leoflow's client id at the provider.
    #[arg(
        long = "auth-oidc-client-id",
        env = "LEOFLOW_AUTH_OIDC_CLIENT_ID",
        value_name = "ID"
    )]
    pub client_id: Option<String>,
    /// A file holding the client's secret (a mounted Secret).
    #[arg(
        long = "auth-oidc-client-secret-file",
        env = "LEOFLOW_AUTH_OIDC_CLIENT_SECRET_FILE",
        value_name = "FILE"
    )]
    pub client_secret_file: Option<PathBuf>,
    /// The scopes a sign-in asks for, space- or comma-separated (`openid` is always asked).
    #[arg(
        long = "auth-oidc-scopes",
        env = "LEOFLOW_AUTH_OIDC_SCOPES",
        value_name = "SCOPES"
    )]
    pub scopes: Option<String>,
    /// The claim holding groups or roles (default `groups`; dotted for nested claims).
    #[arg(
        long = "auth-oidc-roles-claim",
        env = "LEOFLOW_AUTH_OIDC_ROLES_CLAIM",
        value_name = "CLAIM"
    )]
    pub roles_claim: Option<String>,
    /// The claim holding the tenant (default `tenant`).
    #[arg(
        long = "auth-oidc-tenant-claim",
        env = "LEOFLOW_AUTH_OIDC_TENANT_CLAIM",
        value_name = "CLAIM"
    )]
    pub tenant_claim: Option<String>,
    /// Claim values → Airflow roles, as JSON: `{"platform": "Admin", "team-a": {"role": "User", "tenant": "a"}}`.
    #[arg(
        long = "auth-oidc-role-map",
        env = "LEOFLOW_AUTH_OIDC_ROLE_MAP",
        value_name = "JSON"
    )]
    pub role_map: Option<String>,
    /// The audience machines' access tokens carry (default: the client id).
    #[arg(
        long = "auth-oidc-audience",
        env = "LEOFLOW_AUTH_OIDC_AUDIENCE",
        value_name = "AUDIENCE"
    )]
    pub audience: Option<String>,
    /// The provider's public client `leoflow login` signs people in with (the device flow);
    /// without it, the CLI logs in with machine tokens only.
    #[arg(
        long = "auth-oidc-cli-client-id",
        env = "LEOFLOW_AUTH_OIDC_CLI_CLIENT_ID",
        value_name = "ID"
    )]
    pub cli_client_id: Option<String>,
}

/// How people sign in to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// One admin with a password (`admin_password_file`).
    #[default]
    Admin,
    /// Single sign-on through an OpenID provider (`auth.oidc.*`).
    Oidc,
}

/// The file's `auth:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    mode: Option<AuthMode>,
    oidc: Option<OidcFile>,
    trusted_proxies: Option<Addresses>,
}

/// Addresses as a list or as one comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Addresses {
    List(Vec<String>),
    Text(String),
}

/// The file's `auth.oidc:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcFile {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    scopes: Option<Scopes>,
    roles_claim: Option<String>,
    tenant_claim: Option<String>,
    role_map: Option<serde_json::Value>,
    audience: Option<String>,
    cli_client_id: Option<String>,
}

/// Scopes as a list or as one string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Text(String),
}

impl Scopes {
    fn into_list(self) -> Vec<String> {
        match self {
            Scopes::List(list) => list,
            Scopes::Text(text) => split_scopes(&text),
        }
    }
}

fn split_scopes(text: &str) -> Vec<String> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The configuration file: the same keys as the flags, in snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    role: Option<Role>,
    host: Option<String>,
    http_port: Option<u16>,
    grpc_port: Option<u16>,
    metrics_port: Option<u16>,
    database_url: Option<String>,
    database_url_file: Option<PathBuf>,
    database_pool_size: Option<u32>,
    database_statement_timeout: Option<String>,
    redis_url: Option<String>,
    redis_url_file: Option<PathBuf>,
    advertise_grpc: Option<String>,
    ui_dir: Option<PathBuf>,
    log_retention: Option<String>,
    otlp_endpoint: Option<String>,
    dispatch_buffer: Option<usize>,
    dispatch_workers: Option<usize>,
    executor: Option<ServerExecutor>,
    allow_unsandboxed: Option<bool>,
    keys_file: Option<PathBuf>,
    admin_password_file: Option<PathBuf>,
    base_url: Option<String>,
    auth: Option<AuthFile>,
    kubernetes: Option<kubernetes::KubernetesFile>,
    agent_tls: Option<agent_tls::AgentTlsFile>,
    allow_plaintext_agents: Option<bool>,
}

/// A URL holding a password: shown only masked (in `--check-config`, logs and errors).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL itself, password and all: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_url(&self.0))
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&mask_url(&self.0))
    }
}

/// The checked configuration a server starts from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// Which parts this replica runs.
    pub role: Role,
    /// The address the ports listen on.
    pub host: String,
    /// The HTTP port.
    pub http_port: u16,
    /// The agents' gRPC port.
    pub grpc_port: u16,
    /// The metrics port.
    pub metrics_port: u16,
    /// The database.
    pub database_url: SecretUrl,
    /// Connections in the database pool.
    pub database_pool_size: u32,
    /// The longest a statement may run.
    #[serde(with = "seconds")]
    pub database_statement_timeout: Duration,
    /// Redis: required of `leoflow server` (its replicas share sessions, signs of life and
    /// large XCom values through it); `None` only for `leoflow demo`, one replica on one host,
    /// which keeps them in the process.
    pub redis_url: Option<SecretUrl>,
    /// The address agents dial, if not this replica's own.
    pub advertise_grpc: Option<String>,
    /// The Airflow UI's files.
    pub ui_dir: Option<PathBuf>,
    /// Task log lines older than this are pruned; `None`: kept forever.
    #[serde(with = "optional_seconds")]
    pub log_retention: Option<Duration>,
    /// The OpenTelemetry collector traces go to; `None`: no traces.
    pub otlp_endpoint: Option<String>,
    /// Tries waiting for a dispatch worker before the scheduler holds back.
    pub dispatch_buffer: usize,
    /// Workers handing tries to the executor.
    pub dispatch_workers: usize,
    /// Where tries run.
    pub executor: ServerExecutor,
    /// The pod executor's settings (with `executor: kubernetes`).
    pub kubernetes: Option<KubernetesConfig>,
    /// TLS on the agents' gRPC channel; `None`: plain gRPC.
    pub agent_tls: Option<AgentTls>,
    /// Plain gRPC to agents beyond loopback is allowed (a trusted network).
    pub allow_plaintext_agents: bool,
    /// The shared keys' file.
    pub keys_file: Option<PathBuf>,
    /// The admin password's file.
    pub admin_password_file: Option<PathBuf>,
    /// Where people reach this deployment.
    pub base_url: Option<String>,
    /// How people sign in.
    pub auth: AuthConfig,
    /// The proxies whose `X-Forwarded-For` names a request's client (shown under the key's
    /// own name: it is set beside `auth.mode` whatever the mode).
    #[serde(rename = "auth.trusted_proxies")]
    pub trusted_proxies: TrustedProxies,
}

/// How people sign in, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum AuthConfig {
    /// One admin with a password.
    Admin,
    /// Single sign-on.
    Oidc(Box<OidcConfig>),
}

/// `auth.oidc.*`, checked (the client secret is read from its file when the server starts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OidcConfig {
    /// The provider's issuer URL.
    pub issuer: String,
    /// Leoflow's client id.
    pub client_id: String,
    /// The file holding the client secret.
    pub client_secret_file: PathBuf,
    /// The scopes a sign-in asks for.
    pub scopes: Vec<String>,
    /// The claim holding groups or roles.
    pub roles_claim: String,
    /// The claim holding the tenant.
    pub tenant_claim: String,
    /// Claim values → roles, as given.
    pub role_map: serde_json::Value,
    /// The audience machines' access tokens carry.
    pub audience: String,
    /// The public client of `leoflow login`'s device flow, if any.
    pub cli_client_id: Option<String>,
}

impl OidcConfig {
    /// The API's settings, reading the client secret from its file.
    pub fn settings(&self, base_url: &str) -> Result<leoflow_api::oidc::OidcSettings, ConfigError> {
        let role_map = leoflow_api::oidc::claims::RoleMap::from_value(self.role_map.clone())
            .map_err(|e| key_error("auth.oidc.role_map", e))?;
        Ok(leoflow_api::oidc::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: read_secret("auth.oidc.client_secret_file", &self.client_secret_file)?,
            scopes: self.scopes.clone(),
            roles_claim: self.roles_claim.clone(),
            tenant_claim: self.tenant_claim.clone(),
            role_map,
            audience: self.audience.clone(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            cli_client_id: self.cli_client_id.clone(),
        })
    }
}

mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs_f64()))
    }
}

mod optional_seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::seconds::serialize(d, s),
            None => s.serialize_str("forever"),
        }
    }
}

/// What is wrong with a configuration, naming the key (and the file's line when it has one).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML for the server, or holds an unknown key.
    #[error("{path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// The line, when the parser knows it.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A key's value is wrong.
    #[error("{key}: {message}")]
    Key {
        /// The key, as the file spells it.
        key: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn key_error(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key,
        message: message.into(),
    }
}

impl ServerConfig {
    /// A server of every role on one host, as `leoflow demo` runs it: on loopback at `ports`
    /// (HTTP, gRPC, metrics), no Redis, tasks as subprocesses, the admin's login, the database
    /// described by `database` (the caller opens its pool), the UI in `ui_dir`.
    pub fn one_host(database: &str, ports: [u16; 3], ui_dir: Option<PathBuf>) -> Self {
        Self {
            role: Role::All,
            host: "127.0.0.1".into(),
            http_port: ports[0],
            grpc_port: ports[1],
            metrics_port: ports[2],
            database_url: SecretUrl(database.to_owned()),
            database_pool_size: 10,
            database_statement_timeout: statement_timeout(None).expect("the default"),
            redis_url: None,
            advertise_grpc: None,
            ui_dir,
            log_retention: log_retention(None).expect("the default"),
            otlp_endpoint: std::env::var("LEOFLOW_OTLP_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty()),
            dispatch_buffer: 1000,
            dispatch_workers: 8,
            executor: ServerExecutor::Subprocess,
            kubernetes: None,
            agent_tls: None,
            allow_plaintext_agents: false,
            keys_file: None,
            admin_password_file: None,
            base_url: None,
            auth: AuthConfig::Admin,
            trusted_proxies: TrustedProxies::default(),
        }
    }

    /// The configuration from `flags` (with the environment clap read into them), the global
    /// database URL, and the file they name.
    pub fn load(flags: &ServerFlags, database_url: Option<&str>) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(flags, database_url, file)
    }

    fn merge(
        flags: &ServerFlags,
        database_url: Option<&str>,
        file: FileConfig,
    ) -> Result<Self, ConfigError> {
        let database_url = secret(
            "database_url",
            database_url.map(str::to_owned),
            flags.database_url_file.as_deref(),
            file.database_url,
            file.database_url_file.as_deref(),
        )?;
        let redis_url = secret(
            "redis_url",
            flags.redis_url.clone(),
            flags.redis_url_file.as_deref(),
            file.redis_url,
            file.redis_url_file.as_deref(),
        )?;
        let auth = file.auth.unwrap_or_default();
        let trusted_proxies = trusted_proxies(flags, auth.trusted_proxies.clone())?;
        let executor = flags.executor.or(file.executor).unwrap_or_default();
        let kubernetes_file = file.kubernetes.unwrap_or_default();
        let timeout = flags
            .database_statement_timeout
            .clone()
            .or(file.database_statement_timeout);
        let config = Self {
            role: flags.role.or(file.role).unwrap_or_default(),
            host: flags
                .host
                .clone()
                .or(file.host)
                .unwrap_or_else(|| "0.0.0.0".into()),
            http_port: flags.http_port.or(file.http_port).unwrap_or(8080),
            grpc_port: flags.grpc_port.or(file.grpc_port).unwrap_or(9091),
            metrics_port: flags.metrics_port.or(file.metrics_port).unwrap_or(9090),
            database_url: check_database_url(database_url)?,
            database_pool_size: flags
                .database_pool_size
                .or(file.database_pool_size)
                .unwrap_or(10),
            database_statement_timeout: statement_timeout(timeout.as_deref())?,
            redis_url: Some(check_redis_url(redis_url)?),
            advertise_grpc: flags.advertise_grpc.clone().or(file.advertise_grpc),
            ui_dir: flags.ui_dir.clone().or(file.ui_dir),
            log_retention: log_retention(
                flags
                    .log_retention
                    .clone()
                    .or(file.log_retention)
                    .as_deref(),
            )?,
            otlp_endpoint: flags
                .otlp_endpoint
                .clone()
                .or(file.otlp_endpoint)
                .filter(|e| !e.trim().is_empty()),
            dispatch_buffer: flags
                .dispatch_buffer
                .or(file.dispatch_buffer)
                .unwrap_or(1000),
            dispatch_workers: flags
                .dispatch_workers
                .or(file.dispatch_workers)
                .unwrap_or(8),
            executor,
            kubernetes: None,
            agent_tls: agent_tls::agent_tls(&flags.agent_tls, file.agent_tls)?,
            allow_plaintext_agents: flags.agent_tls.allow_plaintext_agents
                || file.allow_plaintext_agents == Some(true),
            keys_file: flags.keys_file.clone().or(file.keys_file),
            admin_password_file: flags
                .admin_password_file
                .clone()
                .or(file.admin_password_file),
            base_url: flags.base_url.clone().or(file.base_url),
            auth: auth_config(flags, auth)?,
            trusted_proxies,
        };
        let allow_unsandboxed = flags.allow_unsandboxed || file.allow_unsandboxed == Some(true);
        config.check(allow_unsandboxed)?;
        agent_tls::check_agent_channel(&config)?;
        let mut config = config;
        // An API replica dispatches nothing: it names the executor, and needs no more of it.
        if executor == ServerExecutor::Kubernetes && config.role.runs_scheduler() {
            config.kubernetes = Some(kubernetes::kubernetes_config(
                &flags.kubernetes,
                kubernetes_file,
            )?);
            config.check_pods_reach_it()?;
        }
        Ok(config)
    }

    /// Task pods need an address of the control plane they can dial.
    fn check_pods_reach_it(&self) -> Result<(), ConfigError> {
        if self.advertise_grpc.is_none() && self.role.runs_scheduler() {
            return Err(key_error(
                "advertise_grpc",
                "missing: task pods dial the control plane there (the scheduler Service's \
                 HOST:PORT, e.g. leoflow-scheduler.leoflow.svc:9091)",
            ));
        }
        Ok(())
    }

    /// The checks across keys.
    fn check(&self, allow_unsandboxed: bool) -> Result<(), ConfigError> {
        if self.executor == ServerExecutor::Subprocess && !allow_unsandboxed {
            return Err(key_error(
                "executor",
                "subprocess runs tasks unisolated on the server's host; it needs \
                 allow_unsandboxed: true (--allow-unsandboxed, LEOFLOW_ALLOW_UNSANDBOXED), \
                 for tests and development only",
            ));
        }
        if self.host.parse::<std::net::IpAddr>().is_err() {
            return Err(key_error(
                "host",
                format!("{:?} is not an IP address (e.g. 0.0.0.0 or ::)", self.host),
            ));
        }
        let ports = [
            ("http_port", self.http_port),
            ("grpc_port", self.grpc_port),
            ("metrics_port", self.metrics_port),
        ];
        for (i, (key, port)) in ports.iter().enumerate() {
            if *port == 0 {
                return Err(key_error(key, "port 0 is not a port to serve on"));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(key_error(key, format!("port {port} is also {other}")));
            }
        }
        if self.database_pool_size == 0 {
            return Err(key_error("database_pool_size", "must be at least 1"));
        }
        if self.dispatch_buffer == 0 {
            return Err(key_error("dispatch_buffer", "must be at least 1"));
        }
        if !(1..=256).contains(&self.dispatch_workers) {
            return Err(key_error("dispatch_workers", "must be from 1 to 256"));
        }
        if let Some(address) = &self.advertise_grpc {
            check_host_port(address)?;
        }

        if let Some(base_url) = &self.base_url {
            check_base_url(base_url)?;
        }
        if let AuthConfig::Oidc(oidc) = &self.auth {
            if self.base_url.is_none() && self.role.runs_api() {
                return Err(key_error(
                    "base_url",
                    "missing: single sign-on needs the URL people reach Leoflow at (the \
                     provider sends them back to {base_url}/auth/oidc/callback); set base_url, \
                     --base-url or LEOFLOW_BASE_URL",
                ));
            }
            leoflow_api::oidc::check_issuer(&oidc.issuer)
                .map_err(|e| key_error("auth.oidc.issuer", e))?;
            leoflow_api::oidc::claims::RoleMap::from_value(oidc.role_map.clone())
                .map_err(|e| key_error("auth.oidc.role_map", e))?;
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            leoflow_telemetry::export::check_endpoint(endpoint)
                .map_err(|e| key_error("otlp_endpoint", e.to_string()))?;
        }
        Ok(())
    }
}

/// `auth.*` from the flags over the file; `oidc` needs its issuer, client id and secret file.
fn auth_config(flags: &ServerFlags, file: AuthFile) -> Result<AuthConfig, ConfigError> {
    let mode = flags.auth_mode.or(file.mode).unwrap_or_default();
    let oidc_file = file.oidc.unwrap_or_default();
    if mode == AuthMode::Admin {
        return Ok(AuthConfig::Admin);
    }
    let f = &flags.oidc;
    let required = |key: &'static str, value: Option<String>| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            let env = key.replace('.', "_").to_uppercase();
            key_error(
                key,
                format!("missing: auth.mode oidc needs it; set {key} or LEOFLOW_{env}"),
            )
        })
    };
    let role_map = match &f.role_map {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            key_error(
                "auth.oidc.role_map",
                format!("LEOFLOW_AUTH_OIDC_ROLE_MAP is not JSON: {e}"),
            )
        })?,
        None => oidc_file.role_map.unwrap_or(serde_json::json!({})),
    };
    let client_id = required(
        "auth.oidc.client_id",
        f.client_id.clone().or(oidc_file.client_id),
    )?;
    Ok(AuthConfig::Oidc(Box::new(OidcConfig {
        issuer: required("auth.oidc.issuer", f.issuer.clone().or(oidc_file.issuer))?,
        client_secret_file: f
            .client_secret_file
            .clone()
            .or(oidc_file.client_secret_file)
            .ok_or_else(|| {
                key_error(
                    "auth.oidc.client_secret_file",
                    "missing: auth.mode oidc needs the file holding the client secret; set \
                     auth.oidc.client_secret_file or LEOFLOW_AUTH_OIDC_CLIENT_SECRET_FILE",
                )
            })?,
        scopes: f
            .scopes
            .as_deref()
            .map(split_scopes)
            .or(oidc_file.scopes.map(Scopes::into_list))
            .unwrap_or_else(|| split_scopes("openid profile email")),
        roles_claim: f
            .roles_claim
            .clone()
            .or(oidc_file.roles_claim)
            .unwrap_or_else(|| "groups".into()),
        tenant_claim: f
            .tenant_claim
            .clone()
            .or(oidc_file.tenant_claim)
            .unwrap_or_else(|| "tenant".into()),
        role_map,
        audience: f
            .audience
            .clone()
            .or(oidc_file.audience)
            .unwrap_or_else(|| client_id.clone()),
        cli_client_id: f.cli_client_id.clone().or(oidc_file.cli_client_id),
        client_id,
    })))
}

/// `auth.trusted_proxies` from the flag (or its variable) over the file; empty by default,
/// when `X-Forwarded-For` is not read. A malformed entry is refused: trusting less than meant
/// would record and limit every client as the proxy's address.
fn trusted_proxies(
    flags: &ServerFlags,
    file: Option<Addresses>,
) -> Result<TrustedProxies, ConfigError> {
    let entries: Vec<String> = match (flags.auth_trusted_proxies.clone(), file) {
        (Some(text), _) | (None, Some(Addresses::Text(text))) => {
            text.split(',').map(str::to_owned).collect()
        }
        (None, Some(Addresses::List(list))) => list,
        (None, None) => Vec::new(),
    };
    TrustedProxies::parse(entries.iter().map(String::as_str))
        .map_err(|e| key_error("auth.trusted_proxies", e))
}

/// `base_url` must be an absolute http(s) URL without a query.
fn check_base_url(url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#']) => {
            Ok(())
        }
        _ => Err(key_error(
            "base_url",
            format!("{url:?} is not an absolute http(s) URL such as https://leoflow.example.com"),
        )),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_norway::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        line: e.location().map(|l| l.line()),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// A secret given at most one way at each level: flags and the environment (a value or a
/// file), then the configuration file (a value or a file).
fn secret(
    key: &'static str,
    value: Option<String>,
    value_file: Option<&Path>,
    in_file: Option<String>,
    in_file_file: Option<&Path>,
) -> Result<String, ConfigError> {
    let env = key.to_uppercase();
    match (value, value_file, in_file, in_file_file) {
        (Some(_), Some(_), _, _) => Err(key_error(
            key,
            format!("given both as LEOFLOW_{env} and LEOFLOW_{env}_FILE; give one"),
        )),
        (Some(value), None, _, _) => Ok(value),
        (None, Some(path), _, _) => read_secret(key, path),
        (None, None, Some(_), Some(_)) => Err(key_error(
            key,
            format!("the file gives both {key} and {key}_file"),
        )),
        (None, None, Some(value), None) => Ok(value),
        (None, None, None, Some(path)) => read_secret(key, path),
        (None, None, None, None) => Err(key_error(
            key,
            format!(
                "missing: Pro never falls back to a local datastore; set {key} (or {key}_file) \
                 in the configuration, --{flag}, LEOFLOW_{env} or LEOFLOW_{env}_FILE",
                flag = key.replace('_', "-"),
            ),
        )),
    }
}

fn read_secret(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| key_error(key, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(key_error(key, format!("{} is empty", path.display())));
    }
    Ok(value.to_owned())
}

fn check_database_url(url: String) -> Result<SecretUrl, ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(key_error(
            "database_url",
            "must be a postgres:// or postgresql:// URL",
        ));
    }
    // sqlx reads sslmode, sslrootcert, the host list and the rest as it will when connecting.
    PgConnectOptions::from_str(&url)
        .map_err(|e| key_error("database_url", format!("not a usable Postgres URL: {e}")))?;
    Ok(SecretUrl(url))
}

fn check_redis_url(url: String) -> Result<SecretUrl, ConfigError> {
    super::datastores::RedisTarget::parse(&url).map_err(|e| key_error("redis_url", e))?;
    Ok(SecretUrl(url))
}

fn check_host_port(address: &str) -> Result<(), ConfigError> {
    let bad = || key_error("advertise_grpc", format!("{address:?} is not HOST:PORT"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// A duration as leoflow.yaml writes them (`30s`, `2m`, `1h30m`, plain seconds); default 60 s.
fn statement_timeout(text: Option<&str>) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(Duration::from_secs(60));
    };
    match parse_duration(text) {
        Ok(seconds) if seconds > 0.0 => Ok(Duration::from_secs_f64(seconds)),
        Ok(_) => Err(key_error(
            "database_statement_timeout",
            "must be longer than 0s",
        )),
        Err(message) => Err(key_error("database_statement_timeout", message)),
    }
}

/// The log retention: default 30 days, `0` keeps logs forever.
fn log_retention(text: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = text else {
        return Ok(Some(Duration::from_secs(30 * 86_400)));
    };
    match parse_duration(text) {
        Ok(0.0) => Ok(None),
        Ok(seconds) if seconds < 3600.0 => Err(key_error(
            "log_retention",
            "must be at least 1h (or 0 to keep task logs forever)",
        )),
        Ok(seconds) => Ok(Some(Duration::from_secs_f64(seconds))),
        Err(message) => Err(key_error("log_retention", message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "postgres://leoflow:pw@db.internal:5432/leoflow?sslmode=verify-full";
    const REDIS: &str = "rediss://:secret@redis.internal:6380/0";

    fn file(yaml: &str) -> (tempfile_dir::Dir, PathBuf) {
        let dir = tempfile_dir::Dir::new();
        let path = dir.path().join("server.yaml");
        std::fs::write(&path, yaml).unwrap();
        (dir, path)
    }

    fn flags_with(config: Option<PathBuf>) -> ServerFlags {
        ServerFlags {
            config,
            ..ServerFlags::default()
        }
    }

    /// Plain gRPC to agents on the default host, 0.0.0.0.
    fn plaintext_agents() -> AgentTlsFlags {
        AgentTlsFlags {
            allow_plaintext_agents: true,
            ..AgentTlsFlags::default()
        }
    }

    fn load(flags: &ServerFlags, db: Option<&str>) -> Result<ServerConfig, ConfigError> {
        ServerConfig::load(flags, db)
    }

    #[test]
    fn a_full_file_is_read_and_flags_override_it() {
        let (_dir, path) = file(&format!(
            "role: scheduler\nhttp_port: 8081\ndatabase_url: {DB}\nredis_url: {REDIS}\n\
             database_statement_timeout: 2m\nadvertise_grpc: leoflow-grpc.ns.svc:9091\n\
             kubernetes:\n  image: reg/task:1\n  namespaces: {{default: tasks, a: team-a}}\n\
             allow_plaintext_agents: true\n"
        ));
        let mut flags = flags_with(Some(path));
        flags.http_port = Some(8082);
        let config = load(&flags, None).unwrap();
        assert_eq!(config.role, Role::Scheduler);
        assert_eq!(config.http_port, 8082, "the flag wins over the file");
        assert_eq!((config.grpc_port, config.metrics_port), (9091, 9090));
        assert_eq!(config.database_statement_timeout, Duration::from_secs(120));
        assert_eq!(config.executor, ServerExecutor::Kubernetes);
        let pods = config
            .kubernetes
            .as_ref()
            .expect("the pod executor's settings");
        assert_eq!(
            (pods.image.as_str(), pods.namespaces.len()),
            ("reg/task:1", 2)
        );
        assert_eq!(config.database_url, SecretUrl(DB.into()));
        let shown = serde_norway::to_string(&config).unwrap();
        assert!(
            !shown.contains("secret") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let (_dir, path) = file(&format!(
            "database_url: {DB}\nredis_url: {REDIS}\nhttp_prot: 8080\n"
        ));
        let error = load(&flags_with(Some(path)), None).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("unknown field `http_prot`"), "{error}");
    }

    #[test]
    fn missing_datastores_are_named_with_the_ways_to_give_them() {
        let error = load(&ServerFlags::default(), None).unwrap_err().to_string();
        assert!(error.starts_with("database_url: missing"), "{error}");
        assert!(error.contains("LEOFLOW_DATABASE_URL_FILE"), "{error}");
        let error = load(&ServerFlags::default(), Some(DB))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("redis_url: missing"), "{error}");
        assert!(error.contains("--redis-url"), "{error}");
    }

    #[test]
    fn secrets_come_from_files_and_one_way_only() {
        let (dir, _) = file("");
        let secret = dir.path().join("redis-url");
        std::fs::write(&secret, format!("{REDIS}\n")).unwrap();
        let mut flags = ServerFlags {
            redis_url_file: Some(secret),
            executor: Some(ServerExecutor::Subprocess),
            allow_unsandboxed: true,
            agent_tls: plaintext_agents(),
            ..ServerFlags::default()
        };
        assert_eq!(
            load(&flags, Some(DB)).unwrap().redis_url,
            Some(SecretUrl(REDIS.into()))
        );
        flags.redis_url = Some(REDIS.into());
        let error = load(&flags, Some(DB)).unwrap_err().to_string();
        assert!(error.contains("give one"), "{error}");
        flags.redis_url = None;
        flags.redis_url_file = Some(dir.path().join("absent"));
        let error = load(&flags, Some(DB)).unwrap_err().to_string();
        assert!(error.starts_with("redis_url: cannot read"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let base = ServerFlags {
            redis_url: Some(REDIS.into()),
            ..ServerFlags::default()
        };
        let cases: Vec<(ServerFlags, Option<&str>, &str)> = vec![
            (base.clone(), Some("mysql://db/x"), "database_url: must be"),
            (
                base.clone(),
                Some("postgres://db/x?sslmode=sometimes"),
                "database_url: not a usable",
            ),
            (
                ServerFlags {
                    redis_url: Some("http://r:6379".into()),
                    ..base.clone()
                },
                Some(DB),
                "redis_url: scheme",
            ),
            (
                ServerFlags {
                    redis_url: Some("redis+sentinel://s:26379".into()),
                    ..base.clone()
                },
                Some(DB),
                "redis_url: a Sentinel URL names its master",
            ),
            (
                ServerFlags {
                    executor: Some(ServerExecutor::Subprocess),
                    ..base.clone()
                },
                Some(DB),
                "executor: subprocess",
            ),
            (
                ServerFlags {
                    grpc_port: Some(8080),
                    ..base.clone()
                },
                Some(DB),
                "grpc_port: port 8080 is also http_port",
            ),
            (
                ServerFlags {
                    host: Some("localhost:1".into()),
                    ..base.clone()
                },
                Some(DB),
                "host:",
            ),
            (
                ServerFlags {
                    advertise_grpc: Some("nohost".into()),
                    ..base.clone()
                },
                Some(DB),
                "advertise_grpc:",
            ),
            (
                ServerFlags {
                    log_retention: Some("10m".into()),
                    ..base.clone()
                },
                Some(DB),
                "log_retention: must be at least 1h",
            ),
            (
                ServerFlags {
                    dispatch_workers: Some(0),
                    ..base.clone()
                },
                Some(DB),
                "dispatch_workers: must be from 1 to 256",
            ),
            (
                ServerFlags {
                    otlp_endpoint: Some("https://collector:4317".into()),
                    ..base.clone()
                },
                Some(DB),
                "otlp_endpoint: OTLP endpoint \"https://collector:4317\": TLS to the collector is not supported",
            ),
            (
                ServerFlags {
                    otlp_endpoint: Some("collector:4317".into()),
                    ..base.clone()
                },
                Some(DB),
                "otlp_endpoint: OTLP endpoint \"collector:4317\" must be http://HOST:PORT",
            ),
            (
                ServerFlags {
                    database_statement_timeout: Some("soon".into()),
                    ..base.clone()
                },
                Some(DB),
                "database_statement_timeout:",
            ),
            (
                ServerFlags {
                    database_pool_size: Some(0),
                    ..base.clone()
                },
                Some(DB),
                "database_pool_size:",
            ),
        ];
        for (flags, db, expected) in cases {
            let error = load(&flags, db).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{expected:?} ≠ {error}");
        }
        let allowed = ServerFlags {
            executor: Some(ServerExecutor::Subprocess),
            allow_unsandboxed: true,
            agent_tls: plaintext_agents(),
            ..base
        };
        assert_eq!(
            load(&allowed, Some(DB)).unwrap().executor,
            ServerExecutor::Subprocess
        );
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_the_flag_and_a_malformed_one_is_refused() {
        let shown = |config: &ServerConfig| {
            serde_json::to_value(&config.trusted_proxies)
                .unwrap()
                .to_string()
        };
        let base = ServerFlags {
            redis_url: Some(REDIS.into()),
            role: Some(Role::Api),
            ..ServerFlags::default()
        };
        let config = load(&base, Some(DB)).unwrap();
        assert!(config.trusted_proxies.is_empty(), "none by default");

        let (_dir, path) = file(&format!(
            "database_url: {DB}
redis_url: {REDIS}
role: api
auth:
  trusted_proxies:
    - 10.0.0.0/8
    - ::1
    - fd00::/8
    - 192.0.2.7
"
        ));
        let from_file = load(&flags_with(Some(path.clone())), None).unwrap();
        assert_eq!(
            shown(&from_file),
            r#"["10.0.0.0/8","::1","fd00::/8","192.0.2.7"]"#
        );
        let printed = serde_norway::to_string(&from_file).unwrap();
        assert!(printed.contains("auth.trusted_proxies:"), "{printed}");
        // The flag (or LEOFLOW_AUTH_TRUSTED_PROXIES, which clap reads into it) wins, split at
        // commas.
        let flags = ServerFlags {
            auth_trusted_proxies: Some("172.16.0.0/12, 2001:db8::/32".into()),
            ..flags_with(Some(path))
        };
        assert_eq!(
            shown(&load(&flags, None).unwrap()),
            r#"["172.16.0.0/12","2001:db8::/32"]"#
        );
        let (_dir, path) = file(&format!(
            "database_url: {DB}\nredis_url: {REDIS}\nrole: api\nauth:\n  trusted_proxies: 10.0.0.0/8,10.1.2.3\n"
        ));
        assert_eq!(
            shown(&load(&flags_with(Some(path)), None).unwrap()),
            r#"["10.0.0.0/8","10.1.2.3"]"#,
            "one string, as the variable takes it"
        );

        for (bad, said) in [
            (
                "10.0.0.0/8,proxy.internal",
                "\"proxy.internal\" is not an IP address",
            ),
            (
                "10.0.0.0/40",
                "the prefix length must be a number from 0 to 32",
            ),
            ("10.1.0.0/8", "write 10.0.0.0/8"),
        ] {
            let flags = ServerFlags {
                auth_trusted_proxies: Some(bad.into()),
                ..base.clone()
            };
            let error = load(&flags, Some(DB)).unwrap_err().to_string();
            assert!(error.starts_with("auth.trusted_proxies: "), "{error}");
            assert!(error.contains(said), "{bad}: {error}");
        }
        let (_dir, path) = file(&format!(
            "database_url: {DB}\nredis_url: {REDIS}\nauth:\n  trusted_proxies: [10.0.0.0/8, 300.1.1.1]\n"
        ));
        let error = load(&flags_with(Some(path)), None).unwrap_err().to_string();
        assert!(
            error.starts_with("auth.trusted_proxies: \"300.1.1.1\""),
            "{error}"
        );
    }

    /// A temporary directory removed on drop (std only; the crate has no tempfile).
    mod tempfile_dir {
        use std::path::{Path, PathBuf};

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "leoflow-server-config-{}-{}",
                    std::process::id(),
                    uuid_like()
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }

            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }

        fn uuid_like() -> u64 {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed)
        }
    }
}
