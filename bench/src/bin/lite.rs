//! Leoflow Lite as a user runs it: `leoflow lite dags/hello` on a home that `leoflow setup`
//! prepared (managed venv, Airflow UI, editor, admin) and whose managed Postgres exists but is
//! stopped.
//!
//! - **Cold start**: process start → the web UI's page and `/api/v2/monitor/health` answer
//!   (Postgres start, migrations check, replay, compile and registration of the project, the
//!   zygote, the three listeners included).
//! - **Idle memory** 10 s after start, and settled (idle past the pool's idle-connection
//!   timeout, when the connections opened for start-up have closed): resident memory of Lite,
//!   its Python zygote and every Postgres process, summed two ways — RSS (counts shared pages
//!   once per process, so it overstates) and PSS (shares them out).
//! - **Hot reload**: dag.py saved → the new DAG version listed by the API.
//!
//! ```sh
//! cargo build --release -p leoflow-cli
//! cargo run --release -p leoflow-bench --bin lite
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use leoflow_bench::{Percentiles, leoflow_binary, machine_description};
use leoflow_postgres::datastore::IDLE_CONNECTION_TIMEOUT;
use leoflow_postgres::{ClusterSettings, ManagedCluster};
use serde_json::Value;

const STARTS: usize = 5;
const RELOADS: usize = 10;
const PASSWORD: &str = "bench-lite-admin";

/// A Lite started by the benchmark.
struct Lite {
    child: Child,
}

impl Lite {
    fn spawn(binary: &Path, home: &Path, project: &Path) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["lite", project.to_str().context("project path")?])
            .env("LEOFLOW_HOME", home)
            .env("LEOFLOW_POSTGRES", "managed")
            .env_remove("LEOFLOW_PYTHON")
            .env_remove("LEOFLOW_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting leoflow lite")?;
        // Drained so Lite never blocks on a full pipe.
        let stdout = child.stdout.take().context("piped")?;
        std::thread::spawn(
            move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {},
        );
        Ok(Self { child })
    }

    fn stop(mut self) -> Result<()> {
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("lite exited with {status}");
        }
        Ok(())
    }
}

/// Polls until the UI page and the health endpoint answer.
async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = http.get(format!("{base}/")).send().await;
        let health = http
            .get(format!("{base}/api/v2/monitor/health"))
            .send()
            .await;
        if let (Ok(page), Ok(health)) = (page, health)
            && page.status() == 200
            && health.status() == 200
            && page.text().await?.contains("<div id=\"root\"")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Lite did not serve its UI within a minute");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Children, grandchildren, … of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The field after the parenthesised command name is the state, then the parent.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
            && let Some(parent) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok())
        {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let of = found[i];
        found.extend(parents.iter().filter(|(_, p)| *p == of).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// RSS and PSS of `pid`, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&rollup, "Rss:"), field(&rollup, "Pss:"))
}

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Prints RSS and PSS of Lite's process tree and of the managed Postgres's.
fn print_memory(label: &str, lite: u32, cluster: &ManagedCluster) -> Result<()> {
    let postmaster: u32 = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))?
        .lines()
        .next()
        .context("postmaster.pid")?
        .trim()
        .parse()?;
    let lite_pids: Vec<u32> = std::iter::once(lite).chain(descendants(lite)).collect();
    let postgres_pids: Vec<u32> = std::iter::once(postmaster)
        .chain(descendants(postmaster))
        .collect();
    let sum = |pids: &[u32]| {
        pids.iter()
            .map(|p| memory_kb(*p))
            .fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2))
    };
    let (lite_rss, lite_pss) = sum(&lite_pids);
    let (pg_rss, pg_pss) = sum(&postgres_pids);
    println!(
        "memory, {label}: Lite + zygote ({} processes) RSS {} / PSS {}; Postgres ({} \
         processes) RSS {} / PSS {}; total RSS {} / PSS {}",
        lite_pids.len(),
        mib(lite_rss),
        mib(lite_pss),
        postgres_pids.len(),
        mib(pg_rss),
        mib(pg_pss),
        mib(lite_rss + pg_rss),
        mib(lite_pss + pg_pss)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = leoflow_binary()?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = PathBuf::from(format!("/tmp/lf-bench-lite-{}", std::process::id()));
    let home = scratch.join("home");
    let project = scratch.join("hello");
    std::fs::create_dir_all(&project)?;
    for file in ["dag.py", "leoflow.yaml"] {
        std::fs::copy(repo.join("dags/hello").join(file), project.join(file))?;
    }
    std::fs::write(scratch.join("password"), PASSWORD)?;
    let base = "http://127.0.0.1:8088";
    let http = reqwest::Client::new();

    println!("Lite benchmark — {}", machine_description());
    setup(&binary, &scratch, &home)?;
    // The first start makes the managed Postgres (initdb); it is not a cold start of Lite.
    let first = Lite::spawn(&binary, &home, &project)?;
    wait_ready(&http, base).await?;
    first.stop()?;
    cold_starts(&http, base, &binary, &home, &project).await?;

    let lite = Lite::spawn(&binary, &home, &project)?;
    wait_ready(&http, base).await?;
    let cluster = ManagedCluster::new(home.join("postgres"), ClusterSettings::durable())?;
    // Soon after start, and once the connections opened for start-up have been closed: the
    // pool checks for idle connections once per idle timeout, so that is within two of them.
    let ready = Instant::now();
    let settled = IDLE_CONNECTION_TIMEOUT * 2 + Duration::from_secs(10);
    for (label, wait) in [
        ("10 s after start", Duration::from_secs(10)),
        ("settled", settled),
    ] {
        tokio::time::sleep(wait.saturating_sub(ready.elapsed())).await;
        print_memory(label, lite.child.id(), &cluster)?;
    }
    hot_reloads(&http, base, &project).await?;
    lite.stop()?;
    let _ = cluster.stop();
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// `leoflow setup` on an empty home, timed.
fn setup(binary: &Path, scratch: &Path, home: &Path) -> Result<()> {
    let started = Instant::now();
    let setup = Command::new(binary)
        .args(["setup", "--yes", "--admin-password-file"])
        .arg(scratch.join("password"))
        .env("LEOFLOW_HOME", home)
        .env_remove("LEOFLOW_PYTHON")
        .stdout(Stdio::null())
        .status()?;
    if !setup.success() {
        bail!("leoflow setup failed");
    }
    println!("setup on an empty home: {}", ms(started.elapsed()));
    Ok(())
}

/// `STARTS` starts of Lite, each from process start to the UI and health answering.
async fn cold_starts(
    http: &reqwest::Client,
    base: &str,
    binary: &Path,
    home: &Path,
    project: &Path,
) -> Result<()> {
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        let started = Instant::now();
        let lite = Lite::spawn(binary, home, project)?;
        wait_ready(http, base).await?;
        starts.push(started.elapsed());
        lite.stop()?;
    }
    let start = Percentiles::of(&mut starts);
    println!(
        "cold start to UI ready: median {} (min {}, max {}; n = {STARTS})",
        ms(start.p50),
        ms(starts[0]),
        ms(starts[starts.len() - 1])
    );
    Ok(())
}

/// `RELOADS` saves of the DAG file, each timed until the API lists a new version.
async fn hot_reloads(http: &reqwest::Client, base: &str, project: &Path) -> Result<()> {
    let token = leoflow_bench::http_api::admin_token(http, base, PASSWORD).await?;
    let versions = || async {
        let body: Value = http
            .get(format!("{base}/api/v2/dags/hello/dagVersions"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        body["total_entries"].as_u64().context("total_entries")
    };
    let source = std::fs::read_to_string(project.join("dag.py"))?;
    let mut reloads = Vec::new();
    for n in 0..RELOADS {
        let before = versions().await?;
        let started = Instant::now();
        std::fs::write(
            project.join("dag.py"),
            source.replace("Hello from Leoflow", &format!("Hello #{n}")),
        )?;
        while versions().await? == before {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("save {n} never became a new version");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reloads.push(started.elapsed());
    }
    println!(
        "hot reload, save → new version in the API: {}",
        Percentiles::of(&mut reloads)
    );
    Ok(())
}
