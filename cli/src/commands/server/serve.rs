//! Running `leoflow server`: the control plane as one replica of a deployment.
//!
//! Start-up checks everything before it serves: the keys and the admin password, the ports,
//! Postgres (reachable, the schema exactly this binary's), Redis (answering). Then, by role:
//! the scheduler (a reactor that waits for the leader lock, the agents' gRPC service, the
//! executor) and the HTTP server (the UI and `/api/v2`). Every role serves Prometheus metrics,
//! `/healthz` and `/readyz` on the metrics port; the HTTP port also answers the probes.
//!
//! On SIGTERM (or Ctrl-C) the replica turns unready, hands leadership over (the reactor
//! resigns: a follower leads within its next poll), lets the HTTP server finish its requests
//! within [`HTTP_DRAIN`], and exits.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use leoflow_api::auth::Auth;
use leoflow_api::credentials::{Credentials, SharedKeys};
use leoflow_api::metrics::MetricsState;
use leoflow_api::oidc::Oidc;
use leoflow_api::probes::{Check, Readiness};
use leoflow_api::{ApiState, Settings, Ui};
use leoflow_authoring::python::PythonRuntime;
use leoflow_events::EventStore;
use leoflow_executors::AgentConfig;
use leoflow_executors::kubernetes::{Namespaces, PodConfig};
use leoflow_projector::{ReadModels, replay};
use leoflow_scheduler::control::Specs;
use leoflow_scheduler::janitor::Retention;
use leoflow_scheduler::reactor::Supervision;
use leoflow_scheduler::{Fallback, PostgresLiveness, SharedLiveness};
use leoflow_secrets::Vault;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::config::{AuthConfig, KubernetesConfig, ServerConfig, ServerExecutor};
use super::datastores::{Redis, Schema, open_postgres};
use super::shared_state::{RedisBlobs, RedisLiveness, RedisSessions};
use crate::control_plane::{ControlPlane, ControlPlaneOptions, ExecutorChoice};
use crate::stop::Stop;
use leoflow_scheduler::xcom_values::XComValues;

/// Time between passes of the log retention janitor.
const JANITOR_EVERY: Duration = Duration::from_secs(3600);

/// How long the HTTP server may take to finish its requests once asked to stop.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// Runs the server until SIGTERM or Ctrl-C (success), or until its scheduler fails.
pub async fn serve(config: ServerConfig) -> Result<ExitCode> {
    let secrets = ServerSecrets::load(&config)?;
    serve_with(config, secrets, None, None).await
}

/// [`serve`] with `secrets` made elsewhere and, when given, the database `pool` rather than
/// `database_url`'s and the `executor` rather than the configuration's (`leoflow demo`: Lite's
/// credentials file, a managed cluster, pods in its k3d cluster).
pub(crate) async fn serve_with(
    config: ServerConfig,
    secrets: ServerSecrets,
    pool: Option<PgPool>,
    executor: Option<ExecutorChoice>,
) -> Result<ExitCode> {
    let mut stop = Stop::install()?;
    let executor = match executor {
        Some(executor) => Some(executor),
        None => executor_choice(&config)?,
    };
    let ui = match config.role.runs_api() {
        true => installed_ui(config.ui_dir.as_deref())?,
        false => None,
    };
    let listeners = Listeners::bind(&config, executor.as_ref()).await?;
    let pool = match pool {
        Some(pool) => pool,
        None => open_postgres(&config).await?,
    };
    let schema_version = Schema::read(&pool)
        .await
        .context("reading the database's schema version")?
        .require_current()?;
    let redis = match &config.redis_url {
        Some(url) => Some(Redis::connect(url.expose()).await?),
        None => None,
    };
    replay::catch_up(&pool)
        .await
        .context("catching the read models up with the log")?;
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));
    let readiness = Arc::new(ServerReadiness {
        pool: pool.clone(),
        redis,
        draining: AtomicBool::new(false),
    });
    let settings = Arc::new(Settings::pro(config.executor.config_name()));
    // Without Redis (one replica), large XCom values are read with their rows and signs of
    // life are kept in the process.
    let xcom_values = match &readiness.redis {
        Some(redis) => XComValues::shared_through(Arc::new(RedisBlobs::new(redis.clone()))),
        None => XComValues::default(),
    };
    let mut control_plane = match (listeners.grpc, executor) {
        (Some(grpc), Some(executor)) => {
            let liveness = readiness.redis.as_ref().map(|redis| {
                Arc::new(Fallback {
                    primary: Arc::new(RedisLiveness::new(redis.clone())),
                    fallback: Arc::new(PostgresLiveness { pool: pool.clone() }),
                }) as Arc<dyn SharedLiveness>
            });
            let shared = Shared {
                liveness,
                xcom_values: xcom_values.clone(),
            };
            let options = control_plane_options(&config, &secrets, executor, shared).await?;
            Some(ControlPlane::start(store.clone(), grpc, options).await?)
        }
        _ => None,
    };
    let specs = control_plane
        .as_ref()
        .map(ControlPlane::specs)
        .unwrap_or_default();
    let http = match (listeners.http, &secrets.credentials) {
        (Some(listener), Some(credentials)) => {
            let mut auth = Auth::new(credentials.clone(), None)
                .with_trusted_proxies(config.trusted_proxies.clone());
            if let Some(redis) = &readiness.redis {
                auth = auth.with_shared(Arc::new(RedisSessions::new(redis.clone())));
            }
            let api = ApiState {
                xcom_values: xcom_values.clone(),
                oidc: single_sign_on(&config).await?,
                ..api_state(&store, specs, credentials, auth, settings.clone())
            };
            Some(Http::start(listener, api, ui.clone(), readiness.clone())?)
        }
        _ => None,
    };
    let metrics = serve_metrics(
        listeners.metrics,
        MetricsState {
            store: store.clone(),
            settings: settings.clone(),
            scheduler: control_plane.as_ref().map(ControlPlane::metrics),
            readiness: Some(readiness.clone()),
        },
        readiness.clone(),
    );
    print_banner(&config, schema_version, &listeners.addresses);
    let result = wait(&mut control_plane, &mut stop).await;
    // Unready first: the Service stops routing here while the rest winds down.
    readiness.draining.store(true, Ordering::Relaxed);
    let scheduler_stopped = async {
        if let Some(control_plane) = control_plane {
            control_plane.stop().await?;
        }
        anyhow::Ok(())
    };
    let http_stopped = async {
        if let Some(http) = http {
            http.stop().await;
        }
    };
    let (stopped, ()) = tokio::join!(scheduler_stopped, http_stopped);
    metrics.abort();
    pool.close().await;
    stopped?;
    result
}

/// The OpenID provider people sign in through (`auth.mode: oidc`), its metadata and keys
/// fetched once now: a provider that is down is warned about, not fatal (sign-ins try again).
async fn single_sign_on(config: &ServerConfig) -> Result<Option<Arc<Oidc>>> {
    let AuthConfig::Oidc(oidc) = &config.auth else {
        return Ok(None);
    };
    let base_url = config.base_url.as_deref().unwrap_or_default();
    let settings = oidc.settings(base_url)?;
    if settings.role_map.is_empty() {
        tracing::warn!(
            "auth.oidc.role_map maps no claim value to a role: everyone who signs in is Public \
             and can open nothing; map the provider's groups (claim {:?}) to Airflow's roles",
            settings.roles_claim
        );
    }
    let custom = settings.role_map.custom_roles();
    if !custom.is_empty() {
        tracing::info!(
            "custom roles (reaching the DAGs whose access_control names them): {}",
            custom.join(", ")
        );
    }
    let provider = Oidc::new(settings);
    match provider.discover().await {
        Ok(()) => tracing::info!("single sign-on through {}", oidc.issuer),
        Err(error) => tracing::warn!("{error}; sign-ins will try again"),
    }
    Ok(Some(Arc::new(provider)))
}

/// The keys every replica shares, and the admin login of the replicas that serve HTTP.
pub(crate) struct ServerSecrets {
    keys: SharedKeys,
    /// `None` for a scheduler-only replica (it has no login).
    credentials: Option<Credentials>,
}

impl ServerSecrets {
    /// The secrets of a one-host server kept as Lite keeps its own (`leoflow demo`): the
    /// admin's password hash and the keys in one credentials file.
    pub(crate) fn of(credentials: Credentials) -> Self {
        Self {
            keys: SharedKeys {
                token_signing_key: credentials.token_signing_key.clone(),
                master_key: credentials.connection_key.clone(),
                pending_master_key: credentials.pending_connection_key.clone(),
            },
            credentials: Some(credentials),
        }
    }

    fn load(config: &ServerConfig) -> Result<Self> {
        let Some(keys_file) = &config.keys_file else {
            bail!(
                "keys_file: missing. Replicas share their session and secret keys from one file: \
                 make it with `leoflow server keys generate -o FILE` and give it as keys_file, \
                 --keys-file or LEOFLOW_KEYS_FILE"
            );
        };
        let keys = SharedKeys::load(keys_file)?;
        let credentials = if config.role.runs_api() && config.auth != AuthConfig::Admin {
            // No one signs in with a password (`/auth/token` is off): an unguessable one,
            // never shown, keeps the session and secret keys in one place as in admin mode.
            let password = leoflow_api::credentials::generate_password();
            Some(Credentials::with_shared_keys(&password, keys.clone()))
        } else if config.role.runs_api() {
            let Some(password_file) = &config.admin_password_file else {
                bail!(
                    "admin_password_file: missing. With auth.mode admin, the server's login is \
                     one admin whose password is read from a file: give it as \
                     admin_password_file, --admin-password-file or LEOFLOW_ADMIN_PASSWORD_FILE \
                     (or sign people in through an OpenID provider: auth.mode oidc)"
                );
            };
            let password = read_password(password_file)?;
            Some(Credentials::with_shared_keys(&password, keys.clone()))
        } else {
            None
        };
        Ok(Self { keys, credentials })
    }
}

/// The admin password, read as `leoflow setup` reads one, at least 8 characters.
fn read_password(path: &std::path::Path) -> Result<String> {
    let password = crate::commands::setup::requested_password(Some(path))
        .context("admin_password_file")?
        .expect("a file was given");
    if password.chars().count() < 8 {
        bail!(
            "admin_password_file: {} holds a password shorter than 8 characters",
            path.display()
        );
    }
    Ok(password)
}

/// The executor of a scheduler replica, if this build can run it (`None` for an API
/// replica: it dispatches nothing).
fn executor_choice(config: &ServerConfig) -> Result<Option<ExecutorChoice>> {
    if !config.role.runs_scheduler() {
        return Ok(None);
    }
    match (config.executor, &config.kubernetes) {
        (ServerExecutor::Subprocess, _) => Ok(Some(ExecutorChoice::Subprocess)),
        (ServerExecutor::Kubernetes, Some(pods)) => Ok(Some(cluster(config, pods)?)),
        (ServerExecutor::Kubernetes, None) => bail!("executor: kubernetes needs kubernetes.*"),
    }
}

/// Pro's pod executor as the configuration describes it.
fn cluster(config: &ServerConfig, pods: &KubernetesConfig) -> Result<ExecutorChoice> {
    let advertised = config
        .advertise_grpc
        .as_deref()
        .expect("checked with kubernetes.*");
    let tls = config.agent_tls.as_ref();
    let agent = AgentConfig {
        program: pods.program.clone(),
        endpoint: crate::agent_tls::endpoint(tls, advertised),
        python: pods.python.clone(),
        sdk_path: pods.sdk_path.clone(),
        project_dir: Some(pods.project_dir.clone()),
        otlp_endpoint: config.otlp_endpoint.clone(),
        ca_file: tls.and_then(|tls| tls.ca_file.clone()),
    };
    // Each pod reads the CA from its attempt's Secret: the file is the control plane's.
    let agent_ca = match tls.and_then(|tls| tls.ca_file.as_ref()) {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("agent_tls.ca_file: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let pods_config = PodConfig {
        defaults: pods.pod_defaults(),
        agent_ca,
        max_pods_per_namespace: pods.max_pods_per_namespace,
        unschedulable_timeout: pods.unschedulable_timeout,
        ..PodConfig::new(
            Namespaces::PerTenant(pods.namespaces.clone()),
            &pods.image,
            agent,
        )
    };
    Ok(ExecutorChoice::Cluster {
        context: pods.context.clone(),
        pods: Box::new(pods_config),
    })
}

/// The ports this replica's role serves, bound before anything starts.
struct Listeners {
    http: Option<TcpListener>,
    grpc: Option<TcpListener>,
    metrics: TcpListener,
    addresses: Vec<(&'static str, SocketAddr)>,
}

impl Listeners {
    async fn bind(config: &ServerConfig, executor: Option<&ExecutorChoice>) -> Result<Self> {
        let host: IpAddr = config.host.parse().context("host")?;
        // Demo's k3d pods call the gRPC port through the container network's gateway, not
        // loopback (as Lite's do); agents must still present their attempt's token.
        let grpc_host = match executor {
            Some(ExecutorChoice::Pods { .. }) if host.is_loopback() => {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            }
            _ => host,
        };
        let role = config.role;
        let mut addresses = Vec::new();
        let mut bind_if = async |wanted: bool, port: u16, what: &'static str| {
            if !wanted {
                return Ok(None);
            }
            let at = if what == "grpc" { grpc_host } else { host };
            let listener = bind(at, port, what).await?;
            addresses.push((what, listener.local_addr()?));
            anyhow::Ok(Some(listener))
        };
        let http = bind_if(role.runs_api(), config.http_port, "http").await?;
        let grpc = bind_if(role.runs_scheduler(), config.grpc_port, "grpc").await?;
        let metrics = bind_if(true, config.metrics_port, "metrics")
            .await?
            .expect("every role serves metrics");
        Ok(Self {
            http,
            grpc,
            metrics,
            addresses,
        })
    }
}

async fn bind(host: IpAddr, port: u16, what: &str) -> Result<TcpListener> {
    let address = SocketAddr::new(host, port);
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot serve {what} on {address}: the port is taken or not allowed")
    })
}

/// What a scheduler replica shares with the others through Redis.
struct Shared {
    /// Agents' signs of life (Postgres while Redis is away); `None`: kept in the process.
    liveness: Option<Arc<dyn SharedLiveness>>,
    /// Large XCom values.
    xcom_values: XComValues,
}

/// The control plane of a scheduler replica.
async fn control_plane_options(
    config: &ServerConfig,
    secrets: &ServerSecrets,
    executor: ExecutorChoice,
    shared: Shared,
) -> Result<ControlPlaneOptions> {
    // Only the subprocess executor runs Python here: the interpreter and the SDK the
    // environment names (LEOFLOW_PYTHON, LEOFLOW_SDK_PATH). Pods have theirs in their image.
    let (python, supervision) = match &executor {
        ExecutorChoice::Cluster { pods, .. } => {
            let python = PythonRuntime {
                interpreter: pods.agent.python.clone(),
                sdk_path: pods.agent.sdk_path.clone(),
            };
            let start_timeout = config
                .kubernetes
                .as_ref()
                .map_or(Duration::ZERO, |k| k.start_timeout);
            let supervision = Supervision {
                start_timeout,
                ..Supervision::default()
            };
            (python, supervision)
        }
        _ => {
            let python = PythonRuntime::detect()
                .await
                .context("the subprocess executor needs Python and Leoflow's SDK")?;
            (python, Supervision::default())
        }
    };
    Ok(ControlPlaneOptions {
        project_dir: None,
        python,
        heartbeat_interval: Duration::from_secs(5),
        max_xcom_bytes: leoflow_scheduler::agents::DEFAULT_MAX_XCOM_BYTES,
        supervision,
        master_keys: Some(secrets.keys.master_keys()),
        executor,
        liveness: shared.liveness,
        log_retention: config.log_retention.map(|max_age| Retention {
            max_age,
            every: JANITOR_EVERY,
        }),
        dispatch: Some((config.dispatch_buffer, config.dispatch_workers)),
        advertise_grpc: config.advertise_grpc.clone(),
        otlp_endpoint: config.otlp_endpoint.clone(),
        xcom_values: shared.xcom_values,
        agent_tls: config.agent_tls.clone(),
        project_reloads: None,
    })
}

fn api_state(
    store: &EventStore,
    specs: Specs,
    credentials: &Credentials,
    auth: Auth,
    settings: Arc<Settings>,
) -> ApiState {
    ApiState {
        store: store.clone(),
        specs,
        auth: Arc::new(auth),
        vault: Vault::new(store.pool().clone(), credentials.master_keys()),
        settings,
        xcom_values: Default::default(),
        oidc: None,
    }
}

/// The HTTP server of an API replica: the UI (when its files are installed), `/api/v2` and
/// the probes.
struct Http {
    stop: tokio::sync::oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Http {
    fn start(
        listener: TcpListener,
        api: ApiState,
        ui: Option<Arc<Ui>>,
        readiness: Arc<ServerReadiness>,
    ) -> Result<Self> {
        let app = leoflow_api::router(api, ui).merge(leoflow_api::probes::router(readiness));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(leoflow_api::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Ok(Self { stop, server })
    }

    /// Stops taking connections and lets requests in flight finish ([`HTTP_DRAIN`] at most).
    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(HTTP_DRAIN, self.server).await.is_err() {
            tracing::warn!("requests still running after {HTTP_DRAIN:?} were cut off");
        }
    }
}

/// The Airflow UI's files from `ui_dir` (laid out as `leoflow setup` installs them; the
/// container image bakes them in). The UI is optional: without it the server serves the API.
fn installed_ui(ui_dir: Option<&std::path::Path>) -> Result<Option<Arc<Ui>>> {
    let Some(root) = ui_dir else {
        tracing::info!("no ui_dir: serving /api/v2 without the web UI");
        return Ok(None);
    };
    let dirs = leoflow_api::assets::UiDirs::installed(root).with_context(|| {
        format!(
            "ui_dir: {} holds no complete Airflow UI (`leoflow setup` installs one under \
             $LEOFLOW_HOME/ui)",
            root.display()
        )
    })?;
    let ui = Ui::load(dirs, "/").with_context(|| format!("ui_dir: {}", root.display()))?;
    Ok(Some(Arc::new(ui)))
}

/// Metrics and the probes on the metrics port, for every role.
fn serve_metrics(
    listener: TcpListener,
    state: MetricsState,
    readiness: Arc<ServerReadiness>,
) -> JoinHandle<std::io::Result<()>> {
    let app = leoflow_api::metrics::router(state).merge(leoflow_api::probes::router(readiness));
    tokio::spawn(leoflow_api::serve(listener, app, std::future::pending()))
}

/// What `/readyz` checks on a server replica.
struct ServerReadiness {
    pool: PgPool,
    redis: Option<Redis>,
    draining: AtomicBool,
}

impl Readiness for ServerReadiness {
    fn checks(&self) -> Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>> {
        Box::pin(async move {
            let check = |name, required, outcome: Result<String>| match outcome {
                Ok(detail) => Check {
                    name,
                    ok: true,
                    required,
                    detail,
                },
                Err(error) => Check {
                    name,
                    ok: false,
                    required,
                    detail: format!("{error:#}"),
                },
            };
            let redis_ping = async {
                match &self.redis {
                    Some(redis) => Some(redis.ping().await),
                    None => None,
                }
            };
            let (schema, redis) = tokio::join!(Schema::read(&self.pool), redis_ping);
            let (postgres, schema) = match schema {
                Ok(schema) => (
                    Ok("answers".to_owned()),
                    schema.require_current().map(|v| format!("version {v}")),
                ),
                Err(error) => (Err(error.into()), Err(anyhow::anyhow!("unknown"))),
            };
            let serving = if self.draining.load(Ordering::Relaxed) {
                Err(anyhow::anyhow!("shutting down"))
            } else {
                Ok("yes".to_owned())
            };
            let mut checks = vec![
                check("postgres", true, postgres),
                check("schema", true, schema),
            ];
            if let Some(redis) = redis {
                checks.push(check("redis", false, redis.map(|()| "answers".to_owned())));
            }
            checks.push(check("serving", true, serving));
            checks
        })
    }
}

/// Waits for a stop signal (success) or a scheduler failure the process must not outlive.
async fn wait(control_plane: &mut Option<ControlPlane>, stop: &mut Stop) -> Result<ExitCode> {
    let failure = async {
        match control_plane {
            Some(control_plane) => control_plane.reactor_failure().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        error = failure => {
            tracing::error!("{error:#}");
            Ok(ExitCode::FAILURE)
        }
        () = stop.requested() => {
            tracing::info!("stopping: draining requests and handing leadership over");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints what runs where; its last line tells scripts (and the tests) the replica serves.
fn print_banner(config: &ServerConfig, schema: i64, addresses: &[(&'static str, SocketAddr)]) {
    println!("Leoflow server (role {})", config.role.name());
    println!(
        "  database  {:?} (schema version {schema})",
        config.database_url
    );
    match &config.redis_url {
        Some(url) => println!("  redis     {url:?}"),
        None => println!("  redis     none: one replica, sessions and signs of life in-process"),
    }
    for (what, address) in addresses {
        println!("  {what:<9} {address}");
    }
    if config.role.runs_scheduler() {
        let tls = config.agent_tls.as_ref();
        if let Some(advertised) = &config.advertise_grpc {
            let endpoint = crate::agent_tls::endpoint(tls, advertised);
            println!("  agents    dial {endpoint}");
        }
        match tls {
            Some(tls) => println!("  agent TLS {}", tls.cert_file.display()),
            None => println!("  agent TLS off: plain gRPC"),
        }
    }
    println!("Serving; SIGTERM stops this replica gracefully.");
}
