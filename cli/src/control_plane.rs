//! The running control plane: the agent gRPC service, the scheduler's reactor and an executor
//! (subprocesses, or pods), wired together over one event store. `leoflow lite` starts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use leoflow_authoring::python::PythonRuntime;
use leoflow_events::EventStore;
use leoflow_executors::kubernetes::{Namespaces, PodConfig, PodExecutor};
use leoflow_executors::proto::task_agent_server::TaskAgentServer;
use leoflow_executors::subprocess::SubprocessExecutor;
use leoflow_executors::triggerer::{
    SubprocessTriggerer, TriggerReport, Triggerer, TriggererConfig,
};
use leoflow_executors::triggerer_link::Links;
use leoflow_executors::{AgentConfig, AttemptExit, Executor};
use leoflow_scheduler::agents::AgentService;
use leoflow_scheduler::janitor::{self, Retention};
use leoflow_scheduler::metrics::SchedulerMetrics;
use leoflow_scheduler::reactor::Specs;
use leoflow_scheduler::reactor::{BufferedDispatcher, Reactor, Supervision};
use leoflow_scheduler::xcom_values::XComValues;
use leoflow_scheduler::{Liveness, SharedLiveness};
use leoflow_secrets::{MasterKeys, Vault};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::agent_tls::{self, AgentTls, ServedCertificate};

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// The project tasks run in (their working directory and import path).
    pub project_dir: Option<PathBuf>,
    /// The Python that runs tasks.
    pub python: PythonRuntime,
    /// How often agents heartbeat.
    pub heartbeat_interval: Duration,
    /// The largest XCom value a task may push, in bytes of JSON.
    pub max_xcom_bytes: usize,
    /// Deadlines of tries in flight.
    pub supervision: Supervision,
    /// Opens the Variables and Connections tasks read.
    pub master_keys: Option<MasterKeys>,
    /// Where tries run.
    pub executor: ExecutorChoice,
    /// Where the processes share agents' signs of life (`None`: Postgres, as Lite does).
    pub liveness: Option<Arc<dyn SharedLiveness>>,
    /// Task logs older than this are pruned by the leader (`None`: kept, as Lite does).
    pub log_retention: Option<Retention>,
    /// Pro's dispatch queue: `(buffer, workers)`; `None` dispatches on the scheduler's loop
    /// (Lite).
    pub dispatch: Option<(usize, usize)>,
    /// The address agents dial, `HOST:PORT` (a Service in front of several replicas); `None`
    /// for this control plane's own gRPC address.
    pub advertise_grpc: Option<String>,
    /// The OpenTelemetry collector agents send their spans to (`None`: no traces).
    pub otlp_endpoint: Option<String>,
    /// How tasks read XCom values (Pro: large ones through the replicas' shared cache).
    pub xcom_values: XComValues,
    /// TLS on the agents' gRPC channel (`None`: plain gRPC, as Lite serves it on loopback).
    pub agent_tls: Option<AgentTls>,
    /// Changes when the project is registered again (Lite's hot reload): the triggerer starts
    /// again, so its triggers run the project's code as it is now, as its tries do. (On a folder
    /// of projects, `ProjectExecutors` does it per project.)
    pub project_reloads: Option<watch::Receiver<u64>>,
}

/// Where tries run.
#[derive(Debug, Clone, Default)]
pub enum ExecutorChoice {
    /// A `leoflow agent` child process per try, forked Python runners from a warm zygote.
    #[default]
    Subprocess,
    /// Lite on a folder of projects: a subprocess executor per project, chosen by the try's DAG.
    Projects(crate::commands::lite::ProjectExecutors),
    /// A pod per try in a Kubernetes cluster, seeing Leoflow's binary, the SDK and the project
    /// at the paths this host has them (its nodes mount them).
    Pods {
        /// The kubeconfig context of the cluster.
        context: String,
        /// The namespace of the pods.
        namespace: String,
        /// The image the agent runs in (it needs a Python ≥ 3.10 as `python3`).
        image: String,
        /// This host's name as pods resolve it (their agents call the gRPC port there).
        host_from_pods: String,
    },
    /// Pro: a pod per try on a cluster, each tenant's in its namespace, in the image of its
    /// DAG's pushed artifact.
    Cluster {
        /// The kubeconfig context (`None`: the in-cluster service account, else the
        /// kubeconfig's current context).
        context: Option<String>,
        /// The pods, the agent's endpoint and paths as the task image has them.
        pods: Box<PodConfig>,
    },
}

impl ExecutorChoice {
    /// The executor's name in `/api/v2/config`.
    pub fn config_name(&self) -> &'static str {
        match self {
            Self::Subprocess | Self::Projects(_) => leoflow_api::SUBPROCESS_EXECUTOR,
            Self::Pods { .. } | Self::Cluster { .. } => leoflow_api::KUBERNETES_EXECUTOR,
        }
    }
}

/// A started control plane; [`ControlPlane::stop`] ends it.
pub struct ControlPlane {
    specs: Specs,
    metrics: SchedulerMetrics,
    grpc: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    /// `None` once it ended (see [`ControlPlane::reactor_failure`]).
    reactor: Option<JoinHandle<Result<(), leoflow_scheduler::reactor::ReactorError>>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl ControlPlane {
    /// Starts everything, serving task agents on `listener` (bound by the caller, so a taken
    /// port fails before anything starts).
    pub async fn start(
        store: EventStore,
        listener: tokio::net::TcpListener,
        options: ControlPlaneOptions,
    ) -> Result<Self> {
        // With port 0 the system picks one: agents must be told the one it picked.
        let grpc = listener.local_addr().context("reading the gRPC address")?;
        // Checked with the configuration; read again here, the files may have changed since.
        let certificate = match &options.agent_tls {
            Some(tls) => Some(
                ServedCertificate::load(tls)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", e.file.key()))?,
            ),
            None => None,
        };
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        // The pod executor's watchers run while this scheduler leads; the reactor, which
        // knows, is made after the executor it needs, so its leadership is relayed.
        let (leading_tx, leading_rx) = watch::channel(false);
        let (executor, cluster) = start_executor(&options, grpc, exits_tx, leading_rx).await?;
        // Shared through Postgres: another control plane on this database that becomes the
        // leader must not fail the tries whose agents heartbeat to this one.
        let liveness = match &options.liveness {
            Some(store) => Liveness::shared_through(store.clone()),
            None => Liveness::shared(store.pool().clone()),
        };
        let mut reactor = Reactor::new(store.clone(), executor.clone());
        if let Some((buffer, workers)) = options.dispatch {
            reactor =
                reactor.with_dispatcher(BufferedDispatcher::buffered(executor, buffer, workers));
        }
        let mut reactor = reactor
            .with_supervision(options.supervision.clone())
            .with_liveness(liveness.clone())
            .with_exits(exits_rx);
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (triggerer, links) = start_triggerer(&options, cluster.as_deref(), reports_tx);
        if let Some(triggerer) = triggerer.clone() {
            reactor = reactor.with_triggerer(triggerer, reports_rx, vault(&store, &options));
        }
        let specs = reactor.specs();
        let metrics = reactor.metrics();
        let leading = reactor.leading();
        tokio::spawn(relay(leading.clone(), leading_tx));
        let pool = store.pool().clone();
        let mut service = agent_service(store, specs.clone(), reactor.liveness(), &options);
        if triggerer.is_some() {
            service = service.with_triggerer();
        }
        let (shutdown, watcher) = watch::channel(false);
        liveness.flush_every(options.heartbeat_interval, watcher.clone());
        if let Some(certificate) = &certificate {
            tokio::spawn(certificate.clone().keep_reloading(watcher.clone()));
        }
        let server = tokio::spawn(serve_agents(
            listener,
            service,
            links,
            certificate,
            watcher.clone(),
        ));
        if let Some(retention) = options.log_retention.clone() {
            tokio::spawn(janitor::run(
                pool,
                retention,
                leading,
                watcher.clone(),
                metrics.log_lines_pruned.clone(),
            ));
        }
        let reactor = Some(tokio::spawn(reactor.run(watcher)));
        Ok(Self {
            specs,
            metrics,
            grpc,
            shutdown,
            reactor,
            server,
        })
    }

    /// Where task agents reach the control plane.
    pub fn grpc_address(&self) -> std::net::SocketAddr {
        self.grpc
    }

    /// The DAG versions and run states the scheduler keeps (the API shares them, so its
    /// commands group-commit with the scheduler's decisions).
    pub fn specs(&self) -> Specs {
        self.specs.clone()
    }

    /// What the scheduler tells Prometheus.
    pub fn metrics(&self) -> SchedulerMetrics {
        self.metrics.clone()
    }

    /// Resolves only if the scheduler's reactor ends before [`ControlPlane::stop`]: it rides
    /// out database failures itself, so this is a failure the process must not outlive (a
    /// corrupt log, a panic). Pending forever once it has resolved.
    pub async fn reactor_failure(&mut self) -> anyhow::Error {
        let Some(reactor) = self.reactor.as_mut() else {
            return std::future::pending().await;
        };
        let ended = reactor.await;
        self.reactor = None;
        match ended {
            Ok(Ok(())) => anyhow::anyhow!("the scheduler stopped by itself"),
            Ok(Err(error)) => anyhow::Error::new(error).context("the scheduler failed"),
            Err(error) => anyhow::Error::new(error).context("the scheduler crashed"),
        }
    }

    /// Stops the reactor and the gRPC service. Agents still running keep their tries and
    /// report when a control plane is back.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(reactor) = self.reactor {
            reactor.await??;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
        Ok(())
    }
}

/// Passes `from`'s value on to `to` until either end goes.
async fn relay(mut from: watch::Receiver<bool>, to: watch::Sender<bool>) {
    loop {
        to.send_replace(*from.borrow_and_update());
        if from.changed().await.is_err() || to.is_closed() {
            return;
        }
    }
}

/// The executor `options` choose, its agents calling the control plane on `grpc`; a pod
/// executor follows pods while `leading`. With pods of a cluster (Pro), that executor again,
/// typed: the triggerer runs in pods of the same images.
async fn start_executor(
    options: &ControlPlaneOptions,
    grpc: SocketAddr,
    exits: mpsc::UnboundedSender<AttemptExit>,
    leading: watch::Receiver<bool>,
) -> Result<(Arc<dyn Executor>, Option<Arc<PodExecutor>>)> {
    let program = std::env::current_exe().context("locating the leoflow binary")?;
    let mut cluster = None;
    let executor: Arc<dyn Executor> = match &options.executor {
        ExecutorChoice::Subprocess | ExecutorChoice::Projects(_) => {
            // Bound to every interface, the agents on this machine still call it on loopback.
            let endpoint = if grpc.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), grpc.port())
            } else {
                grpc
            };
            let tls = options.agent_tls.as_ref();
            let endpoint = match &options.advertise_grpc {
                Some(advertised) => agent_tls::endpoint(tls, advertised),
                None => agent_tls::endpoint(tls, endpoint),
            };
            let agent = AgentConfig {
                program,
                endpoint,
                python: options.python.interpreter.clone(),
                sdk_path: options.python.sdk_path.clone(),
                project_dir: options.project_dir.clone(),
                otlp_endpoint: options.otlp_endpoint.clone(),
                ca_file: tls.and_then(|tls| tls.ca_file.clone()),
            };
            if let ExecutorChoice::Projects(projects) = &options.executor {
                return Ok((projects.start(agent, exits).await, None));
            }
            let mut executor = SubprocessExecutor::new(agent, exits);
            if let Err(error) = executor.start_zygote().await {
                tracing::warn!("{error}; every try starts its own Python (slower)");
            }
            Arc::new(executor)
        }
        ExecutorChoice::Pods {
            context,
            namespace,
            image,
            host_from_pods,
        } => {
            // The nodes mount these host folders; pods see them at the same paths.
            let host_paths = program
                .parent()
                .map(PathBuf::from)
                .into_iter()
                .chain([options.python.sdk_path.clone()])
                .chain(options.project_dir.clone())
                .collect();
            let agent = AgentConfig {
                program,
                // Lite's k3d pods: local development, plain gRPC.
                endpoint: format!("http://{host_from_pods}:{}", grpc.port()),
                python: "python3".into(),
                sdk_path: options.python.sdk_path.clone(),
                project_dir: options.project_dir.clone(),
                otlp_endpoint: options.otlp_endpoint.clone(),
                ca_file: None,
            };
            let config = PodConfig {
                host_paths,
                ..PodConfig::new(Namespaces::One(namespace.clone()), image, agent)
            };
            let executor = PodExecutor::connect(Some(context), config, exits, leading)
                .await
                .map_err(|error| {
                    anyhow::anyhow!(
                        "cannot configure a Kubernetes client for the kubeconfig context \
                         {context}: {error}. `kubectl config get-contexts` lists the contexts"
                    )
                })?;
            Arc::new(executor)
        }
        ExecutorChoice::Cluster { context, pods } => {
            let executor =
                PodExecutor::connect(context.as_deref(), (**pods).clone(), exits, leading)
                    .await
                    .map_err(|error| {
                        anyhow::anyhow!(
                            "cannot configure a Kubernetes client ({}): {error}",
                            context.as_deref().map_or_else(
                                || "in-cluster service account, else $KUBECONFIG".to_owned(),
                                |c| format!("kubeconfig context {c}")
                            )
                        )
                    })?;
            let executor = Arc::new(executor);
            cluster = Some(executor.clone());
            executor
        }
    };
    Ok((executor, cluster))
}

/// The triggerer `options` choose: on this host, in the Python of the tries' project (Lite);
/// with pods of a `cluster`, in pods of the DAGs' images, which call back on the agents'
/// gRPC port (the [`Links`] to serve there).
fn start_triggerer(
    options: &ControlPlaneOptions,
    cluster: Option<&PodExecutor>,
    reports: mpsc::UnboundedSender<TriggerReport>,
) -> (Option<Arc<dyn Triggerer>>, Option<Links>) {
    if let Some(cluster) = cluster {
        let triggerer = cluster.triggerer(reports);
        let links = triggerer.links();
        return (Some(Arc::new(triggerer)), Some(links));
    }
    let triggerer: Option<Arc<dyn Triggerer>> = match &options.executor {
        ExecutorChoice::Projects(projects) => Some(Arc::new(projects.triggerers(reports))),
        ExecutorChoice::Subprocess | ExecutorChoice::Pods { .. } => {
            let config = TriggererConfig {
                python: options.python.interpreter.clone(),
                sdk_path: options.python.sdk_path.clone(),
                project_dir: options.project_dir.clone(),
            };
            let triggerer = Arc::new(SubprocessTriggerer::new(config.clone(), reports));
            if let Some(mut reloads) = options.project_reloads.clone() {
                let triggerer = Arc::downgrade(&triggerer);
                tokio::spawn(async move {
                    while reloads.changed().await.is_ok() {
                        let Some(triggerer) = triggerer.upgrade() else {
                            return;
                        };
                        triggerer.restart(config.clone());
                    }
                });
            }
            Some(triggerer)
        }
        ExecutorChoice::Cluster { .. } => None,
    };
    (triggerer, None)
}

/// What opens secrets sealed in the log, when this control plane has the master keys.
fn vault(store: &EventStore, options: &ControlPlaneOptions) -> Option<Vault> {
    options
        .master_keys
        .clone()
        .map(|keys| Vault::new(store.pool().clone(), keys))
}

/// The gRPC service task agents call, opening Variables and Connections with the master keys
/// when there are some.
fn agent_service(
    store: EventStore,
    specs: Specs,
    liveness: Liveness,
    options: &ControlPlaneOptions,
) -> AgentService {
    let vault = vault(&store, options);
    let mut service = AgentService::new(store, specs, liveness, options.heartbeat_interval);
    if let Some(vault) = vault {
        service = service.with_vault(vault);
    }
    service
        .with_max_xcom_bytes(options.max_xcom_bytes)
        .with_xcom_values(options.xcom_values.clone())
}

/// Serves `service` on `listener` until `stop` turns true, over TLS with `certificate`.
async fn serve_agents(
    listener: tokio::net::TcpListener,
    service: AgentService,
    links: Option<Links>,
    certificate: Option<Arc<ServedCertificate>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let router = tonic::transport::Server::builder()
        .trace_fn(leoflow_scheduler::agents::call_span)
        .add_service(
            TaskAgentServer::new(service)
                .max_decoding_message_size(leoflow_executors::MAX_AGENT_MESSAGE)
                .max_encoding_message_size(leoflow_executors::MAX_AGENT_MESSAGE),
        )
        .add_optional_service(links.map(|links| {
            links
                .service()
                .max_decoding_message_size(leoflow_executors::MAX_AGENT_MESSAGE)
                .max_encoding_message_size(leoflow_executors::MAX_AGENT_MESSAGE)
        }));
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    match certificate {
        Some(certificate) => {
            let incoming = agent_tls::incoming(listener, certificate);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        None => {
            // Without TCP_NODELAY small replies wait for the agent's delayed ACK
            // (40 ms per call here).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
    }
}
