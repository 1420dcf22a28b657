//! Choosing where Leoflow's database lives and connecting to it.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::cluster::{ClusterError, ClusterSettings, ManagedCluster, StartOutcome};

/// The `--postgres` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresChoice {
    /// A managed cluster under `$LEOFLOW_HOME`.
    Managed,
    /// A `postgres:16` container, when a Docker engine answers.
    Docker,
    /// `LEOFLOW_DATABASE_URL`.
    Url,
}

/// Where the database is.
#[derive(Debug, Clone)]
pub enum Datastore {
    /// The managed cluster rooted at `root` (`$LEOFLOW_HOME/postgres`).
    Managed {
        /// Cluster root.
        root: PathBuf,
    },
    /// The `leoflow-postgres` container; its password is kept under `home`.
    Docker {
        /// `$LEOFLOW_HOME`.
        home: PathBuf,
    },
    /// An external server.
    Url(String),
}

/// Name of the container `--postgres docker` runs.
pub const DOCKER_CONTAINER: &str = "leoflow-postgres";
/// Loopback port the container's Postgres is published on.
pub const DOCKER_PORT: u16 = 55432;

/// How long a pooled connection may sit unused before it is closed.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no database connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The managed cluster failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `--postgres url` without a URL.
    #[error(
        "--postgres url needs LEOFLOW_DATABASE_URL (e.g. postgres://user:password@host:5432/leoflow)"
    )]
    MissingUrl,
    /// The URL does not parse.
    #[error("LEOFLOW_DATABASE_URL {url} is not a valid Postgres URL: {reason}")]
    BadUrl {
        /// The URL, password masked.
        url: String,
        /// Why.
        reason: String,
    },
    /// No Docker engine.
    #[error(
        "--postgres docker needs a running Docker engine, but `docker info` failed: {0}. \
         Start Docker, or use --postgres managed (no Docker needed)."
    )]
    NoDockerEngine(String),
    /// The container could not be started.
    #[error("starting the {DOCKER_CONTAINER} container failed: {0}")]
    Docker(String),
    /// Connecting failed.
    // Not `source`: the message already says it, and error reports would print it twice.
    #[error("cannot connect to Postgres at {target}: {cause}. {hint}")]
    Unreachable {
        /// The URL (password masked) or socket.
        target: String,
        /// The driver's error.
        cause: sqlx::Error,
        /// What to try.
        hint: String,
    },
}

/// An open, reachable database.
#[derive(Debug)]
pub struct Database {
    /// The pool.
    pub pool: PgPool,
    /// Where it is, for messages (no password).
    pub target: String,
    /// The managed cluster, when that is the datastore.
    pub cluster: Option<ManagedCluster>,
    /// Whether opening started the managed cluster (so the caller may stop it when done).
    pub started_cluster: bool,
}

impl Datastore {
    /// Maps `--postgres` and `LEOFLOW_DATABASE_URL` to a datastore: an explicit choice wins;
    /// without one, a URL means `url`, otherwise `managed`.
    pub fn choose(
        choice: Option<PostgresChoice>,
        url: Option<String>,
        home: &Path,
    ) -> Result<Self, ConnectError> {
        match (choice, url) {
            (Some(PostgresChoice::Url), None) => Err(ConnectError::MissingUrl),
            (Some(PostgresChoice::Url) | None, Some(url)) => Ok(Datastore::Url(url)),
            (Some(PostgresChoice::Docker), _) => Ok(Datastore::Docker {
                home: home.to_owned(),
            }),
            (Some(PostgresChoice::Managed) | None, _) => Ok(Datastore::Managed {
                root: home.join("postgres"),
            }),
        }
    }

    /// Starts what is needed (the managed cluster, the container) and connects to `database`
    /// (ignored for a URL, which names its own database).
    pub async fn open(&self, database: &str) -> Result<Database, ConnectError> {
        match self {
            Datastore::Managed { root } => {
                let cluster = ManagedCluster::new(root, ClusterSettings::durable())?;
                let starter = cluster.clone();
                let outcome = tokio::task::spawn_blocking(move || starter.start())
                    .await
                    .expect("cluster start does not panic")?;
                cluster.ensure_database(database).await?;
                let options = cluster.connect_options(database);
                let target = format!("{} database {database}", cluster.describe());
                let hint = "Is it running? `leoflow postgres status` tells, `leoflow postgres start` starts it; \
                            its log says why it stopped."
                    .to_owned();
                let pool = connect(options, &target, &hint).await?;
                Ok(Database {
                    pool,
                    target,
                    cluster: Some(cluster),
                    started_cluster: matches!(outcome, StartOutcome::Started { .. }),
                })
            }
            Datastore::Docker { home } => {
                let options = start_docker(home, database).await?;
                let target = format!(
                    "the {DOCKER_CONTAINER} container (127.0.0.1:{DOCKER_PORT}/{database})"
                );
                let hint = format!("Check it with `docker logs {DOCKER_CONTAINER}` and retry.");
                Database::unmanaged(options, target, &hint).await
            }
            Datastore::Url(url) => {
                let target = mask_url(url);
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConnectError::BadUrl {
                        url: target,
                        reason: "it must start with postgres:// or postgresql://".to_owned(),
                    });
                }
                let options: PgConnectOptions =
                    url.parse().map_err(|e: sqlx::Error| ConnectError::BadUrl {
                        url: target.clone(),
                        reason: e.to_string(),
                    })?;
                let hint = "Check LEOFLOW_DATABASE_URL and that the server accepts connections, then retry.";
                Database::unmanaged(options, target, hint).await
            }
        }
    }
}

impl Database {
    /// Connects to a database Leoflow does not manage (a container or a URL).
    async fn unmanaged(
        options: PgConnectOptions,
        target: String,
        hint: &str,
    ) -> Result<Self, ConnectError> {
        Ok(Database {
            pool: connect(options, &target, hint).await?,
            target,
            cluster: None,
            started_cluster: false,
        })
    }
}

/// Connects a pool, turning failure into an error that names `target` and says what to try.
pub async fn connect(
    options: PgConnectOptions,
    target: &str,
    hint: &str,
) -> Result<PgPool, ConnectError> {
    connect_sized(options, target, hint, 8).await
}

/// [`connect`] with a pool of at most `max_connections` (`leoflow server`'s `database_pool_size`).
pub async fn connect_sized(
    options: PgConnectOptions,
    target: &str,
    hint: &str,
    max_connections: u32,
) -> Result<PgPool, ConnectError> {
    // One direct connection first: it fails at once, where a pool would retry until its
    // acquire timeout.
    let probe = PgConnection::connect_with(&options)
        .await
        .map_err(|cause| ConnectError::Unreachable {
            target: target.to_owned(),
            cause,
            hint: hint.to_owned(),
        })?;
    let _ = probe.close().await;
    // Leoflow's reads and writes are made for READ COMMITTED (the append's protocol, and a
    // replay's swap, which a repeatable-read snapshot taken before it would see as empty
    // tables): whatever the server's default, its own sessions use it.
    let options = options.options([("default_transaction_isolation", "read committed")]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        // Each idle connection is a Postgres backend of ~15 MB: the ones a burst opened
        // (start-up catch-up, a busy run) go back soon after, and reconnecting costs ~5 ms.
        .idle_timeout(IDLE_CONNECTION_TIMEOUT)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options))
}

/// The URL with its password replaced by `***`, for messages.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Checks that a Docker engine answers within a few seconds.
pub fn docker_engine_answers() -> Result<(), String> {
    let mut child = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                let first = err
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output");
                return Err(first.trim().to_owned());
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                return Err("no answer within 5 s".to_owned());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn start_docker(home: &Path, database: &str) -> Result<PgConnectOptions, ConnectError> {
    tokio::task::spawn_blocking(docker_engine_answers)
        .await
        .expect("docker probe does not panic")
        .map_err(ConnectError::NoDockerEngine)?;
    let password = docker_password(home)?;
    let docker = |args: &[&str]| -> Result<String, ConnectError> {
        let out = Command::new("docker")
            .args(args)
            .output()
            .map_err(|e| ConnectError::Docker(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(ConnectError::Docker(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    };
    let state = docker(&["inspect", "-f", "{{.State.Running}}", DOCKER_CONTAINER]);
    match state.as_deref() {
        Ok("true") => {}
        Ok(_) => {
            docker(&["start", DOCKER_CONTAINER])?;
        }
        Err(_) => {
            let env_user = "POSTGRES_USER=leoflow".to_owned();
            let env_password = format!("POSTGRES_PASSWORD={password}");
            let env_db = format!("POSTGRES_DB={database}");
            let publish = format!("127.0.0.1:{DOCKER_PORT}:5432");
            docker(&[
                "run",
                "-d",
                "--name",
                DOCKER_CONTAINER,
                "-e",
                &env_user,
                "-e",
                &env_password,
                "-e",
                &env_db,
                "-p",
                &publish,
                "-v",
                "leoflow-pgdata:/var/lib/postgresql/data",
                "postgres:16",
            ])?;
        }
    }
    let options = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(DOCKER_PORT)
        .username("leoflow")
        .password(&password)
        .database("postgres");
    // The container takes a few seconds to accept connections on first start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connect(options.clone(), DOCKER_CONTAINER, "").await {
            Ok(pool) => {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                )
                .bind(database)
                .fetch_one(&pool)
                .await
                .map_err(|e| ConnectError::Docker(e.to_string()))?;
                if !exists {
                    let sql = format!("CREATE DATABASE {}", crate::cluster::quote_ident(database));
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .map_err(|e| ConnectError::Docker(e.to_string()))?;
                }
                pool.close().await;
                return Ok(options.database(database));
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The container's password, generated once and kept in `<home>/docker-postgres.password`.
/// The generated password of the `leoflow-postgres` container for `home`.
pub fn docker_password(home: &Path) -> Result<String, ConnectError> {
    let path = home.join("docker-postgres.password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    let io = |e: std::io::Error| ConnectError::Docker(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(home).map_err(io)?;
    let password = uuid::Uuid::new_v4().simple().to_string();
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    std::io::Write::write_all(&mut file, password.as_bytes()).map_err(io)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_urls() {
        assert_eq!(
            mask_url("postgres://leo:s3cret@db:5432/leoflow?sslmode=require"),
            "postgres://leo:***@db:5432/leoflow?sslmode=require"
        );
        assert_eq!(mask_url("postgres://leo@db/x"), "postgres://leo@db/x");
        assert_eq!(mask_url("postgres://db/x"), "postgres://db/x");
    }

    #[test]
    fn a_url_is_used_unless_another_store_is_chosen() {
        let home = Path::new("/h");
        let url = Some("postgres://x@y/z".to_owned());
        assert!(matches!(
            Datastore::choose(None, url.clone(), home),
            Ok(Datastore::Url(_))
        ));
        assert!(matches!(
            Datastore::choose(Some(PostgresChoice::Managed), url, home),
            Ok(Datastore::Managed { root }) if root == Path::new("/h/postgres")
        ));
        assert!(matches!(
            Datastore::choose(Some(PostgresChoice::Url), None, home),
            Err(ConnectError::MissingUrl)
        ));
        assert!(matches!(
            Datastore::choose(None, None, home),
            Ok(Datastore::Managed { .. })
        ));
    }
}
