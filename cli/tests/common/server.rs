//! A Pro deployment on this machine, all of it real: a Postgres cluster the test starts (the
//! managed-cluster code, listening on TCP with fsync on), a `redis-server`, `leoflow server`
//! replicas of each role on one keys file, and a TCP forwarder standing in for the Kubernetes
//! Service agents dial (it sends each connection to the first scheduler replica that accepts,
//! as a Service sends it to a ready endpoint).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leoflow_postgres::{ClusterSettings, ManagedCluster};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::lite::{output, scratch, text};
use super::{free_port, repo};

pub const PASSWORD: &str = "server-test-admin-password";

/// Free ports for a replica: HTTP, gRPC, metrics.
pub fn ports() -> [u16; 3] {
    replicas_ports::<1>()[0]
}

/// Free ports for `N` replicas, all different: each is held until all are chosen, so the system
/// cannot hand out one twice.
pub fn replicas_ports<const N: usize>() -> [[u16; 3]; N] {
    let held: Vec<std::net::TcpListener> = (0..3 * N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| held[i].local_addr().unwrap().port();
    std::array::from_fn(|r| [port(3 * r), port(3 * r + 1), port(3 * r + 2)])
}

/// The datastores, keys and Service of a deployment; replicas are started on it.
pub struct Deployment {
    pub scratch: PathBuf,
    pub cluster: ManagedCluster,
    pub database_url: String,
    pub redis: Redis,
    pub keys_file: PathBuf,
    pub password_file: PathBuf,
    pub service: Service,
}

impl Deployment {
    /// Starts Postgres and Redis, migrates the database as the chart's Job would and writes
    /// the keys.
    pub async fn start(what: &str) -> Self {
        let scratch = scratch(what);
        let port = free_port();
        let mut settings = ClusterSettings::durable();
        settings.port = port;
        settings.extra.extend([
            ("listen_addresses".into(), "'127.0.0.1'".into()),
            ("max_connections".into(), "200".into()),
        ]);
        let cluster = ManagedCluster::new(scratch.join("pg"), settings).unwrap();
        cluster.start().unwrap();
        cluster.ensure_database("leoflow").await.unwrap();
        let database_url = format!("postgres://leoflow@127.0.0.1:{port}/leoflow");
        let redis = Redis::start(&scratch);
        let keys_file = scratch.join("keys.json");
        let password_file = scratch.join("admin-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let deployment = Self {
            service: Service::start().await,
            scratch,
            cluster,
            database_url,
            redis,
            keys_file,
            password_file,
        };
        let keys = output(&mut deployment.leoflow(&[
            "server",
            "keys",
            "generate",
            "-o",
            deployment.keys_file.to_str().unwrap(),
        ]));
        assert!(keys.status.success(), "{}", text(&keys.stderr));
        let migrate = output(&mut deployment.leoflow(&["db", "migrate"]));
        assert!(migrate.status.success(), "{}", text(&migrate.stderr));
        deployment
    }

    /// `leoflow` on this deployment's database, with the test venv's Python and the SDK.
    pub fn leoflow(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
        command
            .args(args)
            .env("LEOFLOW_HOME", self.scratch.join("home"))
            .env("LEOFLOW_POSTGRES", "url")
            .env("LEOFLOW_DATABASE_URL", &self.database_url)
            .env("LEOFLOW_SDK_PATH", repo().join("sdk/python/src"))
            .stdin(Stdio::null());
        let venv = repo().join(".venv/bin/python");
        if std::env::var_os("LEOFLOW_PYTHON").is_none() && venv.exists() {
            command.env("LEOFLOW_PYTHON", venv);
        }
        command
    }

    /// Compiles `dag_py` as a project and registers it (what a push will do).
    pub fn register(&self, name: &str, dag_py: &str) {
        self.register_into(name, dag_py, "default");
    }

    /// [`Deployment::register`] into `tenant`.
    pub fn register_into(&self, name: &str, dag_py: &str, tenant: &str) {
        let project = self.scratch.join(name);
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dag.py"), dag_py).unwrap();
        let path = project.to_str().unwrap();
        let compiled = output(
            self.leoflow(&["compile", path, "--register", "--tenant", tenant])
                .stdout(Stdio::null()),
        );
        assert!(compiled.status.success(), "{}", text(&compiled.stderr));
    }

    /// Starts a replica of `role` and waits until it serves.
    pub fn replica(&self, role: &str) -> Replica {
        self.replica_with(role, |_| {})
    }

    /// Starts a replica of `role` with its command changed by `change` (more variables, its
    /// stderr elsewhere) and waits until it serves.
    pub fn replica_with(&self, role: &str, change: impl FnOnce(&mut Command)) -> Replica {
        self.replica_at(role, ports(), change)
    }

    /// [`Deployment::replica_with`] on `ports` (HTTP, gRPC, metrics) chosen beforehand, e.g.
    /// with [`ports`], when something else must know the replica's address first.
    pub fn replica_at(
        &self,
        role: &str,
        ports: [u16; 3],
        change: impl FnOnce(&mut Command),
    ) -> Replica {
        let mut command = self.server_command(role, ports);
        command.stderr(Stdio::inherit());
        change(&mut command);
        let replica = Replica::start(command, role, ports);
        if role != "api" {
            self.service.add_backend(ports[1]);
        }
        replica
    }

    /// Runs a replica of `role` that must refuse to start: returns its stderr (it fails the
    /// test if the replica serves, or runs for more than 30 s).
    pub fn refusal(&self, role: &str, change: impl FnOnce(&mut Command)) -> String {
        let ports = ports();
        let mut command = self.server_command(role, ports);
        change(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the replica did not refuse to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "refused: {}", text(&out.stdout));
        assert!(
            !text(&out.stdout).contains("Serving;"),
            "nothing served: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// A replica's command: the ports as flags, the rest as the chart gives it, in
    /// `LEOFLOW_*` variables (a test changes one with `env` or `env_remove`).
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

    /// A pool for the test's own queries.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(3)
            .connect(&self.database_url)
            .await
            .unwrap()
    }

    /// `leoflow events replay --verify` succeeds on the database.
    pub fn replay_verifies(&self) {
        let verify = output(&mut self.leoflow(&["events", "replay", "--verify"]));
        assert!(
            verify.status.success(),
            "replay --verify: {}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A `redis-server` on a free loopback port, without persistence.
pub struct Redis {
    pub child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start(scratch: &Path) -> Self {
        let port = free_port();
        let dir = scratch.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let child = Self::spawn(port, &dir);
        Self { child, port, dir }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crashed Redis.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port (empty: it never persisted).
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.dir);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The scheduler that leads last (its process id and epoch), as its election recorded it.
pub async fn elected(pool: &PgPool) -> Option<(i32, i64)> {
    sqlx::query_as(
        "SELECT (payload->>'pid')::int, stream_version FROM events \
         WHERE stream = 'scheduler' ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

/// The stand-in for the Service in front of the scheduler replicas' gRPC ports.
pub struct Service {
    pub port: u16,
    backends: Arc<Mutex<Vec<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let backends: Arc<Mutex<Vec<u16>>> = Arc::default();
        let task = tokio::spawn(forward(listener, backends.clone()));
        Self {
            port,
            backends,
            task,
        }
    }

    fn add_backend(&self, port: u16) {
        self.backends.lock().unwrap().push(port);
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
        let ports = backends.lock().unwrap().clone();
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

/// A running `leoflow server` replica.
pub struct Replica {
    pub child: Child,
    pub role: String,
    pub base: String,
    pub metrics: String,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Replica {
    fn start(mut command: Command, role: &str, ports: [u16; 3]) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start leoflow server");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let tag = format!("{role} {}", child.id());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[server {tag}] {line}");
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the {role} replica did not start serving"));
            if line.starts_with("Serving;") {
                break;
            }
        }
        Self {
            child,
            role: role.to_owned(),
            base: format!("http://127.0.0.1:{}", ports[0]),
            metrics: format!("http://127.0.0.1:{}", ports[2]),
            lines,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` and waits for the process to end.
    pub fn signal(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: a plain signal to the child this test spawned.
        unsafe { libc::kill(self.pid(), signal) };
        self.child.wait().unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
