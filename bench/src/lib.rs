//! Shared pieces of Leoflow's benchmark programs: a durable managed Postgres to run against,
//! a Pro deployment of `leoflow server` replicas ([`deployment`]), percentiles, and a
//! description of the machine for the results table.

#![warn(missing_docs)]

pub mod deployment;
pub mod http_api;
pub mod instant;
pub mod read_models;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use leoflow_postgres::ManagedCluster;
use sqlx::PgPool;

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Sample size.
    pub count: usize,
}

impl Percentiles {
    /// Percentiles of `samples` (sorted in place; must not be empty).
    pub fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty(), "percentiles of an empty sample");
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            count: samples.len(),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (n = {})",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            self.count
        )
    }
}

/// CPU model, core count and memory, for the results table.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({model}), {mem_gib:.0} GiB")
}

/// The release `leoflow` binary the process benchmarks run (`LEOFLOW_BIN` overrides).
pub fn leoflow_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::var_os("LEOFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/leoflow")
        });
    if !binary.is_file() {
        anyhow::bail!(
            "{} is missing: build it first with `cargo build --release -p leoflow-cli` (or set \
             LEOFLOW_BIN)",
            binary.display()
        );
    }
    Ok(binary)
}

/// A durable managed cluster in a temporary directory, for benchmarks. Stopped and deleted by
/// [`BenchDatabase::stop`], or when dropped: a benchmark that fails half-way (Lite does not
/// start, a run fails) leaves no server behind.
pub struct BenchDatabase {
    cluster: ManagedCluster,
    root: PathBuf,
    stopped: bool,
}

impl BenchDatabase {
    /// Starts a cluster with Lite's durable settings in a fresh temporary directory.
    pub async fn start() -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!("leoflow-bench-{}", std::process::id()));
        let cluster = ManagedCluster::new(&root, leoflow_postgres::ClusterSettings::durable())?;
        // Owned from here: a failed start is cleaned up by the drop.
        let database = Self {
            cluster: cluster.clone(),
            root,
            stopped: false,
        };
        tokio::task::spawn_blocking(move || cluster.start()).await??;
        Ok(database)
    }

    /// A new migrated database named `name`.
    pub async fn fresh(&self, name: &str) -> anyhow::Result<PgPool> {
        let pool = self.unmigrated(name).await?;
        leoflow_postgres::migrate::migrate(&pool).await?;
        Ok(pool)
    }

    /// Database `name`, created if need be but left for the `leoflow` under test to migrate
    /// (so a benchmark can drive an older or newer binary than itself).
    pub async fn unmigrated(&self, name: &str) -> anyhow::Result<PgPool> {
        self.cluster.ensure_database(name).await?;
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.cluster.connect_options(name))
            .await?)
    }

    /// A connection URL for database `name` (for child processes such as `leoflow lite`).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://leoflow@localhost/{name}?host={}",
            self.cluster.socket_dir().display()
        )
    }

    /// The server's processes: the postmaster (its pid from `postmaster.pid`) and its children.
    pub fn server_pids(&self) -> Vec<u32> {
        let pid_file = self.cluster.data_dir().join("postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let children = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent_of(*pid) == Some(postmaster));
        std::iter::once(postmaster).chain(children).collect()
    }

    /// Stops the cluster and deletes its directory.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stopped = true;
        self.cluster.stop()?;
        std::fs::remove_dir_all(self.cluster.root())?;
        if self.root != self.cluster.root() {
            let _ = std::fs::remove_file(&self.root);
        }
        Ok(())
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            if let Err(error) = self.cluster.stop() {
                // Said to whoever runs the benchmark: these programs install no log subscriber.
                eprintln!("warning: stopping the benchmark's Postgres: {error}");
                return;
            }
            let _ = std::fs::remove_dir_all(self.cluster.root());
            if self.root != self.cluster.root() {
                let _ = std::fs::remove_file(&self.root);
            }
        }
    }
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The proportional set size of process `pid` in bytes (`/proc/<pid>/smaps_rollup`): its own
/// memory plus its share of what it shares, so the sizes of several processes add up.
pub fn pss_bytes(pid: u32) -> u64 {
    let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
