//! The triggerer's capacity (issue 18, part 6): how many pending triggers one triggerer process
//! holds, in how much memory, and how late they fire.
//!
//! ```sh
//! LEOFLOW_PYTHON=.venv/bin/python cargo run --release -p leoflow-bench --bin triggerer [TRIGGERS] [--link]
//! ```
//!
//! Starts the triggerer as the control plane does (`SubprocessTriggerer`, the SDK's
//! `leoflow.triggerer`; with `--link`, as the Kubernetes executor's pods run it: `leoflow
//! triggerer` — `LEOFLOW_BIN`, default `target/release/leoflow` — calling this process's
//! `TriggererLink` over loopback gRPC and relaying for the SDK's triggerer beside it) and hands it `TRIGGERS` (default 10,000) triggers of a project module,
//! each sleeping on the asyncio loop until its moment, the moments spread over 20 s starting
//! 30 s on; a last trigger fires at once, so its report says when the process had built every
//! trigger before it. Memory is the triggerer process's proportional set size while every
//! trigger waits; the delay is from a trigger's moment to its report reaching this process.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use leoflow_bench::{Percentiles, machine_description, pss_bytes};
use leoflow_executors::triggerer::{
    Connection, SubprocessTriggerer, Supervised, TriggerOutcome, TriggerSpec, Triggerer,
    TriggererConfig, TriggererHost,
};
use leoflow_executors::triggerer_link::Links;
use serde_json::json;
use std::path::PathBuf;
use tokio::sync::mpsc;
use uuid::Uuid;

/// A trigger that sleeps until its moment (seconds since the epoch), as a user's trigger waits
/// on a service.
const MODULE: &str = "import asyncio, time\n\
from airflow.triggers.base import BaseTrigger, TriggerEvent\n\n\
class At(BaseTrigger):\n    \
def __init__(self, at):\n        super().__init__()\n        self.at = at\n\n    \
def serialize(self):\n        return (\"bench_at.At\", {\"at\": self.at})\n\n    \
async def run(self):\n        \
await asyncio.sleep(max(self.at - time.time(), 0))\n        \
yield TriggerEvent(time.time())\n";

const START_IN: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(20);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// The process whose command line holds both `marks` (the triggerer's names its module and
/// its project's folder).
fn process_with(marks: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            marks
                .iter()
                .all(|mark| cmdline.contains(mark))
                .then_some(pid)
        })
}

/// The triggerer as a pod runs it, on this host: `leoflow triggerer` calling this process's
/// link service.
struct LinkHost {
    links: Links,
    endpoint: String,
    program: PathBuf,
    config: TriggererConfig,
    child: Option<tokio::process::Child>,
}

impl TriggererHost for LinkHost {
    type Settings = ();

    async fn connect(&mut self) -> Result<Connection, String> {
        let token = Uuid::new_v4();
        let call = self.links.expect(&token);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(["triggerer", "--endpoint", &self.endpoint])
            .env("LEOFLOW_TRIGGERER_TOKEN", token.to_string())
            .env("LEOFLOW_PYTHON", &self.config.python)
            .env("LEOFLOW_SDK_PATH", &self.config.sdk_path)
            .env(
                "LEOFLOW_PROJECT_DIR",
                self.config.project_dir.as_ref().expect("a project"),
            )
            .kill_on_drop(true);
        self.child = Some(command.spawn().map_err(|e| e.to_string())?);
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .map_err(|_| "leoflow triggerer did not call".to_owned())?
            .map_err(|e| e.to_string())
    }

    async fn disconnect(&mut self, _: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    fn reconfigure(&mut self, (): ()) {}
}

/// `host` serving the link of triggerer pods on a loopback port: its address.
async fn link_service(links: &Links) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let service = links.service();
    tokio::spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    });
    Ok(format!("http://{address}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let linked = args.iter().any(|arg| arg == "--link");
    let count: usize = match args.iter().find(|arg| !arg.starts_with("--")) {
        Some(arg) => arg.parse()?,
        None => 10_000,
    };
    // Absolute: the triggerer starts in the project's directory.
    let python = std::env::var_os("LEOFLOW_PYTHON").context("set LEOFLOW_PYTHON")?;
    let python = std::path::absolute(python)?;
    let project =
        std::env::temp_dir().join(format!("leoflow-bench-triggerer-{}", std::process::id()));
    std::fs::create_dir_all(&project)?;
    std::fs::write(project.join("bench_at.py"), MODULE)?;
    let config = TriggererConfig {
        python,
        sdk_path: leoflow_authoring::python::CHECKOUT_SDK.into(),
        project_dir: Some(project.clone()),
    };
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let triggerer: Box<dyn Triggerer> = if linked {
        let links = Links::default();
        let host = LinkHost {
            endpoint: link_service(&links).await?,
            links,
            program: std::env::var_os("LEOFLOW_BIN")
                .map_or_else(|| PathBuf::from("target/release/leoflow"), PathBuf::from),
            config,
            child: None,
        };
        Box::new(Supervised::on(host, reports_tx))
    } else {
        Box::new(SubprocessTriggerer::new(config, reports_tx))
    };
    let how = if linked {
        "through a pod's link"
    } else {
        "a child process"
    };
    println!("triggerer benchmark ({how}) — {}", machine_description());

    let began = Instant::now();
    let start = now() + START_IN.as_secs_f64();
    let mut moments = Vec::with_capacity(count);
    for i in 0..=count {
        let at = if i == count {
            0.0
        } else {
            start + WINDOW.as_secs_f64() * i as f64 / count as f64
        };
        moments.push(at);
        triggerer.start(TriggerSpec {
            id: i.to_string(),
            classpath: "bench_at.At".into(),
            kwargs: json!({ "at": at }),
            repeat: false,
            dag_id: "bench".into(),
            tenant: "default".into(),
            image: None,
            paths: Vec::new(),
        });
    }
    // The last trigger fires at once: every one before it is built and waiting.
    let built = loop {
        let report = reports.recv().await.context("the triggerer stopped")?;
        match report.outcome {
            TriggerOutcome::Fired(_) if report.id == count.to_string() => break began.elapsed(),
            TriggerOutcome::Failed(error) => bail!("trigger {} failed: {error}", report.id),
            _ => {}
        }
    };
    let folder = project.to_string_lossy();
    let pid = process_with(&["leoflow.triggerer", &folder]).context("no triggerer process")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory = pss_bytes(pid);
    let relay = linked
        .then(|| process_with(&["triggerer\0--endpoint"]))
        .flatten()
        .map(pss_bytes);
    let mut delays = Vec::with_capacity(count);
    while delays.len() < count {
        let report =
            tokio::time::timeout(START_IN + WINDOW + Duration::from_secs(60), reports.recv())
                .await
                .context("the triggers did not all fire")?
                .context("the triggerer stopped")?;
        let received = now();
        match report.outcome {
            TriggerOutcome::Fired(_) => {
                let at = moments[report.id.parse::<usize>()?];
                delays.push(Duration::from_secs_f64((received - at).max(0.0)));
            }
            TriggerOutcome::Failed(error) => bail!("trigger {} failed: {error}", report.id),
            TriggerOutcome::Logged(_) => {}
            TriggerOutcome::Asked { .. } => bail!("trigger {} asked a question", report.id),
            TriggerOutcome::Ended { .. } => bail!("trigger {} ended a task", report.id),
        }
    }
    let delay = Percentiles::of(&mut delays);
    if let Some(relay) = relay {
        println!(
            "leoflow triggerer (the relay) PSS {:.1} MB",
            relay as f64 / 1e6
        );
    }
    println!(
        "{count} pending triggers: built and waiting after {:.1} s; triggerer PSS {:.0} MB \
         ({:.1} KB per trigger); moment → report p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        built.as_secs_f64(),
        memory as f64 / 1e6,
        memory as f64 / 1e3 / count as f64,
        delay.p50.as_secs_f64() * 1e3,
        delay.p99.as_secs_f64() * 1e3,
        delays
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
    );
    let _ = std::fs::remove_dir_all(&project);
    Ok(())
}
