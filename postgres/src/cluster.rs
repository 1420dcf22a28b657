//! The managed cluster: a private Postgres that Leoflow starts, reuses and stops itself.
//!
//! Layout under the cluster root: `data/` (initdb'ed once), `run/` (the Unix socket; there is
//! no TCP listener), `log/postgres.log`, and `.lock`, which serializes starts and stops from
//! several processes.
//!
//! initdb and postgres refuse to run as root. Under root the cluster runs as an unprivileged
//! user (`postgres`, else `nobody`) that owns its directories. That user must be able to reach
//! the root directory; when an ancestor (typically `/root`, mode 0700) keeps it out, the cluster
//! lives in `/var/lib/leoflow/clusters/<hash of the requested root>` instead, and the requested
//! root becomes a symlink to it. The relocated directory records the root it stands for
//! (`requested-root`), so `leoflow postgres status` can list relocated clusters whose home is
//! gone and `leoflow postgres destroy` removes both.

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::locate::{LocateError, PgBuild};

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The superuser initdb creates; the socket's permissions keep everyone else out.
pub const SUPERUSER: &str = "leoflow";

/// Where root-run clusters go when the requested root is out of the service user's reach.
pub const RELOCATION_ROOT: &str = "/var/lib/leoflow/clusters";

/// The file in a relocated cluster naming the root it was requested at.
const REQUESTED_ROOT_FILE: &str = "requested-root";

/// Server settings beyond the socket-only ones every managed cluster has.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The port, which also names the socket file (`.s.PGSQL.<port>`).
    pub port: u16,
    /// Extra `postgresql.conf` settings, e.g. `("fsync", "off")`.
    pub extra: Vec<(String, String)>,
}

impl ClusterSettings {
    /// Lite's settings: Postgres defaults, durable, without the logical replication launcher
    /// (Lite never replicates; the idle process would cost ~8 MB).
    pub fn durable() -> Self {
        Self {
            port: 5432,
            extra: vec![("max_logical_replication_workers".into(), "0".into())],
        }
    }

    /// The test harness's settings: no fsync (a crash loses a test database, nothing more)
    /// and room for many parallel test connections.
    pub fn for_tests() -> Self {
        let extra = [
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "300"),
        ];
        Self {
            port: 5432,
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// What [`ManagedCluster::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// It was not running; it is now (initialized first if `initialized`).
    Started {
        /// Whether initdb ran.
        initialized: bool,
    },
    /// It was already running and is reused.
    AlreadyRunning,
}

/// What [`ManagedCluster::stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It was running and has stopped.
    Stopped,
    /// It was not running.
    NotRunning,
}

/// What [`ManagedCluster::destroy`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyOutcome {
    /// These directories (and links) were removed; the server was stopped first if it ran.
    Removed(Vec<PathBuf>),
    /// There was no cluster.
    NothingThere,
}

/// A cluster living under [`RELOCATION_ROOT`] (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocatedCluster {
    /// Where it lives.
    pub root: PathBuf,
    /// The root it stands for, when recorded.
    pub requested_root: Option<PathBuf>,
    /// Whether that root still leads here (a link to it): if not, its home was removed and
    /// nothing else will ever remove it.
    pub linked: bool,
}

/// Why the managed cluster could not be started, stopped or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL build.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// The socket path is too long for the kernel.
    #[error(
        "the Postgres socket path {path} is {len} bytes long, but Unix sockets allow at most {MAX_SOCKET_PATH}. \
         Set LEOFLOW_HOME to a shorter directory (for example ~/.leoflow) and try again."
    )]
    SocketPathTooLong {
        /// The socket's path.
        path: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Running as root with no unprivileged user to run Postgres as.
    #[error(
        "Postgres refuses to run as root and there is no `postgres` or `nobody` user to run it as. \
         Create one (`useradd --system postgres`) or run Leoflow as a normal user."
    )]
    NoServiceUser,
    /// A file system operation failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PostgreSQL program failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its output and, for the server, the end of its log.
        detail: String,
    },
    /// The data directory exists but was never fully initialized.
    #[error(
        "{} exists but is not a complete Postgres data directory (initdb was interrupted?). \
         Move it away or delete it, then start again."
    , .0.display())]
    IncompleteDataDir(PathBuf),
    /// Talking to the running cluster failed.
    #[error("managed Postgres at {socket}: {source}")]
    Sql {
        /// The socket directory.
        socket: String,
        /// The error.
        source: sqlx::Error,
    },
}

/// An unprivileged account to run Postgres as when Leoflow runs as root.
#[derive(Debug, Clone)]
struct ServiceUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// A private Postgres cluster under one directory.
#[derive(Debug, Clone)]
pub struct ManagedCluster {
    requested_root: PathBuf,
    root: PathBuf,
    build: PgBuild,
    settings: ClusterSettings,
    service_user: Option<ServiceUser>,
}

impl ManagedCluster {
    /// A cluster rooted at `root` (created on first start), with a located PostgreSQL build.
    pub fn new(root: impl Into<PathBuf>, settings: ClusterSettings) -> Result<Self, ClusterError> {
        Self::with_build(root, settings, PgBuild::locate()?)
    }

    /// A cluster rooted at `root` using the given PostgreSQL build.
    pub fn with_build(
        root: impl Into<PathBuf>,
        settings: ClusterSettings,
        build: PgBuild,
    ) -> Result<Self, ClusterError> {
        let requested_root =
            std::path::absolute(root.into()).map_err(|source| ClusterError::Io {
                what: "resolving",
                path: PathBuf::from("."),
                source,
            })?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let service_user = if unsafe { libc::geteuid() } == 0 {
            Some(service_user().ok_or(ClusterError::NoServiceUser)?)
        } else {
            None
        };
        // A cluster already relocated stays found even when its home is gone (and with it the
        // reason it had to move): `leoflow postgres destroy` must still reach it.
        let moved = relocated(&requested_root);
        let real_dir = fs::symlink_metadata(&requested_root).is_ok_and(|m| m.is_dir());
        let root = match &service_user {
            Some(user) if !reachable_by(&requested_root, user) || (moved.is_dir() && !real_dir) => {
                moved
            }
            _ => requested_root.clone(),
        };
        Ok(Self {
            requested_root,
            root,
            build,
            settings,
            service_user,
        })
    }

    /// The directory the cluster really lives in (differs from the requested one only when
    /// relocated for root; see the module docs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory the cluster was asked to live in (`$LEOFLOW_HOME/postgres`).
    pub fn requested_root(&self) -> &Path {
        &self.requested_root
    }

    /// Whether it lives elsewhere, under [`RELOCATION_ROOT`], for Postgres's user to reach it.
    pub fn is_relocated(&self) -> bool {
        self.root != self.requested_root
    }

    /// Stops the cluster if it runs and deletes it: its directory, and when relocated the link
    /// that stood for it. Its data is gone for good.
    pub fn destroy(&self) -> Result<DestroyOutcome, ClusterError> {
        let mut removed = Vec::new();
        if self.root.exists() {
            self.stop()?;
            fs::remove_dir_all(&self.root).map_err(|source| ClusterError::Io {
                what: "removing",
                path: self.root.clone(),
                source,
            })?;
            removed.push(self.root.clone());
        }
        let link = fs::symlink_metadata(&self.requested_root)
            .is_ok_and(|meta| meta.file_type().is_symlink());
        if self.is_relocated() && link {
            fs::remove_file(&self.requested_root).map_err(|source| ClusterError::Io {
                what: "removing",
                path: self.requested_root.clone(),
                source,
            })?;
            removed.push(self.requested_root.clone());
        }
        Ok(if removed.is_empty() {
            DestroyOutcome::NothingThere
        } else {
            DestroyOutcome::Removed(removed)
        })
    }

    /// Every cluster relocated on this machine (by any home), in name order.
    pub fn relocated_clusters() -> Vec<RelocatedCluster> {
        let Ok(entries) = fs::read_dir(RELOCATION_ROOT) else {
            return Vec::new();
        };
        let mut found: Vec<RelocatedCluster> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| {
                let root = entry.path();
                let requested_root = fs::read_to_string(root.join(REQUESTED_ROOT_FILE))
                    .ok()
                    .map(|text| PathBuf::from(text.trim_end_matches('\n')));
                let linked = requested_root
                    .as_ref()
                    .and_then(|r| fs::read_link(r).ok())
                    .is_some_and(|target| target == root);
                RelocatedCluster {
                    root,
                    requested_root,
                    linked,
                }
            })
            .collect();
        found.sort_by(|a, b| a.root.cmp(&b.root));
        found
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory holding the Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("log").join("postgres.log")
    }

    /// The socket file itself.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir()
            .join(format!(".s.PGSQL.{}", self.settings.port))
    }

    /// The account the server runs as, when not the current user.
    pub fn runs_as(&self) -> Option<&str> {
        self.service_user.as_ref().map(|u| u.name.as_str())
    }

    /// Connection options for `database` over the socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(self.socket_dir())
            .port(self.settings.port)
            .username(SUPERUSER)
            .database(database)
    }

    /// Starts the cluster (initializing it first if needed), or reuses it when it is running.
    pub fn start(&self) -> Result<StartOutcome, ClusterError> {
        self.check_socket_path()?;
        self.prepare_dirs()?;
        let _lock = self.lock()?;
        let initialized = self.init_if_needed()?;
        self.write_settings()?;
        if self.is_running()? {
            return Ok(StartOutcome::AlreadyRunning);
        }
        let data = self.data_dir();
        let log = self.log_file();
        let out = self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
            ],
        )?;
        if !out.status.success() {
            return Err(self.command_failed("pg_ctl start", &out, true));
        }
        Ok(StartOutcome::Started { initialized })
    }

    /// Stops the cluster if it is running (fast shutdown: sessions are disconnected,
    /// committed work is safe).
    pub fn stop(&self) -> Result<StopOutcome, ClusterError> {
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(StopOutcome::NotRunning);
        }
        let _lock = self.lock()?;
        if !self.is_running()? {
            return Ok(StopOutcome::NotRunning);
        }
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        )?;
        if !out.status.success() {
            return Err(self.command_failed("pg_ctl stop", &out, true));
        }
        Ok(StopOutcome::Stopped)
    }

    /// Whether the server is running (`pg_ctl status`).
    pub fn is_running(&self) -> Result<bool, ClusterError> {
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(false);
        }
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &["status".as_ref(), "-D".as_ref(), data.as_os_str()],
        )?;
        // 0: running; 3: not running; 4: no usable data directory.
        match out.status.code() {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            _ => Err(self.command_failed("pg_ctl status", &out, false)),
        }
    }

    /// Whether the server died without shutting down: `postmaster.pid` is still there but names
    /// no live process (a clean stop, `pg_ctl stop` or `restart` included, removes the file
    /// first). Reads one file and `/proc`, so it is cheap enough to ask every second.
    pub fn crashed(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return false;
        };
        match text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            Some(pid) if pid > 0 => !process_alive(pid),
            // Being written by a starting server.
            _ => false,
        }
    }

    /// Creates `database` unless it exists. The cluster must be running.
    pub async fn ensure_database(&self, database: &str) -> Result<(), ClusterError> {
        let sql_error = |source| ClusterError::Sql {
            socket: self.socket_dir().display().to_string(),
            source,
        };
        let mut conn = PgConnection::connect_with(&self.connect_options("postgres"))
            .await
            .map_err(sql_error)?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await
                .map_err(sql_error)?;
        if !exists {
            let sql = format!("CREATE DATABASE {}", quote_ident(database));
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(sql_error)?;
        }
        conn.close().await.map_err(sql_error)
    }

    /// Human description for messages: where the socket is and where the log is.
    pub fn describe(&self) -> String {
        format!(
            "managed Postgres (socket {}, log {})",
            self.socket_dir().display(),
            self.log_file().display()
        )
    }

    /// Checks, without touching the disk, that this cluster could start here: its socket path
    /// fits the kernel's limit (the build was located when it was made).
    pub fn check_socket_path(&self) -> Result<(), ClusterError> {
        let path = self.socket_path().display().to_string();
        let len = path.len();
        if len > MAX_SOCKET_PATH {
            return Err(ClusterError::SocketPathTooLong { path, len });
        }
        Ok(())
    }

    fn prepare_dirs(&self) -> Result<(), ClusterError> {
        if self.root != self.requested_root {
            create_dir(Path::new(RELOCATION_ROOT), 0o755)?;
        }
        create_dir(&self.root, 0o700)?;
        if self.is_relocated() {
            let record = self.root.join(REQUESTED_ROOT_FILE);
            let text = format!("{}\n", self.requested_root.display());
            if fs::read_to_string(&record).ok().as_deref() != Some(text.as_str()) {
                fs::write(&record, text).map_err(|source| ClusterError::Io {
                    what: "writing",
                    path: record,
                    source,
                })?;
            }
        }
        if self.root != self.requested_root && !self.requested_root.exists() {
            if let Some(parent) = self.requested_root.parent() {
                create_dir(parent, 0o700)?;
            }
            std::os::unix::fs::symlink(&self.root, &self.requested_root).map_err(|source| {
                ClusterError::Io {
                    what: "linking",
                    path: self.requested_root.clone(),
                    source,
                }
            })?;
        }
        for dir in [self.socket_dir(), self.log_file().with_file_name("")] {
            create_dir(&dir, 0o700)?;
        }
        if let Some(user) = &self.service_user {
            for dir in [
                self.root.clone(),
                self.socket_dir(),
                self.log_file().with_file_name(""),
            ] {
                chown(&dir, user)?;
            }
            if self.log_file().exists() {
                chown(&self.log_file(), user)?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<File, ClusterError> {
        let path = self.root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ClusterError::Io {
                what: "opening",
                path: path.clone(),
                source,
            })?;
        file.lock().map_err(|source| ClusterError::Io {
            what: "locking",
            path,
            source,
        })?;
        Ok(file)
    }

    fn init_if_needed(&self) -> Result<bool, ClusterError> {
        let data = self.data_dir();
        if data.join("PG_VERSION").exists() {
            return Ok(false);
        }
        if data.exists() {
            let empty = fs::read_dir(&data)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(ClusterError::IncompleteDataDir(data));
            }
        }
        let out = self.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-instructions".as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(self.command_failed("initdb", &out, false));
        }
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(|source| ClusterError::Io {
            what: "reading",
            path: conf.clone(),
            source,
        })?;
        text.push_str(
            "\n# Leoflow's settings, rewritten at every start.\ninclude 'leoflow.conf'\n",
        );
        fs::write(&conf, text).map_err(|source| ClusterError::Io {
            what: "writing",
            path: conf,
            source,
        })?;
        Ok(true)
    }

    fn write_settings(&self) -> Result<(), ClusterError> {
        let mut settings = vec![
            ("listen_addresses".to_owned(), "''".to_owned()),
            (
                "unix_socket_directories".to_owned(),
                format!("'{}'", self.socket_dir().display()),
            ),
            ("unix_socket_permissions".to_owned(), "0700".to_owned()),
            ("port".to_owned(), self.settings.port.to_string()),
        ];
        settings.extend(self.settings.extra.iter().cloned());
        let text: String = settings
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let path = self.data_dir().join("leoflow.conf");
        fs::write(&path, text).map_err(|source| ClusterError::Io {
            what: "writing",
            path: path.clone(),
            source,
        })?;
        if let Some(user) = &self.service_user {
            chown(&path, user)?;
        }
        Ok(())
    }

    /// Runs a program of the PostgreSQL build, as the service user under root.
    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<Output, ClusterError> {
        let program = self.build.tool(tool);
        let mut command = Command::new(&program);
        command
            .args(args)
            .current_dir(&self.root)
            .env("LC_ALL", "C");
        if let Some(user) = &self.service_user {
            command.uid(user.uid).gid(user.gid);
        }
        command.output().map_err(|source| ClusterError::Io {
            what: "running",
            path: program,
            source,
        })
    }

    fn command_failed(&self, command: &str, out: &Output, with_log: bool) -> ClusterError {
        let mut detail = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if with_log {
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            detail.push_str(&format!(
                "\nlast lines of {}:\n{}",
                self.log_file().display(),
                tail.join("\n")
            ));
        }
        ClusterError::Command {
            command: command.to_owned(),
            detail,
        }
    }
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), ClusterError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(mode)))
        .map_err(|source| ClusterError::Io {
            what: "creating",
            path: dir.to_owned(),
            source,
        })
}

fn chown(path: &Path, user: &ServiceUser) -> Result<(), ClusterError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
        ClusterError::Io {
            what: "changing the owner of",
            path: path.to_owned(),
            source,
        }
    })
}

/// `postgres`, else `nobody`, from /etc/passwd.
fn service_user() -> Option<ServiceUser> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|wanted| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != *wanted {
                return None;
            }
            Some(ServiceUser {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    })
}

/// Whether `user` may traverse every existing ancestor of `path`.
fn reachable_by(path: &Path, user: &ServiceUser) -> bool {
    path.ancestors().skip(1).all(|dir| match fs::metadata(dir) {
        Err(_) => true, // will be created by us with mode 0755 or 0700 under a reachable parent
        Ok(meta) => {
            let mode = meta.mode();
            mode & 0o001 != 0
                || (meta.gid() == user.gid && mode & 0o010 != 0)
                || (meta.uid() == user.uid && mode & 0o100 != 0)
        }
    })
}

/// Whether `pid` is a running process: present and not a zombie (a killed server nobody has
/// reaped yet is dead for our purposes).
fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn relocated(requested: &Path) -> PathBuf {
    let digest = Sha256::digest(requested.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Path::new(RELOCATION_ROOT).join(hex)
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
