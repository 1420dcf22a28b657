//! A Pro deployment on this machine for the server benchmarks, all of it real: a managed
//! Postgres cluster listening on TCP with fsync on, a `redis-server`, `leoflow server` replicas
//! of any role on one keys file, and a TCP forwarder standing in for the Kubernetes Service the
//! task agents dial.
//!
//! The same deployment as `cli/tests/common/server.rs` (which benchmarks cannot depend on),
//! with errors instead of panics and the replicas' diagnostics written to files rather than
//! the terminal: a benchmark's output stays its figures.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use leoflow_postgres::{ClusterSettings, ManagedCluster};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::leoflow_binary;

/// The admin password every replica of a benchmark deployment is given.
pub const PASSWORD: &str = "server-bench-admin-password";

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// The datastores, keys and Service of a deployment; replicas are started on it. Dropping it
/// stops Postgres and deletes its folder (set `LEOFLOW_BENCH_KEEP=1` to keep the replicas'
/// logs).
pub struct Deployment {
    /// Its folder: Postgres, Redis, keys, the replicas' logs.
    pub scratch: PathBuf,
    cluster: ManagedCluster,
    /// What the replicas connect to.
    pub database_url: String,
    redis: Redis,
    keys_file: PathBuf,
    password_file: PathBuf,
    service: Service,
    binary: PathBuf,
}

impl Deployment {
    /// Starts Postgres and Redis, migrates the database as the chart's Job would and writes
    /// the keys.
    pub async fn start(what: &str) -> Result<Self> {
        let binary = leoflow_binary()?;
        let scratch = scratch(what)?;
        let port = free_port();
        let mut settings = ClusterSettings::durable();
        settings.port = port;
        settings.extra.extend([
            ("listen_addresses".into(), "'127.0.0.1'".into()),
            ("max_connections".into(), "200".into()),
        ]);
        let cluster = ManagedCluster::new(scratch.join("pg"), settings)?;
        let starting = cluster.clone();
        tokio::task::spawn_blocking(move || starting.start()).await??;
        cluster.ensure_database("leoflow").await?;
        let deployment = Self {
            database_url: format!("postgres://leoflow@127.0.0.1:{port}/leoflow"),
            redis: Redis::start(&scratch)?,
            keys_file: scratch.join("keys.json"),
            password_file: scratch.join("admin-password"),
            service: Service::start().await?,
            scratch,
            cluster,
            binary,
        };
        std::fs::write(&deployment.password_file, format!("{PASSWORD}\n"))?;
        let keys = deployment.keys_file.to_string_lossy().into_owned();
        deployment.succeeds(&["server", "keys", "generate", "-o", &keys])?;
        deployment.succeeds(&["db", "migrate"])?;
        Ok(deployment)
    }

    /// `leoflow` on this deployment's database, with the Python and SDK of the environment
    /// (`LEOFLOW_PYTHON`, `LEOFLOW_SDK_PATH`) or else the repository's.
    pub fn leoflow(&self, args: &[&str]) -> Command {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("LEOFLOW_HOME", self.scratch.join("home"))
            .env("LEOFLOW_POSTGRES", "url")
            .env("LEOFLOW_DATABASE_URL", &self.database_url)
            .stdin(Stdio::null());
        if std::env::var_os("LEOFLOW_SDK_PATH").is_none() {
            command.env("LEOFLOW_SDK_PATH", repo.join("sdk/python/src"));
        }
        let venv = repo.join(".venv/bin/python");
        if std::env::var_os("LEOFLOW_PYTHON").is_none() && venv.exists() {
            command.env("LEOFLOW_PYTHON", venv);
        }
        command
    }

    /// Runs `leoflow args` to completion; its stderr is the error if it fails.
    fn succeeds(&self, args: &[&str]) -> Result<()> {
        let output = self.leoflow(args).stdout(Stdio::null()).output()?;
        if !output.status.success() {
            bail!(
                "leoflow {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Compiles `dag_py` as a project and registers it (what a push will do).
    pub fn register(&self, name: &str, dag_py: &str) -> Result<()> {
        let project = self.scratch.join(name);
        std::fs::create_dir_all(&project)?;
        std::fs::write(project.join("dag.py"), dag_py)?;
        self.succeeds(&["compile", &project.to_string_lossy(), "--register"])
    }

    /// Starts a replica of `role` and waits until it serves; a scheduler-capable one joins
    /// the Service.
    pub fn replica(&self, role: &str) -> Result<Replica> {
        let ports = [free_port(), free_port(), free_port()];
        let replica = Replica::start(self.server_command(role, ports), role, ports, self)?;
        if role != "api" {
            self.service.add_backend(ports[1]);
        }
        Ok(replica)
    }

    /// A replica's command: the ports as flags, the rest as the chart gives it, in
    /// `LEOFLOW_*` variables.
    fn server_command(&self, role: &str, ports: [u16; 3]) -> Command {
        let mut command = self.leoflow(&["server", "--role", role, "--host", "127.0.0.1"]);
        command
            .args(["--http-port", &ports[0].to_string()])
            .args(["--grpc-port", &ports[1].to_string()])
            .args(["--metrics-port", &ports[2].to_string()])
            .env("LEOFLOW_KEYS_FILE", &self.keys_file)
            .env("LEOFLOW_ADMIN_PASSWORD_FILE", &self.password_file)
            .env("LEOFLOW_EXECUTOR", "subprocess")
            .env("LEOFLOW_ALLOW_UNSANDBOXED", "true")
            .env(
                "LEOFLOW_ADVERTISE_GRPC",
                format!("127.0.0.1:{}", self.service.port),
            )
            .env("LEOFLOW_REDIS_URL", self.redis.url());
        command
    }

    /// A pool for the benchmark's own queries.
    pub async fn pool(&self) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(3)
            .connect(&self.database_url)
            .await?)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.redis.kill();
        if let Err(error) = self.cluster.stop() {
            eprintln!("warning: stopping the benchmark's Postgres: {error}");
            return;
        }
        if std::env::var_os("LEOFLOW_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.scratch.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

/// A fresh folder under /tmp (the managed Postgres socket path must stay short).
fn scratch(what: &str) -> Result<PathBuf> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("lf-{what}-{}", &id[..8]));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A `redis-server` on a free loopback port, without persistence.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(scratch: &Path) -> Result<Self> {
        let port = free_port();
        let dir = scratch.join("redis");
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server (Debian's redis-server package) must be installed")?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stand-in for the Service in front of the scheduler replicas' gRPC ports: each
/// connection goes to the first backend that accepts it, as a Service sends it to a ready
/// endpoint (a killed replica refuses, so agents reach the live one).
struct Service {
    port: u16,
    backends: Arc<Mutex<Vec<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let backends: Arc<Mutex<Vec<u16>>> = Arc::default();
        let task = tokio::spawn(forward(listener, backends.clone()));
        Ok(Self {
            port,
            backends,
            task,
        })
    }

    fn add_backend(&self, port: u16) {
        self.backends.lock().expect("not poisoned").push(port);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends each connection to the first backend that accepts it.
async fn forward(listener: tokio::net::TcpListener, backends: Arc<Mutex<Vec<u16>>>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let ports = backends.lock().expect("not poisoned").clone();
        tokio::spawn(async move {
            for port in ports {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = outbound.set_nodelay(true);
                    let _ = inbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

/// A running `leoflow server` replica; killed when dropped.
pub struct Replica {
    child: Child,
    /// Its HTTP base URL (`http://127.0.0.1:PORT`).
    pub base: String,
}

impl Replica {
    /// Spawns `command` (stdout read here, stderr to a log file in the deployment's folder)
    /// and waits for its `Serving;` line.
    fn start(
        mut command: Command,
        role: &str,
        ports: [u16; 3],
        deployment: &Deployment,
    ) -> Result<Self> {
        let log = deployment.scratch.join(format!("{role}-{}.log", ports[0]));
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start leoflow server")?;
        let stdout = child.stdout.take().context("its stdout")?;
        let (lines_tx, lines) = std::sync::mpsc::channel();
        // Read to the end, so the replica never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let replica = Self {
            child,
            base: format!("http://127.0.0.1:{}", ports[0]),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(timeout) {
                Ok(line) if line.starts_with("Serving;") => return Ok(replica),
                Ok(_) => {}
                Err(_) => bail!(
                    "the {role} replica did not start serving (its log: {})",
                    log.display()
                ),
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, as a crashed pod, and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Logs in as admin on `base`; returns the bearer token (valid on every replica: the keys are
/// shared).
pub async fn login(http: &reqwest::Client, base: &str) -> Result<String> {
    let response = http
        .post(format!("{base}/auth/token"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?;
    if response.status() != 201 {
        bail!("login on {base}: {}", response.status());
    }
    let body: Value = response.json().await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the login answer")
}

/// Triggers a run of `dag_id` through the API; returns its run id.
pub async fn trigger(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    dag_id: &str,
) -> Result<String> {
    let response = http
        .post(format!("{base}/api/v2/dags/{dag_id}/dagRuns"))
        .bearer_auth(token)
        .json(&json!({"logical_date": null}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status != 200 {
        bail!("trigger {dag_id}: {status} {body}");
    }
    body["dag_run_id"]
        .as_str()
        .map(str::to_owned)
        .context("no dag_run_id in the trigger answer")
}
